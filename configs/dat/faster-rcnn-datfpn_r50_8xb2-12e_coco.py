# mmdet's Faster R-CNN R-50-FPN 1x with the recommended DAT placement (README.md): one
# DAT block (deformable attention + MLP, 256-d, 8 heads, 2 offset groups) on each of
# P4 (key stride 2) and P5 (key stride 1), after the FPN.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
default_scope = 'deform_ext'

model = dict(
    _scope_='deform_ext',  # the mmdet base sets 'mmdet', where our names are not found
    neck=dict(
        _delete_=True,
        type='DATFPN',
        neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
                  num_outs=5),
        out_channels=256,
        levels=(2, 3),  # outputs P2..P6: P4 (stride 16) and P5 (stride 32)
        num_heads=8,
        attn_cfgs=[dict(type='DAttention', groups=2, stride=2, pe_type='table'),
                   dict(type='DAttention', groups=2, stride=1, pe_type='table')]))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
