# The demo model (configs/demo/) with hybrid matching (H-DETR): a training-only second
# group of 150 decoder queries (the best encoder proposals), Hungarian-matched to every
# ground-truth box repeated 5 times; the one-to-many positives for the decoder that
# Co-DETR gets from its auxiliary heads' positive queries. Inference is the demo's.
_base_ = ['../demo/deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py']

model = dict(hybrid_matching=dict(num_queries=150, gt_repeats=5, loss_weight=1.0))
