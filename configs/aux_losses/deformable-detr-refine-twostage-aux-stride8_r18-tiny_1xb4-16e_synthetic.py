# Auxiliary ATSS head on one shallow level, stride 8 (backbone layer2 merged with the
# upsampled stride-16 memory; see the -aux-all config): the shallow row's signal for
# small objects without its stride-4 level, whose 64x64 convolutions at 256 px make
# most of that row's 3x step time (docs/aux_losses.md).
_base_ = ['./deformable-detr-refine-twostage-aux-all_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(levels=(8, ), extra_levels=[
    dict(stride=8, source='backbone.layer2', in_channels=64)]))
