# EncoderRPNHead of ./encoder-rpn_r50.py at the 64-d synthetic detectors' width (a delta
# that the configs apply with `model = _base_._encoder_rpn`): one deformable encoder
# layer of 4 heads over P2-P6, Hungarian (one-to-one) assignment, 300 proposals, no NMS.
_base_ = './encoder-rpn_r50.py'
_encoder_rpn = dict(
    rpn_head=dict(
        in_channels=64,
        encoder=dict(layer_cfg=dict(self_attn_cfg=dict(embed_dims=64, num_heads=4),
                                    ffn_cfg=dict(embed_dims=64, feedforward_channels=256)))))
