# Two-stage Deformable DETR with every attention trick switched on, synthetic data:
# - offset range limiting: offsets bounded by r * tanh(raw / r);
# - L1 offset regularisation, logged as loss_offset;
# - progressive sampling points 4 -> 8 -> 16 (single process only);
# - gradient checkpointing of both encoder layers;
# - mixed precision with `tools/train.py --amp`: bfloat16 (AutocastOptimWrapper).
_base_ = 'deformable-detr-refine-twostage_r18-tiny_1xb8-24e_synthetic.py'

offset_range = 8.0
model = dict(
    encoder=dict(num_cp=2, layer_cfg=dict(self_attn_cfg=dict(offset_range=offset_range))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(offset_range=offset_range))),
    offset_loss=dict(type='OffsetL1Loss', loss_weight=1e-4))
custom_hooks = [dict(type='ProgressiveSamplingPointsHook', milestones={8: 8, 16: 16})]
amp_dtype = 'bfloat16'
