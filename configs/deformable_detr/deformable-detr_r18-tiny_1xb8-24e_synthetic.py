# Deformable DETR (multi-scale) sized for a CPU: ResNet-18 at half width from
# scratch, 2 encoder / 3 decoder layers, 128-d, on the synthetic shapes dataset.
# Four levels at strides 4, 8, 16, 32 (C2-C5): the synthetic set has objects down to
# 8 px, which a stride-4 level resolves (mmdet's recipe, C3-C5 plus a stride-64 level,
# fits COCO's larger images and pretrained backbones). It has 4x the encoder tokens,
# a linear cost in deformable attention; a CPU step takes about 2.2x as long.
# Convolutions run channels-last. The model: ../_base_/models/deformable-detr_r50.py.
_base_ = [
    '../_base_/models/deformable-detr_r50.py', '../_base_/datasets/synthetic_coco.py',
    '../_base_/default_runtime.py'
]

embed_dims = 128
model = dict(
    num_queries=100,
    channels_last=True,
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=32,
        stem_channels=32,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch'),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=embed_dims),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512, ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=embed_dims),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512, ffn_drop=0.0))),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=6, embed_dims=embed_dims))

max_epochs = 24
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={
        'sampling_offsets': dict(lr_mult=0.1),
        'reference_points': dict(lr_mult=0.1)
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[int(max_epochs * 0.8)], gamma=0.1)
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=8)
