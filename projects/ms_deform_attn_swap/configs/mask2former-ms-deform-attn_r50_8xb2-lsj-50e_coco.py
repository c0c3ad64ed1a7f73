# mmdet's Mask2Former instance segmentation (R-50, large-scale jitter, 50 epochs as
# 368,750 iterations, COCO) as published, the deformable attention of its pixel decoder
# run by deform_ext's op: the model line is the whole difference (see ../README.md).
_base_ = 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'

custom_imports = dict(imports=['deform_ext'], allow_failed_imports=False)
model = dict(type='deform_ext.UseDeformExtMSDA', base_type='Mask2Former')
