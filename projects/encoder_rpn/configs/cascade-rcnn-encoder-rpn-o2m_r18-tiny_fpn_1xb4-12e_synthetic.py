# Cascade R-CNN with the one-to-many first stage (./_base_/encoder-rpn-o2m.py, as
# faster-rcnn-encoder-rpn-o2m): each ground truth matched to 3 tokens, NMS at 0.7,
# 300 proposals.
_base_ = ['./cascade-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
          './_base_/encoder-rpn-o2m.py']
model = _base_._one_to_many
