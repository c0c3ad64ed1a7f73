"""``EncoderAuxHeads``: one-to-many dense heads on a DETR's encoder memory, for
training only (Co-DETR's auxiliary heads, with a choice of levels and per-level weights).

The memory (bs, sum(H_l * W_l), C) is split into its pyramid (bs, C, H_l, W_l) by
:class:`~deform_ext.models.layers.encoder_pyramid.EncoderPyramid`, which can add finer
levels (strides 4, 8) from backbone stages; the heads (mmdet dense heads built from
config, :class:`ATSSHead` by default) compute their losses on the chosen levels, each
level's loss times its weight, returned as ``loss_aux_*``.

Why ATSS assignment rather than plain IoU thresholds (``MaxIoUAssigner``, 0.5/0.4):
with fixed thresholds an object much smaller than the anchors (a 10-px box against a
32-px stride-4 anchor has IoU < 0.1) gets no positive but the low-quality fallback,
and the number of positives grows with object size, so the dense signal goes to the
large objects that the deep levels already serve. ATSS takes the ``topk`` anchors
nearest to each object's centre on every level and sets that object's threshold to
the mean + std of their IoUs: every object gets several positives (one-to-many) on
the levels that fit its size, small ones on the shallow levels this head is for.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.structures import SampleList
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

from deform_ext.registry import MODELS, build_in_scope
from ..layers.encoder_pyramid import EncoderPyramid
from ..layers.positive_queries import (ImagePositives, PositiveQueries, anchor_positives,
                                       check_positive_head)

# Co-DETR's ATSS auxiliary head (mmdet's ATSS recipe, one stacked convolution).
DEFAULT_HEAD = dict(
    type='ATSSHead',
    stacked_convs=1,
    anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                          scales_per_octave=1),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=[0.1, 0.1, 0.2, 0.2]),
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
    loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                   pos_weight=-1, debug=False))


@MODELS.register_module()
class EncoderAuxHeads(BaseModule):
    """Training-only dense heads on the encoder memory pyramid.

    Args:
        embed_dims (int): C, the memory's channels (the detector fills it in).
        num_classes (int): classes (the detector fills in its head's).
        levels (sequence[int]): the strides the heads run on, increasing, e.g.
            ``(4, 8)`` (shallow only) or ``(16, 32, 64)``; each is a memory level or
            one of ``extra_levels``.
        level_weights (sequence[float], optional): one loss weight per level (the
            shallow ones may weigh more); all 1 when None. Needs heads whose
            ``loss_by_feat`` returns per-level lists (as ATSSHead's).
        extra_levels (list[dict]): finer levels than the memory's, each
            ``dict(stride=4, source='backbone.layer1', in_channels=C_4)``: the output of
            the detector's module ``source`` (captured by a forward hook) merged
            FPN-style with the next coarser level (see EncoderPyramid).
        head (dict | list[dict], optional): the dense head(s) (any mmdet dense head
            with ``loss(x, batch_data_samples)``); ``num_classes``, ``in_channels`` and
            ``feat_channels`` default to the detector's, and the prior strides are set
            to ``levels``. None: :data:`DEFAULT_HEAD` (ATSS); a dict without ``type``
            updates it, e.g. ``dict(feat_channels=32)`` for a narrower ATSS head.
        num_groups (int): GroupNorm groups of the extra levels' laterals. Default 32.
        positive_queries (dict, optional): Co-DETR's customised positive queries: each
            head's positive anchors also become training-only decoder queries
            (:mod:`~deform_ext.models.layers.positive_queries`), e.g.
            ``dict(max_per_image=300, loss_weight=1.0)``; the detector runs them. None:
            off.
        init_cfg (dict, optional): as BaseModule.
    """

    def __init__(self, embed_dims: int, num_classes: int, levels: Sequence[int],
                 level_weights: Optional[Sequence[float]] = None,
                 extra_levels: Sequence[dict] = (),
                 head: Union[dict, List[dict], None] = None, num_groups: int = 32,
                 positive_queries: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.levels = [int(s) for s in levels]
        if not self.levels or self.levels != sorted(set(self.levels)):
            raise ValueError(f'levels must be strides in increasing order, got {levels}')
        self.level_weights = [1.0] * len(self.levels) if level_weights is None else [
            float(w) for w in level_weights]
        if len(self.level_weights) != len(self.levels):
            raise ValueError(f'{len(self.level_weights)} level_weights for '
                             f'{len(self.levels)} levels {self.levels}')
        unused = [lvl['stride'] for lvl in extra_levels if lvl['stride'] not in self.levels]
        if unused:
            raise ValueError(f'extra_levels of strides {unused} are not in levels '
                             f'{self.levels}: their modules would never train')
        self.sources = {int(lvl['stride']): lvl['source'] for lvl in extra_levels}
        self.pyramid = EncoderPyramid(embed_dims, extra_levels, num_groups=num_groups)
        heads = [DEFAULT_HEAD] if head is None else head
        heads = [heads] if isinstance(heads, dict) else list(heads)
        self.heads = ModuleList(
            build_in_scope(MODELS, self._head_cfg(cfg, embed_dims, num_classes))
            for cfg in heads)
        self.positive_queries = None
        if positive_queries is not None:
            for built in self.heads:
                check_positive_head(built)
            self.positive_queries = PositiveQueries(embed_dims, len(self.heads),
                                                    **positive_queries)

    def _head_cfg(self, cfg: dict, embed_dims: int, num_classes: int) -> dict:
        """``cfg`` (or DEFAULT_HEAD updated by it when it names no type) with the
        detector's classes and width as defaults and the prior strides set to
        ``levels``."""
        cfg = copy.deepcopy(dict(cfg) if 'type' in cfg else dict(DEFAULT_HEAD, **cfg))
        for key, value in (('num_classes', num_classes), ('in_channels', embed_dims),
                           ('feat_channels', embed_dims)):
            cfg.setdefault(key, value)
        if 'anchor_generator' in cfg:  # anchor heads (ATSS, RetinaNet, RPN)
            cfg['anchor_generator'] = dict(cfg['anchor_generator'], strides=self.levels)
        else:  # anchor-free heads (FCOS, ...)
            cfg['strides'] = self.levels
        return cfg

    def loss(self, memory: Tensor, spatial_shapes: Tensor, sources: Dict[int, Tensor],
             batch_data_samples: SampleList
             ) -> Tuple[Dict[str, Tensor], List[List[ImagePositives]]]:
        """The weighted auxiliary losses ``loss_aux_<name>`` (``loss_aux<i>_<name>`` for
        head i of several), each a scalar; and with ``positive_queries`` each head's
        positive anchors per image (:func:`anchor_positives`; an empty list when off).

        Args:
            memory: (bs, sum(H_l * W_l), C) encoder output.
            spatial_shapes: (num_levels, 2) of (H_l, W_l).
            sources: {stride: (bs, C_s, H_s, W_s)}, the extra levels' backbone features.
            batch_data_samples: with ``gt_instances`` and ``batch_input_shape``.
        """
        height = batch_data_samples[0].metainfo['batch_input_shape'][0]
        pyramid = self.pyramid(memory, spatial_shapes, height, sources)
        missing = [s for s in self.levels if s not in pyramid]
        if missing:
            raise ValueError(f'aux levels of strides {missing} are not in the model: its '
                             f'memory has strides {sorted(pyramid)}; add them as '
                             'extra_levels or choose among those')
        feats = tuple(pyramid[s] for s in self.levels)
        losses = {}
        for i, head in enumerate(self.heads):
            tag = 'aux' if len(self.heads) == 1 else f'aux{i}'
            for name, value in head.loss(feats, batch_data_samples).items():
                losses[name.replace('loss_', f'loss_{tag}_', 1)] = self._weighted(
                    value, name, head)
        if self.positive_queries is None:
            return losses, []
        sizes = [feat.shape[-2:] for feat in feats]
        with torch.no_grad():
            positives = [anchor_positives(head, sizes, batch_data_samples, memory.device)
                         for head in self.heads]
        return losses, positives

    def _weighted(self, value, name: str, head: nn.Module) -> Tensor:
        """sum_l weight_l * value_l for per-level lists; a summed loss as it is."""
        if isinstance(value, (list, tuple)):
            return sum(w * v for w, v in zip(self.level_weights, value))
        if any(w != 1.0 for w in self.level_weights):
            raise ValueError(f'{type(head).__name__} returns {name} summed over levels; '
                             'level_weights need per-level losses (as ATSSHead gives)')
        return value
