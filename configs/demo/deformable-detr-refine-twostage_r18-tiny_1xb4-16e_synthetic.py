# The `make demo` job: deform_ext's two-stage Deformable DETR with iterative box
# refinement (DeformDETR on MSDeformAttn), trained from scratch on the synthetic
# shapes dataset on CPU (about 10 minutes on 2 cores): ResNet-18 at half width,
# 2 encoder / 3 decoder layers, 128-d.
# Differences from configs/deformable_detr/'s synthetic two-stage config, all for the
# demo's time budget: three feature levels (strides 16, 32, 64: 336 encoder tokens at
# 256 x 256, against 5,440 at strides 4-32), 50 queries, batch 4 (twice the updates per
# image seen), 16 epochs.
_base_ = ['../deformable_detr/deformable-detr-refine-twostage_r18-tiny_1xb8-24e_synthetic.py']

num_levels = 3
model = dict(
    num_queries=50,
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(2, 3)),
    neck=dict(in_channels=[128, 256], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))),
    test_cfg=dict(max_per_img=50))

train_dataloader = dict(batch_size=4)

max_epochs = 16
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[13], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=2),
    visualization=dict(type='DetVisualizationHook', draw=True, interval=4))
auto_scale_lr = dict(base_batch_size=4)
