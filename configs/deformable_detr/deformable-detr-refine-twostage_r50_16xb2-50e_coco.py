# Two-stage Deformable DETR (encoder proposals, top-k, no NMS) with box refinement.
_base_ = 'deformable-detr-refine_r50_16xb2-50e_coco.py'
model = dict(as_two_stage=True)
