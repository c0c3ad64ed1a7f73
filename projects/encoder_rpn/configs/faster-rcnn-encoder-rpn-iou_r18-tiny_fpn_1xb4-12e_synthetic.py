# As faster-rcnn-encoder-rpn, with DETA's first-stage assignment: tokens whose anchor
# overlaps a ground truth by >= 0.7 IoU are positive (one-to-many), < 0.3 negative;
# the proposals then go through NMS at 0.7, as RPNHead's.
_base_ = './faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py'
_proposals = dict(nms_pre=1000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7))
model = dict(
    train_cfg=dict(
        rpn=dict(assigner=dict(_delete_=True, type='MaxIoUAssigner', pos_iou_thr=0.7,
                               neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True,
                               ignore_iof_thr=-1)),
        rpn_proposal=_proposals),
    test_cfg=dict(rpn=_proposals))
