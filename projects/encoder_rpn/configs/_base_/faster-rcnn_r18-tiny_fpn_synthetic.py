# CPU-sized Faster R-CNN on the synthetic shapes set, the reference for every synthetic
# config of this project: ResNet-18 at half width from scratch, 64-d FPN (P2-P6),
# mmdet's RPNHead with 1,000 proposals, 12 epochs of AdamW at batch 4.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../../../../configs/_base_/datasets/synthetic_coco.py',
    '../../../../configs/dat/_base_/runtime_synthetic_12e.py'
]

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, base_channels=32, stem_channels=32,
                  out_indices=(0, 1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch'),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, num_outs=5),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4])),  # objects from 8 px
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=6)),
    # at most a dozen objects per image: fewer sampled RoIs than on COCO
    train_cfg=dict(rcnn=dict(sampler=dict(num=256))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000)))
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(base_batch_size=4)
