# As faster-rcnn-encoder-rpn (Hungarian matching on predicted boxes and scores), but
# one-to-many: each ground truth is matched to 3 tokens (H-DETR's hybrid branch as a
# first stage), which gives the objectness and box branches three times the positives
# of one-to-one. Up to three proposals per object, so NMS at 0.7 as RPNHead's.
_base_ = './faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py'
_proposals = dict(nms_pre=1000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7))
model = dict(
    train_cfg=dict(rpn=dict(gt_repeats=3), rpn_proposal=_proposals),
    test_cfg=dict(rpn=_proposals))
