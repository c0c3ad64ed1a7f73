# Deformable DETR with iterative bounding box refinement, CPU-sized, synthetic data.
_base_ = 'deformable-detr_r18-tiny_1xb8-24e_synthetic.py'
model = dict(with_box_refine=True)
