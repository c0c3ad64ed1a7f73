# RetinaNet with the DAT-T backbone (CVPR-2022 release architecture) 1x, as in the DAT
# paper's detection setting (AdamW 1e-4, weight decay 0.05). ImageNet weights: convert
# the release's dat_tiny checkpoint with
#   python tools/model_converters/dat_to_deform_ext.py dat_tiny_in1k_224.pth \
#       checkpoints/dat-t_in1k_deform-ext.pth --out-indices 1 2 3
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
default_scope = 'deform_ext'

model = dict(
    _scope_='deform_ext',  # the mmdet base sets 'mmdet', where our names are not found
    backbone=dict(
        _delete_=True,
        type='DAT',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-t_in1k_deform-ext.pth')),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'rpe_table': dict(decay_mult=0.0),
        'relative_position_bias_table': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0)
    }))
