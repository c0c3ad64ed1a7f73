"""Tiny Deformable DETR configs and inputs shared by the Deformable DETR tests."""
import copy

import torch
from mmdet.testing import demo_mm_inputs
from mmengine.registry import DefaultScope


def tiny_detr_cfg(detector='deform_ext.DeformDETR', head='deform_ext.DeformDETRHead',
                  embed_dims=32, num_levels=4, with_box_refine=False, as_two_stage=False,
                  num_queries=12, enc_layers=2, dec_layers=2, num_classes=4,
                  attn_extra=None, **extra):
    """A small Deformable DETR config (ResNet-18 at a quarter width)."""
    attn = dict(embed_dims=embed_dims, num_heads=4, num_levels=num_levels, batch_first=True)
    attn.update(attn_extra or {})
    out_indices = (1, 2, 3) if num_levels > 1 else (3,)
    in_channels = [32, 64, 128] if num_levels > 1 else [128]
    cfg = dict(
        type=detector,
        num_queries=num_queries,
        num_feature_levels=num_levels,
        with_box_refine=with_box_refine,
        as_two_stage=as_two_stage,
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, base_channels=16, stem_channels=16,
                      num_stages=4, out_indices=out_indices, frozen_stages=-1,
                      norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False),
        neck=dict(type='ChannelMapper', in_channels=in_channels, kernel_size=1,
                  out_channels=embed_dims, act_cfg=None,
                  norm_cfg=dict(type='GN', num_groups=8), num_outs=num_levels),
        encoder=dict(num_layers=enc_layers, layer_cfg=dict(
            self_attn_cfg=copy.deepcopy(attn),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=2 * embed_dims,
                         ffn_drop=0.1))),
        decoder=dict(num_layers=dec_layers, return_intermediate=True, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4, dropout=0.1,
                               batch_first=True),
            cross_attn_cfg=copy.deepcopy(attn),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=2 * embed_dims,
                         ffn_drop=0.1)), post_norm_cfg=None),
        positional_encoding=dict(num_feats=embed_dims // 2, normalize=True, offset=-0.5),
        bbox_head=dict(type=head, num_classes=num_classes, embed_dims=embed_dims,
                       sync_cls_avg_factor=True,
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                     alpha=0.25, loss_weight=2.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                       loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=num_queries))
    cfg.update(extra)
    return cfg


def mmdet_twin(cfg):
    """The same config on mmdet's own DeformableDETR and head (mmcv attention)."""
    cfg = copy.deepcopy(cfg)
    cfg['type'] = 'DeformableDETR'
    cfg['bbox_head']['type'] = 'DeformableDETRHead'
    cfg.pop('offset_loss', None)
    return cfg


def build(cfg, seed=0):
    from mmdet.registry import MODELS
    from deform_ext.models import init_weights_quietly
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(cfg))
    init_weights_quietly(model)
    return model


def tiny_batch(model, num_classes=4, seed=0, shapes=((3, 64, 96), (3, 96, 64)), items=(3, 2),
               dtype=torch.float64):
    """A preprocessed batch (images of different shapes, so padding masks are used)."""
    torch.manual_seed(seed)
    packed = demo_mm_inputs(batch_size=len(shapes), image_shapes=list(shapes),
                            num_items=list(items), num_classes=num_classes)
    data = model.data_preprocessor(packed, True)
    data['inputs'] = data['inputs'].to(dtype)
    for sample in data['data_samples']:
        sample.gt_instances.bboxes = sample.gt_instances.bboxes.to(dtype)
    return data


def total_loss(losses):
    return sum(v.sum() for k, v in losses.items() if 'loss' in k)
