# RetinaNet with a DAT backbone on the synthetic dataset: DAT-T's layout (local and
# shifted windows in stages 1-2, local + deformable attention in stages 3-4) at a third
# of its width (32..256-d) and half its depth in stage 3, from scratch.
_base_ = './retinanet-datfpn_r18-tiny_1xb8-12e_synthetic.py'

local = dict(type='DATLocalAttention', window_size=7)
shifted = dict(type='DATLocalAttention', window_size=7, shift_size=4)
model = dict(
    backbone=dict(
        _delete_=True,
        type='DAT',
        arch=dict(
            embed_dims=[32, 64, 128, 256],
            num_heads=[1, 2, 4, 8],
            stage_blocks=[
                [local, shifted], [local, shifted],
                [local, dict(type='DAttention', groups=2, stride=1, pe_size=16)],
                [local, dict(type='DAttention', groups=4, stride=1, pe_size=8)],
            ]),
        drop_path_rate=0.1,
        out_indices=(1, 2, 3)),
    neck=dict(_delete_=True, type='FPN', in_channels=[64, 128, 256], out_channels=64,
              start_level=0, add_extra_convs='on_input', num_outs=5))
