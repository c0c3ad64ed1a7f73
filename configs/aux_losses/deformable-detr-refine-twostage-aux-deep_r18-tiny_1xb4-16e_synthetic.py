# Auxiliary ATSS heads on the encoder memory's own levels only (strides 16, 32, 64):
# Co-DETR's setting on the demo model, no extra level and no backbone lateral.
_base_ = ['./deformable-detr-refine-twostage-aux-all_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(levels=(16, 32, 64), extra_levels=[]))
