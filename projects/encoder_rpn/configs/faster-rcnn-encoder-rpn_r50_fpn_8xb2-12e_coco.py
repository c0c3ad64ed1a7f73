# mmdet's Faster R-CNN R-50-FPN 1x COCO recipe with EncoderRPNHead as its first stage
# (300 proposals instead of RPNHead's 1,000). Not trained here (no GPU); the synthetic
# configs of this folder carry the measured comparison.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', './_base_/encoder-rpn_r50.py']
model = _base_._encoder_rpn
# the transformer layer trains with gradient clipping, as Deformable DETR's does
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
