"""Numerics of the compiled ms_deform_attn against the pure-PyTorch reference.

Tolerances: float64 1e-10 (same algorithm, different summation order); float32
against the float64 reference atol/rtol 1e-5 for outputs and 1e-4 for gradients;
bfloat16 values (float32 locations and weights) 2e-2 against the float64
reference on the same bf16-rounded values (bf16 has 8 significant bits).
"""
import pytest
import torch

from deform_ext.ops import ms_deform_attn, ms_deform_attn_reference
from ms_deform_attn_helpers import random_op_inputs, outputs_and_grads, requires_extension

pytestmark = requires_extension


def as_double_leaves(inputs):
    """The inputs in float64 as fresh leaves that require grad."""
    value, shapes, starts, loc, attn = inputs
    return (value.detach().double().requires_grad_(), shapes, starts,
            loc.detach().double().requires_grad_(), attn.detach().double().requires_grad_())


def assert_matches_reference(inputs, atol, rtol, grad_atol=None, grad_rtol=None):
    """Output and gradients of ms_deform_attn on ``inputs`` against the float64 reference,
    for the same (rounded to value's dtype) grad_output."""
    value, _, _, loc, _ = inputs
    grad_output = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3],
                              generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_output = grad_output.to(value.dtype)
    ours = outputs_and_grads(ms_deform_attn, inputs, grad_output)
    ref = outputs_and_grads(ms_deform_attn_reference, as_double_leaves(inputs),
                            grad_output.double())
    assert ours[0].dtype == ours[1].dtype == value.dtype
    names = ('output', 'grad_value', 'grad_sampling_locations', 'grad_attention_weights')
    tolerances = [(atol, rtol)] + 3 * [(grad_atol or atol, grad_rtol or rtol)]
    for name, a, b, (at, rt) in zip(names, ours, ref, tolerances):
        torch.testing.assert_close(a.double(), b, atol=at, rtol=rt, msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('bs', [1, 3])
def test_double_matches_reference(bs):
    inputs = random_op_inputs(bs=bs, shapes=((7, 5), (4, 3), (2, 2)), requires_grad=True)
    assert_matches_reference(inputs, atol=1e-10, rtol=1e-10)


def test_float32_matches_double_reference():
    inputs = random_op_inputs(dtype=torch.float32, head_dims=32, requires_grad=True)
    assert_matches_reference(inputs, atol=1e-5, rtol=1e-5, grad_atol=1e-4, grad_rtol=1e-4)


@pytest.mark.parametrize('loc_dtype', [torch.float32, torch.bfloat16])
def test_bfloat16_matches_double_reference(loc_dtype):
    inputs = random_op_inputs(dtype=torch.bfloat16, loc_dtype=loc_dtype, head_dims=16,
                              requires_grad=True)
    out = ms_deform_attn(*inputs)
    assert out.dtype == torch.bfloat16
    assert_matches_reference(inputs, atol=2e-2, rtol=2e-2)
    grads = torch.autograd.grad(ms_deform_attn(*inputs).float().sum(), [inputs[3], inputs[4]])
    assert [g.dtype for g in grads] == [loc_dtype, loc_dtype]


def test_autocast_bfloat16_value_with_float32_locations():
    value, shapes, starts, loc, attn = random_op_inputs(dtype=torch.float32, head_dims=16)
    proj = torch.nn.Linear(16, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value_bf16 = proj(value)  # bf16 under autocast; locations and weights stay float32
        out = ms_deform_attn(value_bf16, shapes, starts, loc, attn)
    assert value_bf16.dtype == out.dtype == torch.bfloat16
    expected = ms_deform_attn_reference(value_bf16.double(), shapes, starts, loc.double(),
                                        attn.double())
    torch.testing.assert_close(out.double(), expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize('head_dims', [30, 32, 64, 71, 1025])
def test_head_dims(head_dims):
    small = head_dims > 100
    inputs = random_op_inputs(bs=1 if small else 2, head_dims=head_dims, num_heads=1 if small
                              else 2, num_queries=3 if small else 7, requires_grad=True)
    assert_matches_reference(inputs, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize('shapes,num_points', [(((5, 4),), 3), (((5, 4), (2, 3)), 1),
                                               (((1, 1),), 1), (((1, 6), (6, 1)), 2)])
def test_levels_and_points(shapes, num_points):
    inputs = random_op_inputs(shapes=shapes, num_points=num_points, requires_grad=True)
    assert_matches_reference(inputs, atol=1e-10, rtol=1e-10)


def test_zero_queries():
    inputs = random_op_inputs(num_queries=0, requires_grad=True)
    out, grad_value, grad_loc, grad_attn = outputs_and_grads(ms_deform_attn, inputs)
    assert out.shape == (2, 0, 16)
    assert grad_value.shape == inputs[0].shape and not grad_value.any()
    assert grad_loc.shape == inputs[3].shape and grad_attn.shape == inputs[4].shape


def test_locations_outside_the_maps():
    inputs = random_op_inputs(loc_range=(-0.6, 1.6), num_queries=20, requires_grad=True)
    assert_matches_reference(inputs, atol=1e-10, rtol=1e-10)


def test_nan_and_inf_locations_contribute_zero():
    value, shapes, starts, loc, attn = random_op_inputs(num_queries=4)
    bad = [float('nan'), float('inf'), -float('inf'), 1e30, -1e30]
    for i, x in enumerate(bad):
        loc[0, i % 4, 0, 0, 0, i % 2] = x
    loc[1, 3] = float('nan')  # every sample of one query
    inputs = [t.requires_grad_() if t.is_floating_point() else t
              for t in (value, shapes, starts, loc, attn)]
    out, grad_value, grad_loc, grad_attn = outputs_and_grads(ms_deform_attn, inputs)
    assert all(t.isfinite().all() for t in (out, grad_value, grad_loc, grad_attn))
    assert not out[1, 3].any()
    assert not grad_loc[1, 3].any() and not grad_attn[1, 3].any()
    assert grad_loc[0, 0, 0, 0, 0, 0] == 0 and grad_attn[0, 0, 0, 0, 0] == 0
    assert_matches_reference(inputs, atol=1e-10, rtol=1e-10)


def test_non_contiguous_inputs():
    value, shapes, starts, loc, attn = random_op_inputs(bs=3, head_dims=6)
    value_nc = value.transpose(0, 1).contiguous().transpose(0, 1)
    loc_nc = torch.stack([loc, loc], dim=-1)[..., 0]  # every dim strided, same values
    attn_nc = attn.transpose(1, 3).contiguous().transpose(1, 3)
    shapes_nc = torch.stack([shapes, shapes], dim=-1)[..., 0]
    starts_nc = torch.stack([starts, starts], dim=-1)[..., 0]
    assert not any(t.is_contiguous() for t in (value_nc, loc_nc, attn_nc, shapes_nc, starts_nc))
    dense = [t.requires_grad_() if t.is_floating_point() else t
             for t in (value, shapes, starts, loc.contiguous(), attn)]
    strided = [t.requires_grad_() if t.is_floating_point() else t
               for t in (value_nc, shapes_nc, starts_nc, loc_nc.detach(), attn_nc)]
    for a, b in zip(outputs_and_grads(ms_deform_attn, dense),
                    outputs_and_grads(ms_deform_attn, strided)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_gradcheck_double():
    inputs = random_op_inputs(bs=2, shapes=((3, 4), (2, 2)), num_heads=2, head_dims=3,
                              num_queries=3, num_points=2, requires_grad=True)
    assert torch.autograd.gradcheck(ms_deform_attn, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('num_heads,head_dims', [(2, 64), (8, 32)])
def test_backward_is_deterministic(two_threads, num_heads, head_dims):
    # Tiny maps and many queries: every value element receives many contributions.
    inputs = random_op_inputs(bs=1, shapes=((4, 4), (2, 2)), num_heads=num_heads,
                              head_dims=head_dims, num_queries=300, num_points=4,
                              dtype=torch.float32, requires_grad=True)
    runs = [outputs_and_grads(ms_deform_attn, inputs) for _ in range(3)]
    torch.set_num_threads(1)
    runs.append(outputs_and_grads(ms_deform_attn, inputs))
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
