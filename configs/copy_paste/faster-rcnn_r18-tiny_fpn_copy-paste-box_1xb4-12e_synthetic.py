# The Copy-Paste ablation's "ours (boxes)" row: the synthetic Faster R-CNN with
# SmallObjectCopyPaste pasting feathered boxes (the annotations' masks unused).
_base_ = [
    '../_base_/models/faster-rcnn_r18-tiny_fpn.py',
    '../_base_/datasets/synthetic_coco_copy_paste.py',
    '../dat/_base_/runtime_synthetic_12e.py'
]

copy_paste = dict(_base_.copy_paste, paste_mode='box')
train_pipeline = [*_base_.train_pipeline_plain[:-1], copy_paste, _base_.train_pipeline_plain[-1]]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(base_batch_size=4)
