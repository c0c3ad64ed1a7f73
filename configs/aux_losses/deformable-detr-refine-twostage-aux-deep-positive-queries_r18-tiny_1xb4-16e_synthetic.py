# The `deep` row (ATSS aux heads on the memory's strides 16, 32, 64, Co-DETR's setting)
# plus Co-DETR's customised positive queries: the heads' positive anchors (ATSS, several
# per object) also run through the decoder as extra queries, each trained towards its
# anchor's object without matching (deform_ext/models/layers/
# positive_queries.py). Training only: the decoder runs once more per step on at most
# 300 such queries per image; inference is the demo model's.
_base_ = ['./deformable-detr-refine-twostage-aux-deep_r18-tiny_1xb4-16e_synthetic.py']

model = dict(aux_head=dict(positive_queries=dict(max_per_image=300, loss_weight=1.0)))
