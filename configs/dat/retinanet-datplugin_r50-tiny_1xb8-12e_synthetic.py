# The plugin form on the synthetic dataset: ResNet-50 at quarter width (bottlenecks are
# needed for plugins) with a DAttentionPlugin after conv2 of every stage-4 block, a
# plain FPN; otherwise as retinanet-datfpn_r18-tiny.
_base_ = './retinanet-datfpn_r18-tiny_1xb8-12e_synthetic.py'

model = dict(
    backbone=dict(
        depth=50, base_channels=16, stem_channels=16,
        plugins=[
            dict(cfg=dict(type='DAttentionPlugin', num_heads=4,
                          attn_cfg=dict(groups=2, stride=1, pe_type='table')),
                 stages=(False, False, False, True), position='after_conv2')
        ]),
    neck=dict(_delete_=True, type='FPN', in_channels=[64, 128, 256, 512], out_channels=64,
              start_level=1, add_extra_convs='on_input', num_outs=5))
