"""Deformable multi-head attention of DAT (Xia et al., "Vision Transformer with
Deformable Attention", CVPR 2022), written from the paper's description.

Every query attends to the same small set of keys: a grid of reference points
(stride ``r`` over the map), each moved by an offset that an offset network predicts
from the queries. Keys and values are bilinearly sampled from the input at the moved
points, so the cost is ``O(HW * HW / r^2)`` instead of ``O(HW * HW)``.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from deform_ext.registry import MODELS
from .dat_blocks import LayerNorm2d

PE_TYPES = ('none', 'dwc', 'fixed', 'table', 'log_cpb')


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def cell_centers(size: int, stride: int, dtype, device) -> torch.Tensor:
    """Centres of the ``ceil(size / stride)`` cells ``[j*stride, min((j+1)*stride, size))``
    normalised to ``[-1, 1]`` (``grid_sample`` with ``align_corners=False``)."""
    start = torch.arange(0, size, stride, dtype=dtype, device=device)
    end = (start + stride).clamp(max=size)
    return (start + end) / size - 1


@MODELS.register_module()
class DAttention(BaseModule):
    """Deformable multi-head attention (DAT).

    Steps (shapes for ``x: (bs, C, H, W)``, ``G`` groups, ``M`` heads,
    ``Hk, Wk = ceil(H / r), ceil(W / r)``):

    1. ``q = proj_q(x)``, ``(bs, C, H, W)``.
    2. Offset network per group (weights shared by the groups): depthwise
       ``k x k`` conv with stride ``r`` -> LayerNorm -> GELU -> 1x1 conv to 2 channels
       ``(dy, dx)``: ``(bs * G, 2, Hk, Wk)``. Offsets are bounded by
       ``tanh(.) * offset_range_factor / (Hk, Wk)`` in normalised units (at most
       ``offset_range_factor / 2`` key cells).
    3. Points = reference cell centres + offsets; each group samples its ``C / G``
       channels of ``x`` there (bilinear, zeros outside): ``(bs, C, Hk * Wk)``.
    4. ``k, v = proj_k, proj_v`` of the samples; every query attends to all
       ``Nk = Hk * Wk`` keys with ``M`` heads (``scaled_dot_product_attention``; a
       relative position bias enters as its float ``attn_mask``).
    5. ``proj_out``.

    Args:
        embed_dims: C.
        num_heads: M; ``C % M == 0``.
        groups: G offset groups, ``M % G == 0``; each group has one deformed grid
            shared by its ``M / G`` heads.
        stride: r, the reference grid's stride (key count ``ceil(H/r) * ceil(W/r)``).
        offset_range_factor: s, bound of the offsets (see step 2). ``<= 0``: no tanh
            bound; points are then clamped to the map.
        offset_kernel_size: odd kernel of the offset network's depthwise conv;
            ``None``: ``2 * ceil(log2(r)) + 3`` (3, 5, 7, 9 for r = 1, 2, 4, 8).
        pe_type: relative position bias: ``'none'``; ``'dwc'`` (depthwise 3x3 conv of
            the queries added to the output); ``'fixed'`` (a learned
            ``(M, Hq*Wq, Hk*Wk)`` table for the map size ``pe_size``, resized
            bilinearly for other sizes); ``'table'`` (a learned
            ``(M, 2*ph - 1, 2*pw - 1)`` table read bilinearly at the continuous
            query-to-point displacement); ``'log_cpb'`` (an MLP of the log-spaced
            displacement, as in Swin V2).
        pe_size: (ph, pw): the map size of the ``'fixed'`` table, the resolution of
            the ``'table'`` table.
        log_cpb_hidden: hidden width of the ``'log_cpb'`` MLP.
        no_offset: the baseline without offsets: keys and values are average-pooled
            over the ``r x r`` cells and there is no offset network.
        attn_drop: attention dropout (training only).
        proj_drop: dropout after ``proj_out``.
        init_cfg: mmengine init config.

    Shapes:
        x: (bs, C, H, W), any H, W >= 1.
        output: (bs, C, H, W); with ``return_points=True`` also the sampling points
        ``(bs, G, Hk, Wk, 2)`` and the reference points ``(bs, G, Hk, Wk, 2)``,
        both ``(y, x)`` in ``[-1, 1]``.
    """

    def __init__(self, embed_dims: int, num_heads: int = 8, groups: int = 1,
                 stride: int = 1, offset_range_factor: float = 2.0,
                 offset_kernel_size: Optional[int] = None, pe_type: Optional[str] = 'table',
                 pe_size: Union[int, Sequence[int]] = 16, log_cpb_hidden: int = 32,
                 no_offset: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        pe_type = 'none' if pe_type is None else pe_type
        if embed_dims % num_heads or num_heads % groups:
            raise ValueError(f'need embed_dims % num_heads == 0 and num_heads % groups == 0, '
                             f'got {embed_dims}, {num_heads}, {groups}')
        if pe_type not in PE_TYPES:
            raise ValueError(f'pe_type must be one of {PE_TYPES}, got {pe_type!r}')
        if stride < 1:
            raise ValueError(f'stride must be >= 1, got {stride}')
        if offset_kernel_size is None:
            offset_kernel_size = 2 * math.ceil(math.log2(stride)) + 3
        if offset_kernel_size % 2 == 0:
            raise ValueError(f'offset_kernel_size must be odd, got {offset_kernel_size}')
        self.embed_dims, self.num_heads, self.groups = embed_dims, num_heads, groups
        self.head_dims = embed_dims // num_heads
        self.group_dims = embed_dims // groups
        self.stride = stride
        self.offset_range_factor = offset_range_factor
        self.pe_type, self.pe_size = pe_type, _pair(pe_size)
        self.no_offset = no_offset
        self.attn_drop = attn_drop

        if not no_offset:
            c = self.group_dims
            self.conv_offset = nn.Sequential(
                nn.Conv2d(c, c, offset_kernel_size, stride, offset_kernel_size // 2, groups=c),
                LayerNorm2d(c), nn.GELU(), nn.Conv2d(c, 2, 1, bias=False))
        self.proj_q = nn.Conv2d(embed_dims, embed_dims, 1)
        self.proj_k = nn.Conv2d(embed_dims, embed_dims, 1)
        self.proj_v = nn.Conv2d(embed_dims, embed_dims, 1)
        self.proj_out = nn.Conv2d(embed_dims, embed_dims, 1)
        self.proj_drop = nn.Dropout(proj_drop)

        ph, pw = self.pe_size
        if pe_type == 'dwc':
            self.rpe_table = nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        elif pe_type == 'fixed':
            kh, kw = -(-ph // stride), -(-pw // stride)
            self.rpe_table = nn.Parameter(torch.zeros(num_heads, ph * pw, kh * kw))
            trunc_normal_(self.rpe_table, std=0.01)
        elif pe_type == 'table':
            self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * ph - 1, 2 * pw - 1))
            trunc_normal_(self.rpe_table, std=0.01)
        elif pe_type == 'log_cpb':
            self.rpe_table = nn.Sequential(
                nn.Linear(2, log_cpb_hidden), nn.ReLU(inplace=True),
                nn.Linear(log_cpb_hidden, num_heads // groups, bias=False))

    # ------------------------------------------------------------------ points
    def _reference_points(self, height: int, width: int, dtype, device) -> torch.Tensor:
        """(Hk, Wk, 2) cell centres, (y, x) in [-1, 1]."""
        ys = cell_centers(height, self.stride, dtype, device)
        xs = cell_centers(width, self.stride, dtype, device)
        return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1)

    def _sampling_points(self, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reference points (Hk, Wk, 2) and deformed points (bs * G, Hk, Wk, 2), (y, x)."""
        bs, _, height, width = q.shape
        offset = self.conv_offset(q.reshape(bs * self.groups, self.group_dims, height, width))
        hk, wk = offset.shape[-2:]
        reference = self._reference_points(height, width, q.dtype, q.device)
        if reference.shape[:2] != (hk, wk):  # cannot happen with an odd kernel
            raise RuntimeError(f'offset grid {(hk, wk)} != reference grid '
                               f'{tuple(reference.shape[:2])}')
        offset = offset.permute(0, 2, 3, 1)  # (bs * G, Hk, Wk, 2), (dy, dx)
        if self.offset_range_factor > 0:
            scale = offset.new_tensor([1.0 / hk, 1.0 / wk]) * self.offset_range_factor
            points = reference + offset.tanh() * scale
        else:
            points = (reference + offset).clamp(-1.0, 1.0)
        return reference, points

    # ------------------------------------------------------------- position bias
    def _query_grid(self, height, width, dtype, device) -> torch.Tensor:
        """(H * W, 2) pixel centres, (y, x) in [-1, 1]."""
        ys = cell_centers(height, 1, dtype, device)
        xs = cell_centers(width, 1, dtype, device)
        return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1).reshape(-1, 2)

    def _position_bias(self, bs, height, width, hk, wk, points) -> Optional[torch.Tensor]:
        """Additive attention bias (bs or 1, M, H*W, Hk*Wk), or None.

        ``points``: (bs * G, Nk, 2), (y, x) in [-1, 1].
        """
        heads, groups = self.num_heads, self.groups
        if self.pe_type == 'fixed':
            ph, pw = self.pe_size
            kh, kw = -(-ph // self.stride), -(-pw // self.stride)
            table = self.rpe_table
            if (ph, pw, kh, kw) != (height, width, hk, wk):  # resize keys, then queries
                table = F.interpolate(table.reshape(heads * ph * pw, 1, kh, kw), (hk, wk),
                                      mode='bilinear', align_corners=False)
                table = table.reshape(heads, ph * pw, hk * wk).transpose(1, 2)
                table = F.interpolate(table.reshape(heads * hk * wk, 1, ph, pw),
                                      (height, width), mode='bilinear', align_corners=False)
                table = table.reshape(heads, hk * wk, height * width).transpose(1, 2)
            return table.unsqueeze(0)
        if self.pe_type not in ('table', 'log_cpb'):
            return None
        # Query minus point, in normalised units within [-2, 2]; scaled (and put in
        # grid_sample's (x, y) order for the table) before the broadcast so that the
        # (bs * G, H*W, Nk, 2) tensor is made once.
        q_grid = self._query_grid(height, width, points.dtype, points.device)
        if self.pe_type == 'table':
            q_grid, points, scale = q_grid.flip(-1), points.flip(-1), 0.5
        else:
            scale = 4.0
        displacement = (q_grid * scale)[None, :, None, :] - (points * scale)[:, None, :, :]
        if self.pe_type == 'table':
            # The table spans displacements [-2, 2] (a whole map either way) and is read
            # at half the displacement with align_corners=True, as in the DAT release,
            # so that converted tables keep their meaning.
            ph, pw = self.pe_size
            table = self.rpe_table.reshape(1, groups, heads // groups, 2 * ph - 1, 2 * pw - 1)
            table = table.expand(bs, -1, -1, -1, -1).flatten(0, 1)
            bias = F.grid_sample(table, displacement, mode='bilinear',
                                 align_corners=True)  # (bs * G, M/G, H*W, Nk)
        else:  # log-spaced continuous position bias (Swin V2 / DAT++): 4x displacement
            d = torch.sign(displacement) * torch.log2(displacement.abs() + 1.0) / 3.0
            bias = self.rpe_table(d).permute(0, 3, 1, 2)  # (bs * G, M/G, H*W, Nk)
        return bias.reshape(bs, heads, height * width, hk * wk)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, return_points: bool = False):
        bs, channels, height, width = x.shape
        if channels != self.embed_dims:
            raise ValueError(f'expected {self.embed_dims} channels, got {channels}')
        groups, heads, hd = self.groups, self.num_heads, self.head_dims
        q = self.proj_q(x)

        if self.no_offset:
            kernel = (min(self.stride, height), min(self.stride, width))
            sampled = F.avg_pool2d(x, kernel, self.stride, ceil_mode=True)
            hk, wk = sampled.shape[-2:]
            reference = self._reference_points(height, width, x.dtype, x.device)
            points = reference.expand(bs * groups, -1, -1, -1)
        else:
            reference, points = self._sampling_points(q)
            hk, wk = reference.shape[:2]
            sampled = F.grid_sample(
                x.reshape(bs * groups, self.group_dims, height, width), points.flip(-1),
                mode='bilinear', padding_mode='zeros', align_corners=False)
        num_keys = hk * wk
        sampled = sampled.reshape(bs, channels, hk, wk)
        k = self.proj_k(sampled).reshape(bs, heads, hd, num_keys).transpose(-1, -2)
        v = self.proj_v(sampled).reshape(bs, heads, hd, num_keys).transpose(-1, -2)
        query = q.reshape(bs, heads, hd, height * width).transpose(-1, -2)

        bias = self._position_bias(bs, height, width, hk, wk,
                                   points.reshape(bs * groups, num_keys, 2))
        if bias is not None:
            bias = bias.to(query.dtype)
        out = F.scaled_dot_product_attention(
            query, k, v, attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0)  # (bs, M, H*W, hd)
        out = out.transpose(-1, -2).reshape(bs, channels, height, width)
        if self.pe_type == 'dwc':
            out = out + self.rpe_table(q)
        out = self.proj_drop(self.proj_out(out))
        if return_points:
            return (out, points.reshape(bs, groups, hk, wk, 2),
                    reference.expand(bs, groups, -1, -1, -1))
        return out

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'groups={self.groups}, stride={self.stride}, '
                f'offset_range_factor={self.offset_range_factor}, pe_type={self.pe_type!r}, '
                f'no_offset={self.no_offset}')
