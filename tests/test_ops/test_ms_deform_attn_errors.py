"""Bad inputs of ms_deform_attn give errors that name the tensor and its shape."""
import pytest
import torch

from deform_ext.ops import ms_deform_attn
from ms_deform_attn_helpers import random_op_inputs, requires_extension

NAMES = ('value', 'spatial_shapes', 'level_start_index', 'sampling_locations',
         'attention_weights')


def replaced(**changes):
    """Valid float32 inputs (bs 2, levels (6, 5) and (3, 3), 2 heads, 8 dims, 7 queries,
    3 points) with some replaced; a callable change receives the original tensor."""
    inputs = dict(zip(NAMES, random_op_inputs(dtype=torch.float32)))
    for name, change in changes.items():
        inputs[name] = change(inputs[name]) if callable(change) else change
    return [inputs[n] for n in NAMES]


CASES = {
    'value rank': (dict(value=lambda v: v[0]),
                   r'value must have shape \(bs, num_keys, num_heads, head_dims\), '
                   r'got \(39, 2, 8\)'),
    'value not a tensor': (dict(value=[1.0]), r'value must be a tensor .* got list'),
    'spatial_shapes columns': (dict(spatial_shapes=lambda s: torch.ones(2, 3, dtype=torch.int64)),
                               r'spatial_shapes has shape \(2, 3\), but its dim 1 must equal 2'),
    'level_start_index length': (dict(level_start_index=lambda s: s[:1]),
                                 r'level_start_index has shape \(1,\), but its dim 0 must equal '
                                 r'num_levels'),
    'locations batch': (dict(sampling_locations=lambda t: t[:1]),
                        r'sampling_locations has shape \(1, 7, 2, 2, 3, 2\), but its dim 0 '
                        r'must equal bs'),
    'locations heads': (dict(sampling_locations=lambda t: t[:, :, :1]),
                        r'sampling_locations has shape .* dim 2 must equal num_heads'),
    'locations levels': (dict(sampling_locations=lambda t: t[:, :, :, :1]),
                         r'sampling_locations has shape .* dim 3 must equal num_levels'),
    'locations last dim': (dict(sampling_locations=lambda t: torch.cat([t, t[..., :1]], -1)),
                           r'sampling_locations has shape \(2, 7, 2, 2, 3, 3\), but its dim 5'),
    'locations rank': (dict(sampling_locations=lambda t: t[..., 0]),
                       r'sampling_locations must have shape \(bs, num_queries, num_heads, '
                       r'num_levels, num_points, 2\), got \(2, 7, 2, 2, 3\)'),
    'weights points': (dict(attention_weights=lambda t: t[..., :2]),
                       r'attention_weights has shape \(2, 7, 2, 2, 2\), but its dim 4 must '
                       r'equal sampling_locations.shape\[4\] = 3'),
    'keys do not add up': (dict(value=lambda v: v[:, :-1]),
                           r'spatial_shapes \[\[6, 5\], \[3, 3\]\] add up to 39 keys, but '
                           r'value has shape \(2, 38, 2, 8\)'),
    'level_start_index values': (dict(level_start_index=torch.tensor([0, 29])),
                                 r'level_start_index \[0, 29\] of shape \(2,\) must be the '
                                 r'exclusive cumsum .* \[0, 30\]'),
    'non-positive level': (dict(spatial_shapes=torch.tensor([[0, 5], [39, 1]])),
                           r'spatial_shapes must hold positive \(h, w\) rows'),
    'int32 spatial_shapes': (dict(spatial_shapes=lambda s: s.int()),
                             r'spatial_shapes of shape \(2, 2\) must be int64, got torch.int32'),
    'float16 value on CPU': (dict(value=lambda v: v.half()),
                             r'value of shape \(2, 39, 2, 8\) must be float32, float64 or '
                             r'bfloat16 \(float16 on CUDA only\), got torch.float16'),
    'integer value': (dict(value=lambda v: v.long()), r'value .* got torch.int64'),
    'float64 locations, float32 value': (
        dict(sampling_locations=lambda t: t.double()),
        r'sampling_locations of shape \(2, 7, 2, 2, 3, 2\) must be torch.float32 to go with '
        r'a torch.float32 value, got torch.float64'),
    'float32 weights, float64 value': (
        dict(value=lambda v: v.double(), sampling_locations=lambda t: t.double()),
        r'attention_weights of shape \(2, 7, 2, 2, 3\) must be torch.float64 to go with a '
        r'torch.float64 value, got torch.float32'),
    'float16 weights, bfloat16 value': (
        dict(value=lambda v: v.bfloat16(), attention_weights=lambda t: t.half()),
        r'attention_weights .* must be torch.bfloat16 or torch.float32 .* got torch.float16'),
    'device mismatch': (dict(attention_weights=lambda t: t.to('meta')),
                        r'attention_weights of shape \(2, 7, 2, 2, 3\) is on meta, but value '
                        r'is on cpu'),
}


@pytest.mark.parametrize('changes,message', CASES.values(), ids=CASES.keys())
def test_bad_input_raises(changes, message):
    with pytest.raises(ValueError, match=message):
        ms_deform_attn(*replaced(**changes))


@requires_extension
def test_compiled_op_refuses_levels_outside_value():
    # Called directly, the op skips the Python checks; its own checks keep every
    # read inside value.
    inputs = replaced(spatial_shapes=torch.tensor([[6, 5], [4, 3]]))
    with pytest.raises(RuntimeError, match=r'level 1 .* \(h=4, w=3\) starting at key 30, '
                                           r'which does not fit in value\'s 39 keys'):
        torch.ops.deform_ext.ms_deform_attn(*inputs)


@requires_extension
def test_compiled_op_checks_shapes_and_grad_output():
    with pytest.raises(RuntimeError, match=r'sampling_locations has shape \[1, 7, 2, 2, 3, 2\]'):
        torch.ops.deform_ext.ms_deform_attn(*replaced(sampling_locations=lambda t: t[:1]))
    inputs = replaced()
    with pytest.raises(RuntimeError, match=r'grad_output must have shape .* = \(2, 7, 16\), '
                                           r'got \[2, 7, 15\]'):
        torch.ops.deform_ext.ms_deform_attn_backward(torch.zeros(2, 7, 15), *inputs)


def test_set_debug_toggles_the_host_sync_checks(monkeypatch):
    from deform_ext.ops import _extension, set_debug
    monkeypatch.setattr(_extension, '_debug', False)
    set_debug(True)
    assert _extension.debug_enabled()
    set_debug(False)
    assert not _extension.debug_enabled()
