# As faster-rcnn-encoder-rpn (Hungarian matching on predicted boxes and scores), but
# one-to-many: each ground truth is matched to 3 tokens, which gives the objectness and
# box branches three times the positives of one-to-one; NMS at 0.7 removes the duplicate
# proposals (./_base_/encoder-rpn-o2m.py).
_base_ = ['./faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
          './_base_/encoder-rpn-o2m.py']
model = _base_._one_to_many
