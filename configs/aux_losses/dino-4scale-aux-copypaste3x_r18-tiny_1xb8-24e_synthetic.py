# The memory check of the auxiliary heads with denoising and crowded images: mmdet's
# DINO at CPU size (projects/ms_deform_attn_swap/, our op; 100 queries, denoising on,
# memory at strides 8-64) with training-only ATSS heads on strides 4-64 (the stride-4
# level from ResNet layer1) and small-object Copy-Paste pasting 12-18 objects per image:
# about three times the synthetic set's 6.8 objects per image. The aux_losses suite's
# `dino` and `dino-aux-copypaste3x` rows compare its peak memory and step time with
# plain DINO (docs/aux_losses.md).
_base_ = ('../../projects/ms_deform_attn_swap/configs/'
          'dino-4scale-ms-deform-attn_r18-tiny_1xb8-24e_synthetic.py')

model = dict(
    base_type='deform_ext.DINOWithAux',
    aux_head=dict(type='EncoderAuxHeads', levels=(4, 8, 16, 32, 64),
                  extra_levels=[dict(stride=4, source='backbone.layer1', in_channels=32)]))

copy_paste = dict(
    type='deform_ext.SmallObjectCopyPaste',
    ann_file=_base_.train_dataloader.dataset.ann_file,
    data_root=_base_.train_dataloader.dataset.data_root,
    data_prefix=_base_.train_dataloader.dataset.data_prefix,
    paste_mode='box', area_weights=(1.0, 0.2, 0.0), num_objects=(4, 6), copies=(3, 3),
    scale_jitter=(0.8, 1.25), max_gt=100)  # at most num_queries targets
train_pipeline = [*_base_.train_pipeline[:-1], copy_paste, _base_.train_pipeline[-1]]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [dict(type='deform_ext.PipelineEpochHook')]  # new pastes every epoch
