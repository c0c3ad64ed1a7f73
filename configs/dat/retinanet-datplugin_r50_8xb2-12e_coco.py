# The plugin form, for comparison with the recommended neck placement: mmdet's
# RetinaNet R-50-FPN 1x with a DAttentionPlugin after conv2 of every stage-4 bottleneck
# (3 blocks; 512 -> 256-d attention, 8 heads, 2 groups, key stride 1 on the stride-32
# map). Under mmdet's own scope the plugin is 'deform_ext.DAttentionPlugin'.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
default_scope = 'deform_ext'

model = dict(
    _scope_='deform_ext',  # the mmdet base sets 'mmdet', where our names are not found
    backbone=dict(plugins=[
        dict(cfg=dict(type='DAttentionPlugin', embed_dims=256, num_heads=8,
                      attn_cfg=dict(groups=2, stride=1, pe_type='table')),
             stages=(False, False, False, True), position='after_conv2')
    ]))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
