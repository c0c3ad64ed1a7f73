# CPU-sized RetinaNet on the synthetic shapes dataset with the recommended DAT
# placement: one DAT block on each of P4 (key stride 2) and P5 (key stride 1) after
# the FPN; ResNet-18 at half width, 64-d FPN and head, trained from scratch.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', '../_base_/datasets/synthetic_coco.py',
    './_base_/runtime_synthetic_12e.py'
]

model = dict(
    _scope_='deform_ext',  # the mmdet base sets 'mmdet', where our names are not found
    backbone=dict(_delete_=True, type='ResNet', depth=18, base_channels=32, stem_channels=32,
                  out_indices=(0, 1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch'),
    neck=dict(
        _delete_=True,
        type='DATFPN',
        neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=64, start_level=1,
                  add_extra_convs='on_input', num_outs=5),
        out_channels=64,
        levels=(1, 2),  # outputs P3..P7: P4 (16 x 16 at 256 px) and P5 (8 x 8)
        num_heads=4,
        attn_cfgs=[dict(type='DAttention', groups=2, stride=2, pe_type='table'),
                   dict(type='DAttention', groups=2, stride=1, pe_type='table')]),
    bbox_head=dict(num_classes=6, in_channels=64, feat_channels=64, stacked_convs=2,
                   anchor_generator=dict(octave_base_scale=2)))  # objects from 8 px
