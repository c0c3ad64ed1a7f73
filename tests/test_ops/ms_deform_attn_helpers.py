"""Helpers shared by the ms_deform_attn tests: random inputs, gradients, skip marks."""
import pytest
import torch

from deform_ext.ops import _extension

requires_extension = pytest.mark.skipif(
    not _extension.EXTENSION_AVAILABLE,
    reason='deform_ext.ops._C is not built (pip install --no-build-isolation -e .)')


def random_op_inputs(bs=2, shapes=((6, 5), (3, 3)), num_heads=2, head_dims=8, num_queries=7,
                     num_points=3, dtype=torch.float64, loc_dtype=None, loc_range=(-0.1, 1.1),
                     requires_grad=False, seed=0):
    """Random inputs of ``ms_deform_attn``: (value, spatial_shapes, level_start_index,
    sampling_locations, attention_weights); locations uniform over ``loc_range``."""
    gen = torch.Generator().manual_seed(seed)
    loc_dtype = loc_dtype or dtype
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64).reshape(-1, 2)
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_levels, num_keys = len(shapes), int(sizes.sum())
    value = torch.randn(bs, num_keys, num_heads, head_dims, generator=gen, dtype=torch.float64)
    lo, hi = loc_range
    locations = lo + (hi - lo) * torch.rand(
        bs, num_queries, num_heads, num_levels, num_points, 2, generator=gen, dtype=torch.float64)
    weights = torch.rand(bs, num_queries, num_heads, num_levels, num_points, generator=gen,
                         dtype=torch.float64)
    value, locations, weights = value.to(dtype), locations.to(loc_dtype), weights.to(loc_dtype)
    if requires_grad:
        for t in (value, locations, weights):
            t.requires_grad_()
    return value, spatial_shapes, level_start_index, locations, weights


def outputs_and_grads(fn, inputs, grad_output=None):
    """fn(*inputs) and the gradients of value, sampling_locations, attention_weights
    for ``grad_output`` (random when None); inputs must require grad."""
    out = fn(*inputs)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                                  dtype=torch.float64).to(out.dtype)
    grads = torch.autograd.grad(out, [inputs[0], inputs[3], inputs[4]], grad_output)
    return (out, *grads)
