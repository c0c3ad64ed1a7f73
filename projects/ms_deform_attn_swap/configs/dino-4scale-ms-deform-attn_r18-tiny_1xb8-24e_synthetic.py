# The DINO config above sized for a CPU, on the synthetic shapes dataset
# (tools/data/generate_synthetic_coco.py): ResNet-18 at half width from scratch, mmdet's
# levels (C3-C5 and one more, strides 8-64: 1,360 tokens at 256 px), 2 encoder / 3
# decoder layers, 100 queries; AdamW 4e-4 for 24 epochs at batch 8 as the Deformable DETR
# synthetic configs (configs/deformable_detr/*_r18-tiny_1xb8-24e_synthetic.py). DINO
# keeps 256 dims: its query embeddings hard-code 128 features per coordinate.
_base_ = './dino-4scale-ms-deform-attn_r50_8xb2-12e_coco.py'

model = dict(
    num_queries=100,
    backbone=dict(depth=18, base_channels=32, stem_channels=32, frozen_stages=-1,
                  norm_cfg=dict(requires_grad=True), norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256]),
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    decoder=dict(num_layers=3, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    bbox_head=dict(num_classes=6),
    test_cfg=dict(max_per_img=100))

dataset_type = 'deform_ext.SyntheticCocoDataset'
data_root = 'data/synthetic_coco/'
image_size = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 24
# DINO's optimizer at 4e-4 (the Deformable DETR synthetic configs' rate), the backbone at
# full rate (no pretrained weights), a 100-iteration warm-up; mmdet's 24-epoch DINO steps.
optim_wrapper = dict(optimizer=dict(lr=4e-4),
                     paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[20],
         gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=8)
