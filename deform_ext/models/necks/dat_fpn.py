"""A neck that runs any inner neck (FPN, YOLOXPAFPN, ...) and then DAT blocks on
chosen output levels."""
from typing import Optional, Sequence

import torch.nn as nn
from mmengine.model import BaseModule

from deform_ext.registry import MODELS
from ..layers.dat_blocks import DATBlock


@MODELS.register_module()
class DATFPN(BaseModule):
    """Inner neck followed by :class:`DATBlock` s (deformable attention + MLP) on some
    of its outputs.

    Args:
        neck: config of the inner neck, e.g. mmdet's ``dict(type='FPN', ...)``.
        out_channels: width of the inner neck's outputs (the blocks' width).
        levels: indices of the inner neck's outputs that get blocks.
        num_blocks: blocks per level (separate weights per level).
        num_heads: attention heads.
        attn_cfgs: one attention config per entry of ``levels`` (or one dict for all),
            default ``dict(type='DAttention', groups=2, stride=1, pe_type='table')``.
        mlp_ratio: MLP width of the blocks relative to ``out_channels``.
        drop_path: stochastic depth of the blocks.
        layer_scale_init_value: initial scale of the blocks' residual branches
            (``None``: none).
        init_cfg: mmengine init config.

    Shapes: as the inner neck: a tuple of ``(bs, out_channels, H_l, W_l)``.
    """

    def __init__(self, neck: dict, out_channels: int, levels: Sequence[int],
                 num_blocks: int = 1, num_heads: int = 8, attn_cfgs=None,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layer_scale_init_value: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.neck = MODELS.build(neck)
        self.levels = tuple(levels)
        if attn_cfgs is None:
            attn_cfgs = dict(type='DAttention', groups=2, stride=1, pe_type='table')
        if isinstance(attn_cfgs, dict):
            attn_cfgs = [attn_cfgs] * len(self.levels)
        if len(attn_cfgs) != len(self.levels):
            raise ValueError(f'{len(attn_cfgs)} attn_cfgs for {len(self.levels)} levels')
        self.blocks = nn.ModuleList(
            nn.Sequential(*[
                DATBlock(out_channels, num_heads, attn_cfg=cfg, mlp_ratio=mlp_ratio,
                         drop_path=drop_path, layer_scale_init_value=layer_scale_init_value)
                for _ in range(num_blocks)
            ]) for cfg in attn_cfgs)

    def forward(self, inputs) -> tuple:
        outs = list(self.neck(inputs))
        for level, blocks in zip(self.levels, self.blocks):
            outs[level] = blocks(outs[level])
        return tuple(outs)
