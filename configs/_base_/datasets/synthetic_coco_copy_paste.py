# The synthetic dataset (./synthetic_coco.py) with small-object Copy-Paste
# (deform_ext.SmallObjectCopyPaste, docs/copy_paste.md) after resize and flip, and
# PipelineEpochHook, which gives it the runner's seed and the epoch (new pastes each
# epoch). The transform's object bank reads the training annotations through its own
# data_root: a config or --cfg-options that moves the dataset moves it too
# (train_dataloader.dataset.pipeline.4.data_root). A config that sets its own
# custom_hooks keeps PipelineEpochHook in them. To turn Copy-Paste off for the last
# epochs, add in the final config:
#   custom_hooks = [dict(type='PipelineEpochHook'),
#                   dict(type='PipelineSwitchHook', switch_epoch=max_epochs - 2,
#                        switch_pipeline=_base_.train_pipeline_plain)]
_base_ = './synthetic_coco.py'

copy_paste = dict(
    type='SmallObjectCopyPaste',
    ann_file='annotations/instances_train.json', data_root=_base_.data_root,
    data_prefix=dict(img='train/'),
    paste_mode='auto',  # masks where the annotations have them, else feathered boxes
    area_weights=(1.0, 0.2, 0.0),  # per object: small, medium, large (COCO areas)
    num_objects=(1, 3), copies=(1, 3), scale_jitter=(0.8, 1.25),
    max_gt=50)  # at most the detector's num_queries
train_pipeline_plain = _base_.train_pipeline
train_pipeline = [*train_pipeline_plain[:-1], copy_paste, train_pipeline_plain[-1]]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [dict(type='PipelineEpochHook')]
