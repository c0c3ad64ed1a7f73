# Single-scale Deformable DETR (stride-32 features only), CPU-sized, synthetic data.
_base_ = 'deformable-detr_r18-tiny_1xb8-24e_synthetic.py'

num_levels = 1
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(3, )),
    neck=dict(in_channels=[256], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
