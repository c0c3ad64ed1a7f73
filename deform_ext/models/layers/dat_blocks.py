"""Building blocks shared by the DAT backbone, plugin and neck.

- :class:`LayerNorm2d`: LayerNorm over the channels of a ``(bs, C, H, W)`` map.
- :class:`DATMlp`: the two-layer GELU feed-forward of a DAT block.
- :class:`DATBlock`: pre-norm residual block ``x + attn(norm(x))``, ``x + mlp(norm(x))``
  whose attention is chosen by a config dict, built in deform_ext's scope (bare
  names such as ``'DAttention'`` also work inside a config that runs under mmdet's
  scope).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from deform_ext.registry import MODELS, build_in_scope


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of a channel-first map.

    Shapes: ``(bs, C, H, W) -> (bs, C, H, W)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class DATMlp(nn.Module):
    """Feed-forward ``fc2(drop(GELU(fc1(x))))`` applied at every position.

    Args:
        embed_dims: C.
        mlp_ratio: hidden width is ``mlp_ratio * C``.
        drop: dropout after the activation and after ``fc2``.

    Shapes: ``(bs, C, H, W) -> (bs, C, H, W)``.
    """

    def __init__(self, embed_dims: int, mlp_ratio: float = 4.0, drop: float = 0.0):
        super().__init__()
        hidden = int(embed_dims * mlp_ratio)
        self.fc1 = nn.Linear(embed_dims, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
        return x.permute(0, 3, 1, 2)


class DATBlock(BaseModule):
    """A DAT transformer block: ``x + drop_path(ls1 * attn(norm1(x)))`` then
    ``x + drop_path(ls2 * mlp(norm2(x)))``.

    Args:
        embed_dims: C.
        num_heads: passed to the attention unless its config sets it.
        attn_cfg: the attention, e.g. ``dict(type='DAttention', groups=2)`` or
            ``dict(type='DATLocalAttention', window_size=7, shift_size=3)``; it must
            map ``(bs, C, H, W)`` to the same shape.
        mlp_ratio: hidden width of the MLP relative to C; 0 drops the MLP half.
        drop: dropout in the MLP.
        drop_path: stochastic depth rate of both residual branches.
        layer_scale_init_value: initial per-channel scale of both branches
            (``None``: no scale).
        init_cfg: mmengine init config.

    Shapes: ``(bs, C, H, W) -> (bs, C, H, W)``.
    """

    def __init__(self, embed_dims: int, num_heads: int, attn_cfg: dict,
                 mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.norm1 = LayerNorm2d(embed_dims)
        self.attn = build_in_scope(MODELS, attn_cfg,
                                   default_args=dict(embed_dims=embed_dims, num_heads=num_heads))
        self.with_mlp = mlp_ratio > 0
        if self.with_mlp:
            self.norm2 = LayerNorm2d(embed_dims)
            self.mlp = DATMlp(embed_dims, mlp_ratio, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if layer_scale_init_value is not None:
            self.gamma1 = nn.Parameter(torch.full((embed_dims, ), float(layer_scale_init_value)))
            if self.with_mlp:
                self.gamma2 = nn.Parameter(
                    torch.full((embed_dims, ), float(layer_scale_init_value)))
        self.with_layer_scale = layer_scale_init_value is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        if self.with_layer_scale:
            y = y * self.gamma1.view(1, -1, 1, 1)
        x = x + self.drop_path(y)
        if self.with_mlp:
            y = self.mlp(self.norm2(x))
            if self.with_layer_scale:
                y = y * self.gamma2.view(1, -1, 1, 1)
            x = x + self.drop_path(y)
        return x
