"""Tiny detectors with and without ``aux_head``: ours (DeformDETR) and mmdet's
Deformable DETR and DINO."""
import os.path as osp

import mmdet
from mmengine.config import Config

from deform_ext.testing import tiny_deformable_detr_cfg, without_init_cfg

MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
MMDET_DETECTORS = {
    'DeformableDETR': 'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    'DINO': 'dino/dino-4scale_r50_8xb2-12e_coco.py',
}
BACKBONE_CHANNELS = 16  # the tiny ResNet-18's base width: layer1 16, layer2 32 channels


def aux_head(levels=(4, 8, 16, 32, 64), **kwargs) -> dict:
    """EncoderAuxHeads on ``levels``; the stride-4 level (when asked) from the tiny
    ResNet's ``layer1`` (the tiny models' memory has strides 8-64)."""
    extra = [dict(stride=4, source='backbone.layer1', in_channels=BACKBONE_CHANNELS)]
    return dict(type='EncoderAuxHeads', levels=levels,
                extra_levels=extra if 4 in levels else [], **kwargs)


def tiny_ours(variant='deformable-detr', **aux) -> dict:
    """Our tiny DeformDETR without dropout (runs compare numbers), ``aux_head`` from
    ``aux`` (keyword arguments of :func:`aux_head`) when given."""
    cfg = tiny_deformable_detr_cfg(variant, dropout=0.0,
                                   backbone_channels=BACKBONE_CHANNELS)
    if aux:
        cfg['aux_head'] = aux_head(**aux)
    return cfg


def tiny_mmdet(name: str) -> dict:
    """mmdet's config for ``name`` at test size: a quarter-width ResNet-18 (C3-C5 and
    one more level: strides 8-64), one encoder and two decoder layers, few queries.
    (DINO keeps 256 dims: its query embeddings hard-code 128 features per coordinate.)"""
    cfg = without_init_cfg(
        Config.fromfile(osp.join(MMDET_CONFIGS, MMDET_DETECTORS[name])).model.to_dict())
    cfg['backbone'] = dict(type='ResNet', depth=18, base_channels=BACKBONE_CHANNELS,
                           stem_channels=BACKBONE_CHANNELS, num_stages=4,
                           out_indices=(1, 2, 3), norm_eval=False)
    cfg['neck']['in_channels'] = [32, 64, 128]
    cfg['encoder']['num_layers'] = 1
    cfg['decoder']['num_layers'] = 2
    for layer in ('encoder', 'decoder'):
        cfg[layer]['layer_cfg']['ffn_cfg']['feedforward_channels'] = 64
    cfg['num_queries'] = 20
    cfg['bbox_head']['num_classes'] = 4
    if 'dn_cfg' in cfg:
        cfg['dn_cfg']['group_cfg']['num_dn_queries'] = 10
    cfg['test_cfg']['max_per_img'] = 20
    return cfg

