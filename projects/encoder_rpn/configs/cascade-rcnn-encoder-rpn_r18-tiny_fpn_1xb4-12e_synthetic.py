# CPU-sized Cascade R-CNN whose first stage is EncoderRPNHead (300 proposals, no NMS).
_base_ = ['./cascade-rcnn_r18-tiny_fpn_1xb4-12e_synthetic.py', './_base_/encoder-rpn_r18-tiny.py']
model = _base_._encoder_rpn
