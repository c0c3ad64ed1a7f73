# The Copy-Paste ablation's "ours (masks)" row: pasted objects cut out by their
# polygons, and the ground-truth masks loaded so that occlusion is pixel-exact (they
# travel to the model, which ignores them).
_base_ = [
    '../_base_/models/faster-rcnn_r18-tiny_fpn.py',
    '../_base_/datasets/synthetic_coco_copy_paste.py',
    '../dat/_base_/runtime_synthetic_12e.py'
]

copy_paste = dict(_base_.copy_paste, paste_mode='mask')
load_with_masks = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
train_pipeline = [_base_.train_pipeline_plain[0], load_with_masks,
                  *_base_.train_pipeline_plain[2:-1], copy_paste,
                  _base_.train_pipeline_plain[-1]]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(base_batch_size=4)
