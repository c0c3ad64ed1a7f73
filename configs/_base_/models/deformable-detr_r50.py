# Deformable DETR (multi-scale), ResNet-50, COCO's 80 classes: mmdet's model on
# deform_ext's DeformDETR (MSDeformAttn on deform_ext.ops). The one place the model is
# written; every Deformable DETR config derives from it and holds only its difference.
# `embed_dims` and `num_levels` are used wherever the model needs them: a config that
# changes one sets it again and restates those places (as mmdet's configs do).
embed_dims = 256
num_levels = 4  # C3-C5 of the backbone and one extra stride-64 level from the neck
model = dict(
    type='DeformDETR',
    num_queries=300,
    num_feature_levels=num_levels,
    with_box_refine=False,
    as_two_stage=False,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='ChannelMapper',
        in_channels=[512, 1024, 2048],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    encoder=dict(  # DeformableEncoder
        num_layers=6,
        layer_cfg=dict(  # DeformableEncoderLayer
            self_attn_cfg=dict(type='MSDeformAttn', embed_dims=embed_dims, num_heads=8,
                               num_levels=num_levels, num_points=4, batch_first=True),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=1024, ffn_drop=0.1))),
    decoder=dict(  # DeformableDecoder
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(  # DeformableDecoderLayer
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8, dropout=0.1,
                               batch_first=True),
            cross_attn_cfg=dict(type='MSDeformAttn', embed_dims=embed_dims, num_heads=8,
                                num_levels=num_levels, num_points=4, batch_first=True),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=1024, ffn_drop=0.1)),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True, offset=-0.5),
    bbox_head=dict(
        type='DeformDETRHead',
        num_classes=80,
        embed_dims=embed_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))
