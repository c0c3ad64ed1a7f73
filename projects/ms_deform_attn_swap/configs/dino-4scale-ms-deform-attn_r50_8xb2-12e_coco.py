# mmdet's DINO (4 scales, R-50, 12 epochs, COCO) as published, its deformable attention
# run by deform_ext's op: the model line is the whole difference (see ../README.md).
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'

custom_imports = dict(imports=['deform_ext'], allow_failed_imports=False)
model = dict(type='deform_ext.UseDeformExtMSDA', base_type='DINO')
