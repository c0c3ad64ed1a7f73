"""Deformable DETR encoder and decoder on :class:`MSDeformAttn`.

Subclasses of mmdet's Deformable DETR layers that build their deformable attention
from a config dict (``self_attn_cfg`` / ``cross_attn_cfg`` with an optional
``type``; ``MSDeformAttn`` when absent), so the same config keys as mmdet's select
the attention. The encoder checkpoints its first ``num_cp`` layers with
``torch.utils.checkpoint`` (mmdet needs fairscale for that).
"""
from typing import Optional

import torch
from mmdet.models.layers.transformer.deformable_detr_layers import (
    DeformableDetrTransformerDecoder, DeformableDetrTransformerDecoderLayer,
    DeformableDetrTransformerEncoder, DeformableDetrTransformerEncoderLayer)
from mmengine.model import ModuleList
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from deform_ext.registry import MODELS, build_in_scope
from .ms_deform_attn import MSDeformAttn


def _build_layers(default_type, layer_cfg: dict, num_layers: int) -> ModuleList:
    """``num_layers`` layers built from ``layer_cfg`` (``type`` defaults to
    ``default_type``), each with its own weights."""
    return ModuleList([build_in_scope(MODELS, layer_cfg, default_type=default_type)
                       for _ in range(num_layers)])


@MODELS.register_module()
class DeformableEncoderLayer(DeformableDetrTransformerEncoderLayer):
    """Encoder layer: deformable self-attention (``self_attn_cfg``) then FFN.

    Args: as mmdet's ``DeformableDetrTransformerEncoderLayer`` (``self_attn_cfg``,
    ``ffn_cfg``, ``norm_cfg``, ``init_cfg``); ``self_attn_cfg.type`` picks the
    attention (default :class:`MSDeformAttn`). Forward: ``query`` (bs, num_keys, dim)
    to (bs, num_keys, dim).
    """

    def _init_layers(self) -> None:
        from mmcv.cnn import build_norm_layer
        from mmcv.cnn.bricks.transformer import FFN
        self.self_attn = build_in_scope(MODELS, self.self_attn_cfg,
                                        default_type=MSDeformAttn)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = ModuleList(
            [build_norm_layer(self.norm_cfg, self.embed_dims)[1] for _ in range(2)])


@MODELS.register_module()
class DeformableDecoderLayer(DeformableDetrTransformerDecoderLayer):
    """Decoder layer: self-attention, deformable cross-attention
    (``cross_attn_cfg``), FFN. Forward: ``query`` (bs, num_queries, dim) and
    ``value`` (bs, num_keys, dim) to (bs, num_queries, dim)."""

    def _init_layers(self) -> None:
        from mmcv.cnn import build_norm_layer
        from mmcv.cnn.bricks.transformer import FFN, MultiheadAttention
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.cross_attn = build_in_scope(MODELS, self.cross_attn_cfg,
                                         default_type=MSDeformAttn)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = ModuleList(
            [build_norm_layer(self.norm_cfg, self.embed_dims)[1] for _ in range(3)])


@MODELS.register_module()
class DeformableEncoder(DeformableDetrTransformerEncoder):
    """Deformable DETR encoder.

    Args:
        num_layers (int): encoder layers.
        layer_cfg (dict): config of each layer (``type`` defaults to
            :class:`DeformableEncoderLayer`).
        num_cp (int): gradient-checkpoint the first ``num_cp`` layers while
            training (activations recomputed in backward: same gradients, lower
            peak memory). ``-1`` (default) or 0: none.
        init_cfg (dict, optional): mmengine init config.

    Forward as mmdet's: ``query``/``query_pos`` (bs, num_keys, dim) → memory
    (bs, num_keys, dim).
    """

    def _init_layers(self) -> None:
        self.layers = _build_layers(DeformableEncoderLayer, self.layer_cfg, self.num_layers)
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Optional[Tensor],
                spatial_shapes: Tensor, level_start_index: Tensor, valid_ratios: Tensor,
                **kwargs) -> Tensor:
        reference_points = self.get_encoder_reference_points(
            spatial_shapes, valid_ratios, device=query.device)
        layer_kwargs = dict(query_pos=query_pos, key_padding_mask=key_padding_mask,
                            spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                            valid_ratios=valid_ratios, reference_points=reference_points,
                            **kwargs)
        for index, layer in enumerate(self.layers):
            if self.training and index < self.num_cp and torch.is_grad_enabled():
                query = checkpoint(layer, query, use_reentrant=False, **layer_kwargs)
            else:
                query = layer(query, **layer_kwargs)
        return query


@MODELS.register_module()
class DeformableDecoder(DeformableDetrTransformerDecoder):
    """Deformable DETR decoder (optional iterative box refinement through
    ``reg_branches``), as mmdet's, with layers of ``layer_cfg.type`` (default
    :class:`DeformableDecoderLayer`). Forward returns the stacked hidden states
    (num_layers, bs, num_queries, dim) and references (num_layers, bs,
    num_queries, 2 or 4) when ``return_intermediate``."""

    def _init_layers(self) -> None:
        self.layers = _build_layers(DeformableDecoderLayer, self.layer_cfg, self.num_layers)
        self.embed_dims = self.layers[0].embed_dims
        if self.post_norm_cfg is not None:
            raise ValueError(f'{type(self).__name__} has no post norm; set post_norm_cfg=None')
