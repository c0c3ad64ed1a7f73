# Single-scale Deformable DETR: C5 features only (stride 32), one attention level.
_base_ = 'deformable-detr_r50_16xb2-50e_coco.py'

num_levels = 1
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(3, )),
    neck=dict(in_channels=[2048], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
