"""Seeded model builds, and the same Deformable DETR on mmdet's own classes."""
import copy

import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from torch import nn

from .quiet_init import init_weights_quietly

# What deform_ext's DeformDETR and MSDeformAttn accept and mmdet's classes do not.
OURS_ONLY_MODEL_KEYS = ('offset_loss', 'channels_last')
OURS_ONLY_ATTENTION_KEYS = ('type', 'offset_range', 'box_offset_points')
OURS_ONLY_TRANSFORMER_KEYS = ('type', 'num_cp')


def build_model(cfg: dict, seed: int = 0, scope: str = 'deform_ext') -> nn.Module:
    """Build ``cfg`` from mmdet's MODELS under the default ``scope`` after
    ``torch.manual_seed(seed)`` (the same seed gives the same weights) and initialise
    it as training does (:func:`init_weights_quietly`). ``cfg`` is copied into a
    ``ConfigDict``, as a Runner passes it (some models read it by attribute)."""
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    init_weights_quietly(model)
    return model


def mmdet_twin(model_cfg: dict) -> dict:
    """The same Deformable DETR on mmdet's ``DeformableDETR`` and ``DeformableDETRHead``
    with mmcv's ``MultiScaleDeformableAttention``: our options that mmdet lacks are
    dropped, so ours with them off and the twin have the same parameters (state dicts
    load both ways). Raises ``ValueError`` for two-stage at ``embed_dims != 256``: mmdet
    3.3's proposal embedding has 128 features per coordinate whatever the width."""
    cfg = copy.deepcopy(dict(model_cfg))
    cfg['type'] = 'DeformableDETR'
    cfg['bbox_head'] = dict(cfg['bbox_head'], type='DeformableDETRHead')
    for key in OURS_ONLY_MODEL_KEYS:
        cfg.pop(key, None)
    for part, attention in (('encoder', 'self_attn_cfg'), ('decoder', 'cross_attn_cfg')):
        for key in OURS_ONLY_TRANSFORMER_KEYS:
            cfg[part].pop(key, None)
        for key in OURS_ONLY_ATTENTION_KEYS:
            cfg[part]['layer_cfg'][attention].pop(key, None)
    embed_dims = cfg['encoder']['layer_cfg']['self_attn_cfg'].get('embed_dims', 256)
    if cfg.get('as_two_stage') and embed_dims != 256:
        raise ValueError(f'mmdet 3.3 two-stage Deformable DETR needs embed_dims=256, '
                         f'got {embed_dims}')
    return cfg


def total_loss(losses: dict) -> torch.Tensor:
    """The sum of every loss term of a ``mode='loss'`` output: one scalar to
    backpropagate."""
    return sum(value.sum() for key, value in losses.items() if 'loss' in key)
