# CPU-sized Faster R-CNN on the synthetic shapes dataset with the recommended DAT
# placement: one DAT block on each of P4 (key stride 2) and P5 (key stride 1) after
# the FPN; ResNet-18 at half width, 64-d FPN, trained from scratch.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py', '../_base_/datasets/synthetic_coco.py',
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
        neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=64, num_outs=5),
        out_channels=64,
        levels=(2, 3),  # outputs P2..P6: P4 (16 x 16 at 256 px) and P5 (8 x 8)
        num_heads=4,
        attn_cfgs=[dict(type='DAttention', groups=2, stride=2, pe_type='table'),
                   dict(type='DAttention', groups=2, stride=1, pe_type='table')]),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4])),  # objects from 8 px
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=6)),
    # fewer proposals and sampled RoIs than on COCO: at most a dozen objects per image
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=500),
                   rcnn=dict(sampler=dict(num=256))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))
