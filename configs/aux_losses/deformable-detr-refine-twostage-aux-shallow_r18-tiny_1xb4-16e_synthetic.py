# Auxiliary ATSS heads on the shallow levels only: strides 4 and 8, both from the
# backbone (layer1, layer2) merged with the upsampled stride-16 memory (see the -aux-all
# config). The small objects' level; the memory's own levels get no auxiliary loss but
# the gradient through the top-down merge.
_base_ = ['./deformable-detr-refine-twostage-aux-all_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(levels=(4, 8)))
