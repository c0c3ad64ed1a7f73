"""MSDeformAttn: mmcv's MultiScaleDeformableAttention on deform_ext's op, plus the
offset range limit, point growth and checkpoint compatibility."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention

from deform_ext.models.layers import MSDeformAttn

SHAPES = [(12, 10), (6, 5), (3, 3)]


def inputs(bs=2, dim=32, num_queries=7, ref_dims=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(SHAPES)
    start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    num_keys = int(shapes.prod(1).sum())
    refs = torch.rand(bs, num_queries, len(SHAPES), ref_dims, generator=g, dtype=dtype)
    if ref_dims == 4:
        refs[..., 2:] = refs[..., 2:] * 0.5 + 0.05
    mask = torch.zeros(bs, num_keys, dtype=torch.bool)
    mask[1, -5:] = True
    return dict(query=torch.randn(bs, num_queries, dim, generator=g, dtype=dtype),
                value=torch.randn(bs, num_keys, dim, generator=g, dtype=dtype),
                query_pos=torch.randn(bs, num_queries, dim, generator=g, dtype=dtype),
                key_padding_mask=mask, reference_points=refs, spatial_shapes=shapes,
                level_start_index=start)


def pair(dtype=torch.float64, **kwargs):
    cfg = dict(embed_dims=32, num_heads=4, num_levels=len(SHAPES), num_points=3,
               batch_first=True, dropout=0.0)
    cfg.update(kwargs)
    torch.manual_seed(0)
    ours = MSDeformAttn(**cfg).to(dtype)
    with torch.no_grad():  # non-trivial offsets and weights
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    for key in ('offset_range', 'box_offset_points'):
        cfg.pop(key, None)
    ref = MultiScaleDeformableAttention(**cfg).to(dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def test_same_parameters_as_mmcv():
    ours, ref = pair()
    assert isinstance(ours, MultiScaleDeformableAttention)  # mmdet's init checks apply
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict(), strict=True)  # and back


@pytest.mark.parametrize('ref_dims', [2, 4])
@pytest.mark.parametrize('batch_first', [True, False])
def test_matches_mmcv_forward_and_backward_float64(ref_dims, batch_first):
    ours, ref = pair(batch_first=batch_first)
    outputs, grads = [], []
    for module in (ours, ref):
        args = inputs(ref_dims=ref_dims)
        if not batch_first:
            for key in ('query', 'value', 'query_pos'):
                args[key] = args[key].transpose(0, 1)
        args['query'].requires_grad_(True)
        args['value'].requires_grad_(True)
        out = module(**args)
        out.pow(2).sum().backward()
        outputs.append(out)
        grads.append([args['query'].grad, args['value'].grad,
                      *[p.grad for p in module.parameters()]])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_calls_the_deform_ext_functional(op_calls):
    ours, _ = pair()
    ours(**inputs())
    assert len(op_calls) == 1


def test_float32_matches_mmcv():
    ours, ref = pair(dtype=torch.float32)
    args = inputs(dtype=torch.float32)
    torch.testing.assert_close(ours(**args), ref(**args), rtol=1e-5, atol=1e-5)


def test_bfloat16_and_float16_values_run_on_cpu():
    ours, _ = pair(dtype=torch.float32)
    expected = ours(**inputs(dtype=torch.float32))
    for dtype, tol in ((torch.bfloat16, 0.1), (torch.float16, 0.02)):
        out = ours.to(dtype)(**inputs(dtype=dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
        ours.float()


def test_offset_range_bounds_the_offsets():
    ours, ref = pair(offset_range=1.5)
    with torch.no_grad():  # huge raw offsets
        ours.sampling_offsets.bias.mul_(100.0)
        ours.sampling_offsets.weight.mul_(100.0)
    ours.record_offsets = True
    ours.train()
    ours(**inputs())
    (offsets, ) = ours.recorded_offsets
    assert offsets.abs().max() <= 1.5
    assert offsets.abs().max() > 1.4  # the bound is reached, not a clamp far inside
    # Small offsets are nearly unchanged: r * tanh(x / r) ~ x.
    small, ref = pair(offset_range=1000.0)
    args = inputs()
    torch.testing.assert_close(small(**args), ref(**args), rtol=1e-5, atol=1e-5)


def test_offset_range_none_is_mmcv():
    ours, ref = pair(offset_range=None)
    args = inputs()
    torch.testing.assert_close(ours(**args), ref(**args), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('ref_dims', [2, 4])
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_grow_points_keeps_the_output(ref_dims, dtype, tol):
    ours, _ = pair(dtype=dtype, num_points=2)
    args = inputs(ref_dims=ref_dims, dtype=dtype)
    before = ours(**args)
    grown = ours.grow_points(8)  # 2 -> 8: three copies of every point
    assert ours.num_points == 8 and len(grown) == 4
    assert ours.sampling_offsets.weight.shape[0] == 4 * 3 * 8 * 2
    after = ours(**args)
    assert (after - before).abs().max() <= tol * before.abs().max()
    with pytest.raises(ValueError):
        ours.grow_points(12)  # not a multiple of 8


def test_grown_checkpoint_grows_the_module_on_load():
    ours, _ = pair(num_points=2)
    ours.grow_points(4)
    fresh, _ = pair(num_points=2)
    fresh.load_state_dict(ours.state_dict(), strict=True)
    assert fresh.num_points == 4
    args = inputs()
    torch.testing.assert_close(fresh(**args), ours(**args), rtol=0, atol=0)
