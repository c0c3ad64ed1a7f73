# The one-to-many delta of EncoderRPNHead (applied with `model = _base_._one_to_many`):
# each ground truth matched to 3 tokens (H-DETR's hybrid branch as a first stage), up to
# three proposals per object, so NMS at 0.7 as RPNHead's; 300 proposals.
_proposals = dict(nms_pre=1000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7))
_one_to_many = dict(train_cfg=dict(rpn=dict(gt_repeats=3), rpn_proposal=_proposals),
                    test_cfg=dict(rpn=_proposals))
