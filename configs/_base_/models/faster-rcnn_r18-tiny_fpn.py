# CPU-sized Faster R-CNN for the synthetic shapes set: mmdet's Faster R-CNN R-50-FPN with
# ResNet-18 at half width from scratch, a 64-d FPN (P2-P6) and mmdet's RPNHead with
# 1,000 proposals. Model only: a config adds a dataset, a runtime and the batch.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'

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
