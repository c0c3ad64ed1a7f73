# EncoderRPNHead in place of RPNHead in mmdet's COCO R-CNN configs (a delta that the
# configs apply with `model = _base_._encoder_rpn`): one deformable encoder layer
# (256-d, 8 heads x 4 points) over the FPN's P2-P6, Hungarian (one-to-one)
# assignment, the 300 best tokens as proposals, no NMS. Works from mmdet's own
# tools/train.py through custom_imports; the type is scoped, so any default scope works.
custom_imports = dict(imports=['deform_ext'], allow_failed_imports=False)
_encoder_rpn = dict(
    rpn_head=dict(
        _delete_=True,
        type='deform_ext.EncoderRPNHead',
        in_channels=256,
        num_levels=5,
        encoder=dict(
            num_layers=1,
            layer_cfg=dict(
                self_attn_cfg=dict(type='MSDeformAttn', embed_dims=256, num_heads=8,
                                   num_levels=5, num_points=4, batch_first=True),
                ffn_cfg=dict(embed_dims=256, feedforward_channels=1024, ffn_drop=0.0)))),
    train_cfg=dict(
        rpn=dict(
            _delete_=True,
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        rpn_proposal=dict(_delete_=True, max_per_img=300)),
    test_cfg=dict(rpn=dict(_delete_=True, max_per_img=300)))
