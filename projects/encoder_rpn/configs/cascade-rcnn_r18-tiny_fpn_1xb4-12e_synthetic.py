# The reference for Cascade R-CNN: CPU-sized, mmdet's RPNHead (1,000 proposals).
_base_ = ['./_base_/faster-rcnn_r18-tiny_fpn_synthetic.py', './_base_/cascade-rcnn_r18-tiny.py']
model = _base_._cascade
