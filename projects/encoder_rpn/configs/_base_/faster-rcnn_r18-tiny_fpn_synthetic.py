# CPU-sized Faster R-CNN on the synthetic shapes set, the reference for every synthetic
# config of this project (configs/_base_/models/faster-rcnn_r18-tiny_fpn.py: half-width
# ResNet-18 from scratch, 64-d FPN, RPNHead), 12 epochs of AdamW at batch 4.
_base_ = [
    '../../../../configs/_base_/models/faster-rcnn_r18-tiny_fpn.py',
    '../../../../configs/_base_/datasets/synthetic_coco.py',
    '../../../../configs/dat/_base_/runtime_synthetic_12e.py'
]

train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(base_batch_size=4)
