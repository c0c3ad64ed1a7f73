# The `make demo` recipe: the demo model (./deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py:
# two-stage Deformable DETR with box refinement, ResNet-18 at half width from scratch,
# levels at strides 16, 32, 64, 50 queries, batch 4) with the two training-only tricks
# that sped it up most per CPU minute, and the schedule that fits ten minutes on 2 cores.
# Why each choice, with the probes behind it: ./README.md.
_base_ = ['./deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py']

# A stride-8 level (C3) below the demo model's 16, 32, 64: 1,360 encoder tokens at
# 256 x 256 instead of 336, and a level that resolves 10-px objects.
num_levels = 4
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(1, 2, 3)),
    neck=dict(in_channels=[64, 128, 256], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))),
    # Co-DETR-style ATSS heads on every level of the encoder memory (dense one-to-many
    # gradients for the encoder and the from-scratch backbone); dropped at inference.
    aux_head=dict(type='EncoderAuxHeads', levels=(8, 16, 32, 64)))

# Small-object Copy-Paste (feathered boxes: works on datasets without masks); the bank
# reads the training annotations through its own data_root: move it with the dataset.
copy_paste = dict(
    type='SmallObjectCopyPaste',
    ann_file=_base_.train_dataloader.dataset.ann_file,
    data_root=_base_.train_dataloader.dataset.data_root,
    data_prefix=_base_.train_dataloader.dataset.data_prefix,
    paste_mode='box', area_weights=(1.0, 0.2, 0.0), num_objects=(1, 3), copies=(1, 3),
    scale_jitter=(0.8, 1.25), max_gt=50)  # at most num_queries targets
train_pipeline = [*_base_.train_pipeline[:-1], copy_paste, _base_.train_pipeline[-1]]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [dict(type='PipelineEpochHook')]  # new pastes every epoch

max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[10], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=4)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=1),
                     visualization=dict(type='DetVisualizationHook', draw=True, interval=4))
