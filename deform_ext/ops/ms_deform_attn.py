"""Multi-scale deformable attention (Deformable DETR) with mmcv's conventions.

In this file: the registered op ``deform_ext::ms_deform_attn`` (its autograd and
fake kernels; the compiled kernels are in ``csrc/ms_deform_attn``), then the
pure-PyTorch reference, then the functional :func:`ms_deform_attn` that picks one.

Shapes, shared by all three:
    value               (bs, num_keys, num_heads, head_dims)
    spatial_shapes      (num_levels, 2) int64, rows (h, w)
    level_start_index   (num_levels,) int64, exclusive cumsum of h * w
    sampling_locations  (bs, num_queries, num_heads, num_levels, num_points, 2),
                        (x, y) normalised to [0, 1]
    attention_weights   (bs, num_queries, num_heads, num_levels, num_points)
    output              (bs, num_queries, num_heads * head_dims), value's dtype
"""
import torch
import torch.nn.functional as F

from . import _extension
from .ms_deform_attn_checks import check_ms_deform_attn_data, check_ms_deform_attn_metadata

__all__ = ['ms_deform_attn', 'ms_deform_attn_reference']

_OP_NAME = 'ms_deform_attn'

if _extension.EXTENSION_AVAILABLE:

    @torch.library.register_fake('deform_ext::ms_deform_attn')
    def _ms_deform_attn_fake(value, spatial_shapes, level_start_index, sampling_locations,
                             attention_weights):
        """Output metadata: (bs, num_queries, num_heads * head_dims) in value's dtype."""
        bs, _, num_heads, head_dims = value.shape
        return value.new_empty((bs, sampling_locations.shape[1], num_heads * head_dims))

    @torch.library.register_fake('deform_ext::ms_deform_attn_backward')
    def _ms_deform_attn_backward_fake(grad_output, value, spatial_shapes, level_start_index,
                                      sampling_locations, attention_weights):
        """Gradient metadata: contiguous, with the shapes and dtypes of value,
        sampling_locations and attention_weights."""
        return tuple(t.new_empty(t.shape) for t in (value, sampling_locations, attention_weights))

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _ms_deform_attn_backward(ctx, grad_output):
        """grad_output (bs, num_queries, num_heads * head_dims) -> gradients of value,
        sampling_locations and attention_weights (None for the index tensors)."""
        value, spatial_shapes, level_start_index, locations, weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = torch.ops.deform_ext.ms_deform_attn_backward(
            grad_output, value, spatial_shapes, level_start_index, locations, weights)
        return grad_value, None, None, grad_locations, grad_weights

    torch.library.register_autograd('deform_ext::ms_deform_attn', _ms_deform_attn_backward,
                                    setup_context=_setup_context)
    # Device types with a compiled kernel, looked up once so tracing sees a constant.
    _COMPILED_DEVICE_TYPES = frozenset(
        d for d in ('cpu', 'cuda') if _extension.has_kernel(_OP_NAME, d))
else:
    _COMPILED_DEVICE_TYPES = frozenset()


def ms_deform_attn_reference(value: torch.Tensor, spatial_shapes: torch.Tensor,
                             level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                             attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention in pure PyTorch (bilinear ``grid_sample``).

    The same numbers as mmcv's ``multi_scale_deformable_attn_pytorch``, except that a
    NaN or infinite location contributes zero (with zero gradient), like the
    compiled kernels. Computes in float32 (float64 for float64 values). Reads
    ``spatial_shapes`` back to the host.

    Args:
        value: (bs, num_keys, num_heads, head_dims), the flattened maps of all levels.
        spatial_shapes: (num_levels, 2) int64, (h, w) of each level.
        level_start_index: (num_levels,) int64, the first key of each level.
        sampling_locations: (bs, num_queries, num_heads, num_levels, num_points, 2),
            (x, y) normalised to [0, 1]; outside the map reads zeros.
        attention_weights: (bs, num_queries, num_heads, num_levels, num_points).

    Returns:
        (bs, num_queries, num_heads * head_dims) in value's dtype.
    """
    bs, _, num_heads, head_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
    # Send NaN and far-away locations to -1 / 2, outside every map: no corner is in
    # range, so they read zero and get zero gradient, as in the kernels.
    locations = sampling_locations.to(dtype)
    locations = torch.where(torch.isnan(locations), -1.0, locations).clamp(-1.0, 2.0)
    grids = 2 * locations - 1  # grid_sample's [-1, 1] convention
    sampled = []
    levels = zip(spatial_shapes.tolist(), level_start_index.tolist())
    for level, ((h, w), start) in enumerate(levels):
        # (bs, h * w, num_heads, head_dims) -> (bs * num_heads, head_dims, h, w)
        level_value = value[:, start:start + h * w].to(dtype).permute(0, 2, 3, 1)
        level_value = level_value.reshape(bs * num_heads, head_dims, h, w)
        # (bs, num_queries, num_heads, num_points, 2) -> (bs * num_heads, num_queries, ...)
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(level_value, level_grid, mode='bilinear',
                                     padding_mode='zeros', align_corners=False))
    # (bs * num_heads, head_dims, num_queries, num_levels * num_points)
    sampled = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.to(dtype).transpose(1, 2).reshape(
        bs * num_heads, 1, num_queries, num_levels * num_points)
    output = (sampled * weights).sum(-1).view(bs, num_heads * head_dims, num_queries)
    return output.transpose(1, 2).contiguous().to(value.dtype)


def ms_deform_attn(value: torch.Tensor, spatial_shapes: torch.Tensor,
                   level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                   attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention: the entry point for all callers.

    Runs the compiled kernel for value's device when there is one, else the
    reference (warning once how to build the extension). Differentiable in value,
    sampling_locations and attention_weights; traceable by ``torch.compile``
    (fullgraph, dynamic shapes) and ``torch.export``.

    Args:
        value: (bs, num_keys, num_heads, head_dims); float32, float64 or bfloat16
            (float16 on CUDA only). Any strides.
        spatial_shapes: (num_levels, 2) int64, (h, w) of each level; the h * w add up
            to num_keys.
        level_start_index: (num_levels,) int64, exclusive cumsum of h * w.
        sampling_locations: (bs, num_queries, num_heads, num_levels, num_points, 2),
            (x, y) normalised to [0, 1] (pixel = x * w - 0.5, as grid_sample with
            align_corners=False). Outside the map, NaN or inf: contributes zero.
            value's dtype, or float32 for a bfloat16/float16 value.
        attention_weights: (bs, num_queries, num_heads, num_levels, num_points), same
            dtype rule as sampling_locations.

    Returns:
        (bs, num_queries, num_heads * head_dims) in value's dtype.

    Raises:
        ValueError: wrong ranks, sizes, devices or dtypes; on CPU (and on CUDA in
            debug mode, see :func:`deform_ext.ops.set_debug`) also spatial_shapes or
            level_start_index that disagree with num_keys.
    """
    check_ms_deform_attn_metadata(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights)
    device_type = value.device.type
    if not torch.compiler.is_compiling() and (device_type == 'cpu' or _extension.debug_enabled()):
        check_ms_deform_attn_data(value, spatial_shapes, level_start_index)
    if _extension.EXTENSION_AVAILABLE and device_type in _COMPILED_DEVICE_TYPES:
        return torch.ops.deform_ext.ms_deform_attn(value, spatial_shapes, level_start_index,
                                                   sampling_locations, attention_weights)
    _extension.warn_fallback_once(_OP_NAME, device_type)
    return ms_deform_attn_reference(value, spatial_shapes, level_start_index,
                                    sampling_locations, attention_weights)
