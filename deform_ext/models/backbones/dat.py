"""DAT backbone (Vision Transformer with Deformable Attention, CVPR 2022) for detection.

The architecture of the CVPR-2022 release (DAT-T/S/B): a 4x4 patch embedding, four
stages of pre-norm transformer blocks whose attention alternates local-window
attention with shifted-window (stages 1-2) or deformable attention (stages 3-4), and
2x2 strided-conv downsampling between stages. Each stage is a list of block config
dicts, so any mix can be configured. Release checkpoints load after
``tools/model_converters/dat_to_deform_ext.py``.
"""
import copy
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from deform_ext.registry import MODELS
from ..layers.dat_blocks import DATBlock, LayerNorm2d


def _release_stages(stage3_depth: int, deformable_groups: Sequence[int]) -> list:
    """Block configs of DAT-T/S/B at 224 px: stage specs L S | L S | (L D) x n | L D
    (L local window, S shifted window, D deformable; ``deformable_groups`` gives the
    offset groups of stages 3 and 4)."""
    local = dict(type='DATLocalAttention', window_size=7)
    shifted = dict(type='DATLocalAttention', window_size=7, shift_size=4)
    # DAttention of stages 3 and 4: stride 1, offset range 2, relative position bias
    # table sized to the 224-px maps (14 and 7), offset conv kernels 5 and 3.
    stage3_deformable = dict(type='DAttention', groups=deformable_groups[0], stride=1,
                             offset_range_factor=2.0, pe_type='table', pe_size=14,
                             offset_kernel_size=5)
    stage4_deformable = dict(type='DAttention', groups=deformable_groups[1], stride=1,
                             offset_range_factor=2.0, pe_type='table', pe_size=7,
                             offset_kernel_size=3)
    return [[local, shifted], [local, shifted],
            [local, stage3_deformable] * (stage3_depth // 2), [local, stage4_deformable]]


ARCH_SETTINGS = {
    'tiny': dict(embed_dims=[96, 192, 384, 768], num_heads=[3, 6, 12, 24],
                 stage_blocks=_release_stages(6, (3, 6)), drop_path_rate=0.2),
    'small': dict(embed_dims=[96, 192, 384, 768], num_heads=[3, 6, 12, 24],
                  stage_blocks=_release_stages(18, (3, 6)), drop_path_rate=0.3),
    'base': dict(embed_dims=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
                 stage_blocks=_release_stages(18, (4, 8)), drop_path_rate=0.5),
}


class DATStage(BaseModule):
    """A list of :class:`DATBlock` at one resolution.

    Shapes: ``(bs, C, H, W) -> (bs, C, H, W)``.
    """

    def __init__(self, embed_dims: int, num_heads: int, block_cfgs: Sequence[dict],
                 mlp_ratio: float = 4.0, drop: float = 0.0, drop_paths: Sequence[float] = (),
                 with_cp: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(
            DATBlock(embed_dims, num_heads, attn_cfg=cfg, mlp_ratio=mlp_ratio, drop=drop,
                     drop_path=drop_paths[i] if drop_paths else 0.0)
            for i, cfg in enumerate(block_cfgs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


@MODELS.register_module()
class DAT(BaseModule):
    """DAT backbone with multi-scale outputs for FPN-style necks.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'`` (the CVPR-2022 release), or a dict
            with ``embed_dims`` (4 ints), ``num_heads`` (4 ints) and ``stage_blocks``
            (4 lists of attention config dicts, one per block, e.g.
            ``dict(type='DAttention', groups=3)`` or
            ``dict(type='DATLocalAttention', window_size=7, shift_size=4)``); it may
            also set ``drop_path_rate``.
        in_channels: input image channels.
        patch_size: stride of the patch embedding (a ``patch x patch`` conv).
        mlp_ratio: MLP width relative to the stage width.
        drop_rate: dropout in the MLPs.
        attn_drop_rate: attention dropout, passed to every attention config that does
            not set ``attn_drop``.
        drop_path_rate: stochastic depth, linearly increasing over all blocks;
            ``None``: the arch's value.
        out_indices: stages whose outputs are returned (strides 4, 8, 16, 32).
        with_out_norms: a LayerNorm on every returned map.
        frozen_stages: stages ``0..frozen_stages`` (and the patch embedding) are frozen;
            -1 freezes nothing.
        with_cp: gradient checkpointing of every block.
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=...)``
            with a converted release checkpoint.

    Shapes: ``(bs, in_channels, H, W)`` (any H, W) -> tuple of
    ``(bs, embed_dims[i], ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))`` for i in out_indices
    (with patch_size 4).
    """

    def __init__(self, arch='tiny', in_channels: int = 3, patch_size: int = 4,
                 mlp_ratio: float = 4.0, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: Optional[float] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3), with_out_norms: bool = True,
                 frozen_stages: int = -1, with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in ARCH_SETTINGS:
                raise ValueError(f'arch must be one of {sorted(ARCH_SETTINGS)} or a dict, '
                                 f'got {arch!r}')
            arch = ARCH_SETTINGS[arch]
        arch = copy.deepcopy(dict(arch))
        dims, heads, stage_blocks = arch['embed_dims'], arch['num_heads'], arch['stage_blocks']
        if not len(dims) == len(heads) == len(stage_blocks):
            raise ValueError('embed_dims, num_heads and stage_blocks need one entry per stage')
        if drop_path_rate is None:
            drop_path_rate = arch.get('drop_path_rate', 0.0)
        num_stages = len(dims)
        if any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} out of range for {num_stages} stages')
        self.embed_dims, self.patch_size = list(dims), patch_size
        self.out_indices, self.frozen_stages = tuple(out_indices), frozen_stages

        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_channels, dims[0], patch_size, patch_size), LayerNorm2d(dims[0]))
        depths = [len(blocks) for blocks in stage_blocks]
        num_blocks = sum(depths)
        drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1)  # linear
                      for i in range(num_blocks)]
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for i in range(num_stages):
            cfgs = [dict(cfg) for cfg in stage_blocks[i]]
            for cfg in cfgs:
                cfg.setdefault('attn_drop', attn_drop_rate)
            start = sum(depths[:i])
            self.stages.append(DATStage(dims[i], heads[i], cfgs, mlp_ratio, drop_rate,
                                        drop_paths[start:start + depths[i]], with_cp))
            if i < num_stages - 1:
                self.downsamples.append(nn.Sequential(
                    nn.Conv2d(dims[i], dims[i + 1], 2, 2, bias=False), LayerNorm2d(dims[i + 1])))
        self.out_norms = nn.ModuleDict(
            {str(i): LayerNorm2d(dims[i]) for i in self.out_indices} if with_out_norms else {})
        self._freeze_stages()

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed]
        for i in range(self.frozen_stages + 1):
            frozen.append(self.stages[i])
            if i > 0:
                frozen.append(self.downsamples[i - 1])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> tuple:
        patch = self.patch_size
        x = F.pad(x, (0, (-x.shape[-1]) % patch, 0, (-x.shape[-2]) % patch))
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
                x = self.downsamples[i - 1](x)
            x = stage(x)
            if i in self.out_indices:
                norm = self.out_norms[str(i)] if str(i) in self.out_norms else None
                outs.append(norm(x) if norm is not None else x)
        return tuple(outs)
