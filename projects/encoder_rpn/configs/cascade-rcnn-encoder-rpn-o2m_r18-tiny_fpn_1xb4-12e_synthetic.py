# Cascade R-CNN with the one-to-many first stage of
# faster-rcnn-encoder-rpn-o2m: each ground truth matched to 3 tokens, NMS at 0.7,
# 300 proposals.
_base_ = './cascade-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py'
_proposals = dict(nms_pre=1000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7))
model = dict(
    train_cfg=dict(rpn=dict(gt_repeats=3), rpn_proposal=_proposals),
    test_cfg=dict(rpn=_proposals))
