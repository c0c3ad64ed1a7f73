"""DAttention as a plugin of mmdet's ResNet (``Bottleneck`` blocks).

    backbone=dict(type='ResNet', depth=50, ...,
                  plugins=[dict(cfg=dict(type='deform_ext.DAttentionPlugin', embed_dims=256),
                                stages=(False, False, False, True),
                                position='after_conv3')])

mmdet's ``Bottleneck.make_block_plugins`` builds each plugin with mmcv's
``build_plugin_layer(cfg, in_channels=..., postfix=...)``, names it ``_abbr_ + postfix``
and calls it on the block's feature map, so the plugin maps ``(bs, C, H, W)`` to the
same shape.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from deform_ext.registry import MODELS, build_in_scope
from ..layers.dat_blocks import LayerNorm2d


@MODELS.register_module()
class DAttentionPlugin(BaseModule):
    """Residual deformable attention for a CNN block: ``x + gamma * up(attn(down(norm(x))))``.

    ``down``/``up`` are 1x1 convs to and from ``embed_dims`` (absent when it equals
    ``in_channels``), so a wide ResNet stage (1024 or 2048 channels after conv3) can
    attend at a narrower width. ``gamma`` is a learned per-channel scale started small
    so that a pretrained ResNet's features are barely changed at the start while
    every parameter gets gradients from the first step.

    Args:
        in_channels: C, given by mmdet's ResNet.
        embed_dims: width of the attention; ``None``: ``in_channels``.
        num_heads: attention heads.
        attn_cfg: extra arguments of the attention, default
            ``dict(type='DAttention', groups=2, stride=2, pe_type='table')``.
        layer_scale_init_value: initial ``gamma``.
        init_cfg: mmengine init config.

    Shapes: ``(bs, C, H, W) -> (bs, C, H, W)``.
    """

    _abbr_ = 'dattention_plugin'

    def __init__(self, in_channels: int, embed_dims: Optional[int] = None, num_heads: int = 8,
                 attn_cfg: Optional[dict] = None, layer_scale_init_value: float = 1e-2,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        embed_dims = embed_dims or in_channels
        attn_cfg = {**dict(type='DAttention', groups=2, stride=2, pe_type='table'),
                    **(attn_cfg or {})}
        self.in_channels, self.embed_dims = in_channels, embed_dims
        self.norm = LayerNorm2d(in_channels)
        reduce = embed_dims != in_channels
        self.down = nn.Conv2d(in_channels, embed_dims, 1) if reduce else nn.Identity()
        self.attn = build_in_scope(MODELS, attn_cfg,
                                   default_args=dict(embed_dims=embed_dims, num_heads=num_heads))
        self.up = nn.Conv2d(embed_dims, in_channels, 1) if reduce else nn.Identity()
        self.gamma = nn.Parameter(torch.full((in_channels, ), float(layer_scale_init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.attn(self.down(self.norm(x))))
        return x + self.gamma.view(1, -1, 1, 1) * y
