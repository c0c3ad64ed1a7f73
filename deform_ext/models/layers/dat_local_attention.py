"""Window (local) multi-head self-attention with a relative position bias table and
optional cyclic shift: the ``L`` and ``S`` blocks of the DAT backbone (as in Swin)."""
from functools import lru_cache
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from deform_ext.registry import MODELS

_MASKED = -100.0  # finite, so a row with every key masked stays NaN-free


@lru_cache(maxsize=32)
def _window_mask(height: int, width: int, padded_h: int, padded_w: int, window: int,
                 shift: int) -> Optional[torch.Tensor]:
    """(nW, N, N) additive mask of the shifted, padded map, or None when nothing is
    masked. Keys in another shift region, and padding keys, are masked."""
    if shift == 0 and (padded_h, padded_w) == (height, width):
        return None
    region = torch.zeros(padded_h, padded_w)
    if shift > 0:
        cuts_h = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        cuts_w = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        label = 0
        for ch in cuts_h:
            for cw in cuts_w:
                region[ch, cw] = label
                label += 1
    # padding is at the bottom/right before the shift; roll it like the features
    pad = torch.zeros(padded_h, padded_w, dtype=torch.bool)
    pad[height:, :] = True
    pad[:, width:] = True
    pad = torch.roll(pad, (-shift, -shift), (0, 1))
    region = region.masked_fill(pad, -1.0)  # padding: a region of its own, always masked

    def windows(t):
        t = t.reshape(padded_h // window, window, padded_w // window, window)
        return t.permute(0, 2, 1, 3).reshape(-1, window * window)

    region_w, pad_w = windows(region), windows(pad)
    masked = (region_w[:, :, None] != region_w[:, None, :]) | pad_w[:, None, :]
    return torch.zeros(masked.shape).masked_fill(masked, _MASKED)


@MODELS.register_module()
class DATLocalAttention(BaseModule):
    """Multi-head self-attention inside non-overlapping ``w x w`` windows.

    The map is zero-padded at the bottom/right to a multiple of ``w`` (padding keys
    are masked), cyclically shifted by ``-shift_size`` when ``shift_size > 0`` (keys
    from other regions are masked, as in Swin), split into windows, attended with a
    learned ``((2w-1)^2, M)`` relative position bias, and put back.

    Args:
        embed_dims: C.
        num_heads: M, ``C % M == 0``.
        window_size: w.
        shift_size: cyclic shift, ``0 <= shift_size < w`` (the DAT release uses
            ``ceil(w / 2)`` for its shifted blocks).
        attn_drop: attention dropout (training only).
        proj_drop: dropout after ``proj_out``.
        init_cfg: mmengine init config.

    Shapes: ``(bs, C, H, W) -> (bs, C, H, W)``, any H, W.
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int = 7,
                 shift_size: int = 0, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        if not 0 <= shift_size < window_size:
            raise ValueError(f'need 0 <= shift_size < window_size, got {shift_size}, '
                             f'{window_size}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.window_size, self.shift_size = window_size, shift_size
        self.attn_drop = attn_drop
        self.proj_qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.proj_out = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        w = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * w - 1)**2, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.01)
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij'))
        coords = coords.flatten(1)  # (2, N)
        rel = (coords[:, :, None] - coords[:, None, :]) + (w - 1)  # (2, N, N) in [0, 2w-2]
        self.register_buffer('relative_position_index', rel[0] * (2 * w - 1) + rel[1],
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, channels, height, width = x.shape
        w, shift, heads = self.window_size, self.shift_size, self.num_heads
        pad_h, pad_w = (-height) % w, (-width) % w
        x = F.pad(x, (0, pad_w, 0, pad_h)).permute(0, 2, 3, 1)  # (bs, Hp, Wp, C)
        hp, wp = height + pad_h, width + pad_w
        if shift:
            x = torch.roll(x, (-shift, -shift), (1, 2))
        nh, nw = hp // w, wp // w
        windows = x.reshape(bs, nh, w, nw, w, channels).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(bs, nh * nw, w * w, channels)
        qkv = self.proj_qkv(windows).reshape(bs, nh * nw, w * w, 3, heads, -1)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (bs, nW, M, N, hd)

        bias = self.relative_position_bias_table[self.relative_position_index]  # (N, N, M)
        bias = bias.permute(2, 0, 1)  # (M, N, N)
        mask = _window_mask(height, width, hp, wp, w, shift)
        if mask is not None:
            bias = bias + mask.to(bias)[:, None]  # (nW, M, N, N)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0)  # (bs, nW, M, N, hd)
        out = out.transpose(2, 3).reshape(bs, nh * nw, w * w, channels)
        out = self.proj_drop(self.proj_out(out))
        out = out.reshape(bs, nh, nw, w, w, channels).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(bs, hp, wp, channels)
        if shift:
            out = torch.roll(out, (shift, shift), (1, 2))
        return out[:, :height, :width].permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'window_size={self.window_size}, shift_size={self.shift_size}')
