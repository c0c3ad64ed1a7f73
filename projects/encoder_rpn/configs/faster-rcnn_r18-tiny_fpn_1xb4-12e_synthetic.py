# The reference: CPU-sized Faster R-CNN with mmdet's RPNHead (1,000 proposals).
_base_ = './_base_/faster-rcnn_r18-tiny_fpn_synthetic.py'
