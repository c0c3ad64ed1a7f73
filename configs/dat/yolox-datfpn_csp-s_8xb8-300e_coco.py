# mmdet's YOLOX-S with the recommended DAT placement (README.md): one DAT block
# (deformable attention + MLP, 128-d, 4 heads, 2 offset groups) on each of the
# stride-16 (key stride 2) and stride-32 (key stride 1) outputs of the PAFPN.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
default_scope = 'deform_ext'

model = dict(
    _scope_='deform_ext',  # the mmdet base sets 'mmdet', where our names are not found
    neck=dict(
        _delete_=True,
        type='DATFPN',
        neck=dict(type='YOLOXPAFPN', in_channels=[128, 256, 512], out_channels=128,
                  num_csp_blocks=1, use_depthwise=False,
                  upsample_cfg=dict(scale_factor=2, mode='nearest'),
                  norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
                  act_cfg=dict(type='Swish')),
        out_channels=128,
        levels=(1, 2),  # outputs at strides 8, 16, 32
        num_heads=4,
        attn_cfgs=[dict(type='DAttention', groups=2, stride=2, pe_type='table'),
                   dict(type='DAttention', groups=2, stride=1, pe_type='table')]))
