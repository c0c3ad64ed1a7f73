# The stride8 row with the shallow-light row's narrower head (32 channels).
_base_ = ['./deformable-detr-refine-twostage-aux-stride8_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(head=dict(feat_channels=32)))
