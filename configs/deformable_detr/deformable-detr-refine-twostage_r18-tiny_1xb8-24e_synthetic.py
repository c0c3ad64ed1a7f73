# Two-stage Deformable DETR with box refinement, CPU-sized (128-d: the proposal
# embedding has embed_dims // 2 features per coordinate), synthetic data.
_base_ = 'deformable-detr-refine_r18-tiny_1xb8-24e_synthetic.py'
model = dict(as_two_stage=True)
