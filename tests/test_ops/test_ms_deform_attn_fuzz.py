"""Hypothesis fuzzing of ms_deform_attn shapes and values against the reference (float64)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deform_ext.ops import ms_deform_attn, ms_deform_attn_reference
from ms_deform_attn_helpers import random_op_inputs, outputs_and_grads, requires_extension

pytestmark = requires_extension

level = st.tuples(st.integers(1, 7), st.integers(1, 7))


@settings(max_examples=40, deadline=None)
@given(bs=st.integers(1, 3), shapes=st.lists(level, min_size=1, max_size=3),
       num_heads=st.integers(1, 3), head_dims=st.integers(1, 40),
       num_queries=st.integers(0, 6), num_points=st.integers(1, 4),
       spread=st.sampled_from([0.0, 0.3, 2.0]), seed=st.integers(0, 2**16))
def test_fuzz_matches_reference(bs, shapes, num_heads, head_dims, num_queries, num_points,
                                spread, seed):
    inputs = random_op_inputs(bs=bs, shapes=shapes, num_heads=num_heads, head_dims=head_dims,
                              num_queries=num_queries, num_points=num_points,
                              loc_range=(-spread, 1 + spread), requires_grad=True, seed=seed)
    for a, b in zip(outputs_and_grads(ms_deform_attn, inputs),
                    outputs_and_grads(ms_deform_attn_reference, inputs)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
