# Cascade R-CNN's three stages in place of Faster R-CNN's RoI head in the 64-d
# synthetic detectors (a delta that the configs apply with `model = _base_._cascade`):
# mmdet's cascade recipe (IoU 0.5/0.6/0.7, tightening box-coder stds), 6 classes.
_stage_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
_cascade = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=256,
                 roi_feat_size=7, num_classes=6, reg_class_agnostic=True,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=stds),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in _stage_stds
        ]),
    train_cfg=dict(rcnn=[
        dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                           min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
             sampler=dict(type='RandomSampler', num=256, pos_fraction=0.25, neg_pos_ub=-1,
                          add_gt_as_proposals=True),
             pos_weight=-1, debug=False)
        for iou in (0.5, 0.6, 0.7)
    ]))
