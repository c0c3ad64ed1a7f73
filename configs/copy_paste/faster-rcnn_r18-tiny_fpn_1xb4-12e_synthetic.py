# The Copy-Paste ablation's baseline: the synthetic Faster R-CNN (half-width ResNet-18,
# 64-d FPN, RPNHead, batch 4) without pasting.
_base_ = '../../projects/encoder_rpn/configs/_base_/faster-rcnn_r18-tiny_fpn_synthetic.py'
