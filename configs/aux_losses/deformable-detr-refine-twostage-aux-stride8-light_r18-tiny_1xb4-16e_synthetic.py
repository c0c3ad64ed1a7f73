# The stride8 row with a narrower ATSS head: 32 channels in its tower instead of the
# memory's 128 (a dict without `type` updates EncoderAuxHeads' default head).
_base_ = ['./deformable-detr-refine-twostage-aux-stride8_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(head=dict(feat_channels=32)))
