# CPU-sized YOLOX on the synthetic shapes dataset with the recommended DAT placement:
# one DAT block on each of the stride-16 (key stride 2) and stride-32 (key stride 1)
# outputs of the PAFPN; CSPDarknet at quarter width, 64-d neck and head, from scratch
# (no Mosaic/MixUp: the synthetic pipeline).
_base_ = ['../_base_/datasets/synthetic_coco.py', './_base_/runtime_synthetic_12e.py']

norm_cfg = dict(type='BN', momentum=0.03, eps=0.001)
model = dict(
    type='YOLOX',
    data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
    backbone=dict(type='CSPDarknet', deepen_factor=0.33, widen_factor=0.25,
                  out_indices=(2, 3, 4), use_depthwise=False, spp_kernal_sizes=(5, 9, 13),
                  norm_cfg=norm_cfg, act_cfg=dict(type='Swish')),
    neck=dict(
        type='DATFPN',
        neck=dict(type='YOLOXPAFPN', in_channels=[64, 128, 256], out_channels=64,
                  num_csp_blocks=1, use_depthwise=False,
                  upsample_cfg=dict(scale_factor=2, mode='nearest'), norm_cfg=norm_cfg,
                  act_cfg=dict(type='Swish')),
        out_channels=64,
        levels=(1, 2),  # strides 16 and 32 (16 x 16 and 8 x 8 at 256 px)
        num_heads=4,
        attn_cfgs=[dict(type='DAttention', groups=2, stride=2, pe_type='table'),
                   dict(type='DAttention', groups=2, stride=1, pe_type='table')]),
    bbox_head=dict(
        type='YOLOXHead', num_classes=6, in_channels=64, feat_channels=64, stacked_convs=2,
        strides=(8, 16, 32), use_depthwise=False, norm_cfg=norm_cfg,
        act_cfg=dict(type='Swish'),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum',
                      loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', mode='square', eps=1e-16, reduction='sum',
                       loss_weight=5.0),
        loss_obj=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum',
                      loss_weight=1.0),
        loss_l1=dict(type='L1Loss', reduction='sum', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5)),
    test_cfg=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65)))
