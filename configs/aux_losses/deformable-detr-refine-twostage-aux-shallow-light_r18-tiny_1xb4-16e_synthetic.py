# The shallow row (ATSS heads on strides 4 and 8) with a narrower head: 32 channels in
# its tower instead of the memory's 128, a quarter of the cost of the head's 3x3
# convolutions at stride 4 (a dict without `type` updates EncoderAuxHeads' default
# ATSS head).
_base_ = ['./deformable-detr-refine-twostage-aux-shallow_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(head=dict(feat_channels=32)))
