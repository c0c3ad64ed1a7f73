# CPU-sized Faster R-CNN whose first stage is EncoderRPNHead: one deformable encoder
# layer over P2-P6, Hungarian assignment, 300 proposals without NMS.
_base_ = ['./_base_/faster-rcnn_r18-tiny_fpn_synthetic.py', './_base_/encoder-rpn_r18-tiny.py']
model = _base_._encoder_rpn
