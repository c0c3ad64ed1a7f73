"""``MSDeformAttn``: mmcv's ``MultiScaleDeformableAttention`` on deform_ext's op.

Same constructor arguments, parameter names and shapes (``sampling_offsets``,
``attention_weights``, ``value_proj``, ``output_proj``) and forward signature as
mmcv's module, so checkpoints load either way and mmdet's layers call it
unchanged. It subclasses mmcv's class on purpose: mmdet initialises attention
modules with ``isinstance(m, MultiScaleDeformableAttention)`` checks (Deformable
DETR, DINO, Mask2Former's pixel decoder), which must keep matching ours.

Additions, all off by default (then the numbers are mmcv's):

- ``offset_range``: sampling offsets bounded as ``r * tanh(raw / r)`` (identity for
  small offsets, never beyond ``r`` in the units of the offsets);
- offset recording for an offset regularisation loss (see
  :class:`deform_ext.models.losses.OffsetL1Loss`), switched on by the detector;
- sampling recording for pictures (``record_sampling``; see
  :mod:`deform_ext.visualization.sampling`): each forward appends the detached
  reference points, sampling locations and attention weights that went into the op
  to ``recorded_sampling``; nothing is computed differently;
- :meth:`grow_points`: more sampling points with an unchanged output, used by
  :class:`deform_ext.engine.hooks.ProgressiveSamplingPointsHook`; a checkpoint with
  more points grows the module when it is loaded.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from mmcv.ops import MultiScaleDeformableAttention
from torch import Tensor, nn

from deform_ext.ops import ms_deform_attn
from deform_ext.registry import MODELS


@MODELS.register_module()
class MSDeformAttn(MultiScaleDeformableAttention):
    """Multi-scale deformable attention (Deformable DETR) on ``deform_ext.ops``.

    Args:
        embed_dims (int): channels of query and value. Defaults to 256.
        num_heads (int): attention heads. Defaults to 8.
        num_levels (int): feature levels. Defaults to 4.
        num_points (int): sampling points per head and level. Defaults to 4.
        im2col_step (int): kept for compatibility with mmcv; unused.
        dropout (float): dropout on the output before the residual. Defaults to 0.1.
        batch_first (bool): (bs, n, dim) tensors when True, else (n, bs, dim).
        norm_cfg (dict, optional): kept for compatibility with mmcv; unused.
        init_cfg (dict, optional): mmengine init config.
        value_proj_ratio (float): value_proj expansion. Defaults to 1.0.
        offset_range (float, optional): bound of the sampling offsets
            (``r * tanh(raw / r)``); in feature-map pixels for 2-d reference points,
            in units of ``box / (2 * box_offset_points)`` for 4-d reference boxes.
            None (default): unbounded, as mmcv.
        box_offset_points (int, optional): the divisor of offsets around 4-d
            reference boxes; mmcv uses ``num_points``. Stays at the number the
            module was built with when :meth:`grow_points` adds points, so the
            output does not change. Defaults to ``num_points``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: int = 4,
                 im2col_step: int = 64,
                 dropout: float = 0.1,
                 batch_first: bool = False,
                 norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 value_proj_ratio: float = 1.0,
                 offset_range: Optional[float] = None,
                 box_offset_points: Optional[int] = None) -> None:
        super().__init__(embed_dims=embed_dims, num_heads=num_heads, num_levels=num_levels,
                         num_points=num_points, im2col_step=im2col_step, dropout=dropout,
                         batch_first=batch_first, norm_cfg=norm_cfg, init_cfg=init_cfg,
                         value_proj_ratio=value_proj_ratio)
        if offset_range is not None and offset_range <= 0:
            raise ValueError(f'offset_range must be positive, got {offset_range}')
        self.offset_range = offset_range
        self.box_offset_points = box_offset_points or num_points
        self.record_offsets = False
        self.recorded_offsets: List[Tensor] = []
        self.record_sampling = False
        self.recorded_sampling: List[Dict[str, Tensor]] = []

    # ------------------------------------------------------------------ forward
    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Attend from each query to a few sampled points of every level.

        Args:
            query: (bs, num_queries, dim), or (num_queries, bs, dim) when not
                batch_first.
            key: unused (mmcv signature).
            value: (bs, num_keys, dim) (or (num_keys, bs, dim)); query when None.
            identity: residual, query's shape; query when None.
            query_pos: positional encoding added to query, query's shape.
            key_padding_mask: (bs, num_keys) bool, True where value is padding.
            reference_points: (bs, num_queries, num_levels, 2) points (x, y) or
                (bs, num_queries, num_levels, 4) boxes (cx, cy, w, h), in [0, 1].
            spatial_shapes: (num_levels, 2) int64, (h, w) of each level.
            level_start_index: (num_levels,) int64, first key of each level.

        Returns:
            Tensor: query's shape, ``identity + dropout(output_proj(attention))``.
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        bs, num_queries, _ = query.shape
        num_keys = value.shape[1]
        heads, levels, points = self.num_heads, self.num_levels, self.num_points

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_keys, heads, -1)
        offsets = self.sampling_offsets(query).view(bs, num_queries, heads, levels, points, 2)
        if self.offset_range is not None:
            offsets = self.offset_range * torch.tanh(offsets / self.offset_range)
        if self.record_offsets and self.training:
            self.recorded_offsets.append(offsets)
        weights = self.attention_weights(query).view(bs, num_queries, heads, levels * points)
        weights = weights.softmax(-1).view(bs, num_queries, heads, levels, points)

        if reference_points.shape[-1] == 2:
            # (w, h) per level, spelt out as a contiguous (levels, points, 2) block in
            # offsets' dtype: an int64 divisor or one broadcast inside that block takes
            # a scalar loop several times slower on CPUs; the quotients are the same
            normalizer = spatial_shapes.flip(-1).to(offsets.dtype)[:, None, :] \
                .expand(levels, points, 2).contiguous()
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer
        elif reference_points.shape[-1] == 4:
            locations = reference_points[:, :, None, :, None, :2] \
                + offsets / self.box_offset_points \
                * reference_points[:, :, None, :, None, 2:] * 0.5
        else:
            raise ValueError('the last dim of reference_points must be 2 or 4, got '
                             f'{reference_points.shape[-1]}')
        if self.record_sampling:  # (bs, nq, levels, 2|4), (bs, nq, heads, levels, points[, 2])
            self.recorded_sampling.append(dict(
                reference_points=reference_points.detach(), spatial_shapes=spatial_shapes,
                sampling_locations=locations.detach(), attention_weights=weights.detach()))
        output = self._attend(value, spatial_shapes, level_start_index, locations, weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity

    @staticmethod
    def _attend(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                locations: Tensor, weights: Tensor) -> Tensor:
        """deform_ext's functional with the dtypes it takes: locations and weights
        in value's dtype, float32 for a half value (float16 values run in float32
        on CPU, where the kernel has no float16)."""
        if value.dtype == torch.float16 and value.device.type == 'cpu':
            out = MSDeformAttn._attend(value.float(), spatial_shapes, level_start_index,
                                       locations, weights)
            return out.to(torch.float16)
        coord_dtype = torch.float32 if value.dtype in (torch.float16, torch.bfloat16) \
            else value.dtype
        return ms_deform_attn(value, spatial_shapes, level_start_index,
                              locations.to(coord_dtype), weights.to(coord_dtype))

    # ---------------------------------------------------------- more points
    def grow_points(self, num_points: int) -> Dict[torch.nn.Parameter, Tuple[Tensor, Tensor]]:
        """Grow to ``num_points`` (a multiple of the current number) in place.

        Every old point gets ``k - 1`` copies (``k = num_points / old``) at the same
        offsets; the point's attention weight is split among the copies unequally
        (shares proportional to 1, 1/2, 1/4, ...) by adding ``log(share)`` to the
        logits, so the output is unchanged up to rounding, and the copies, having
        different weights, get different gradients and drift apart. Parameters stay
        the same objects (their ``.data`` is replaced), so optimizers keep them.

        Returns:
            dict: for each grown parameter, ``(rows, is_copy)``: the old row each new
            row was taken from, and whether it is a new copy; optimizer state rows can
            be grown the same way.
        """
        old = self.num_points
        if num_points == old:
            return {}
        if num_points < old or num_points % old:
            raise ValueError(f'can grow {old} points only to a multiple of {old}, '
                             f'got {num_points}')
        k = num_points // old
        heads, levels = self.num_heads, self.num_levels
        device = self.sampling_offsets.weight.device
        copy_index = torch.arange(num_points, device=device) // old  # 0: the original
        point_rows = torch.arange(num_points, device=device) % old
        shares = 0.5 ** torch.arange(k, dtype=torch.float64)
        log_share = (shares / shares.sum()).log().to(device)[copy_index]

        def rows_for(width: int) -> Tuple[Tensor, Tensor]:
            """Old row of each new row for a (heads, levels, points, width) layout."""
            base = torch.arange(heads * levels, device=device)[:, None] * old
            rows = (base + point_rows[None]).reshape(-1, 1) * width \
                + torch.arange(width, device=device)
            is_copy = (copy_index > 0)[None, :, None].expand(heads * levels, -1, width)
            return rows.reshape(-1), is_copy.reshape(-1)

        grown = {}
        offset_rows, offset_copy = rows_for(2)
        weight_rows, weight_copy = rows_for(1)
        for param, rows, is_copy in (
                (self.sampling_offsets.weight, offset_rows, offset_copy),
                (self.sampling_offsets.bias, offset_rows, offset_copy),
                (self.attention_weights.weight, weight_rows, weight_copy),
                (self.attention_weights.bias, weight_rows, weight_copy)):
            param.data = param.data[rows].clone()
            param.grad = None
            grown[param] = (rows, is_copy)
        with torch.no_grad():
            bias = self.attention_weights.bias.view(heads * levels, num_points)
            bias += log_share.to(bias.dtype)
        self._set_num_points(num_points)
        return grown

    def _set_num_points(self, num_points: int) -> None:
        self.num_points = num_points
        self.sampling_offsets.out_features = self.num_heads * self.num_levels * num_points * 2
        self.attention_weights.out_features = self.num_heads * self.num_levels * num_points

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """A checkpoint saved after :meth:`grow_points` grows this module first."""
        key = prefix + 'attention_weights.bias'
        if key in state_dict:
            per_level = self.num_heads * self.num_levels
            saved = state_dict[key].shape[0]
            if saved != per_level * self.num_points and saved % per_level == 0:
                target = saved // per_level
                if target > self.num_points and target % self.num_points == 0:
                    self.grow_points(target)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'num_levels={self.num_levels}, num_points={self.num_points}, '
                f'offset_range={self.offset_range}')


@contextmanager
def offsets_unrecorded(model: nn.Module) -> Iterator[None]:
    """Within it, ``model``'s :class:`MSDeformAttn` modules that record their sampling
    offsets (for an offset loss) pause: for a training-only extra pass (as positive
    queries) whose offsets the detector's loss should not count."""
    recording = [m for m in model.modules()
                 if isinstance(m, MSDeformAttn) and m.record_offsets]
    for module in recording:
        module.record_offsets = False
    try:
        yield
    finally:
        for module in recording:
            module.record_offsets = True
