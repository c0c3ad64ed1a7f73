"""DAttention: shapes at any size, offsets bounded and trained, the no-offset baseline
against an independent computation, every position-bias variant, bad arguments."""
import math

import pytest
import torch
import torch.nn.functional as F

from deform_ext.models.layers import DAttention
from deform_ext.registry import MODELS

PE_TYPES = ['none', 'dwc', 'fixed', 'table', 'log_cpb']


def make(seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(embed_dims=32, num_heads=4, groups=2, pe_size=6)
    args.update(kwargs)
    return DAttention(**args)


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (13, 9), (16, 16)])
@pytest.mark.parametrize('stride', [1, 2, 3])
def test_any_size_and_stride(size, stride):
    m = make(stride=stride)
    x = torch.randn(2, 32, *size)
    out, points, reference = m(x, return_points=True)
    hk, wk = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert points.shape == reference.shape == (2, 2, hk, wk, 2)
    # offsets stay within tanh-bound * factor / (Hk, Wk) of the reference cell centres
    bound = torch.tensor([2.0 / hk, 2.0 / wk])
    assert ((points - reference).abs() <= bound + 1e-6).all()
    assert reference.min() > -1 and reference.max() < 1


def test_registered_and_built_from_config():
    m = MODELS.build(dict(type='DAttention', embed_dims=16, num_heads=2))
    assert isinstance(m, DAttention)


def test_gradients_reach_offset_network():
    m = make(stride=2)
    x = torch.randn(2, 32, 11, 10, requires_grad=True)
    m(x).square().sum().backward()
    for name, p in m.conv_offset.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_unbounded_offsets_are_clamped_to_the_map():
    m = make(offset_range_factor=-1)
    with torch.no_grad():
        m.conv_offset[3].weight.mul_(1e3)
    _, points, _ = m(torch.randn(1, 32, 7, 7), return_points=True)
    assert points.abs().max() <= 1.0


def independent_no_offset(m, x):
    """Keys/values: mean over each stride x stride cell (the last cells partial);
    then projections and plain softmax attention written out by hand."""
    bs, c, h, w = x.shape
    r, heads = m.stride, m.num_heads
    cells = [[x[:, :, i:i + r, j:j + r].mean((2, 3)) for j in range(0, w, r)]
             for i in range(0, h, r)]
    pooled = torch.stack([torch.stack(row, -1) for row in cells], -2)  # (bs, c, hk, wk)

    def proj(conv, t):  # 1x1 conv as a matrix product over channels
        return torch.einsum('oc,bcn->bon', conv.weight[:, :, 0, 0], t.flatten(2)) \
            + conv.bias[None, :, None]

    q, k, v = proj(m.proj_q, x), proj(m.proj_k, pooled), proj(m.proj_v, pooled)
    d = c // heads
    q, k, v = (t.reshape(bs, heads, d, -1) for t in (q, k, v))
    attn = torch.einsum('bhdm,bhdn->bhmn', q, k).div(math.sqrt(d)).softmax(-1)
    out = torch.einsum('bhmn,bhdn->bhdm', attn, v).reshape(bs, c, h * w)
    return proj(m.proj_out, out.reshape(bs, c, h, w)).reshape(bs, c, h, w)


@pytest.mark.parametrize('stride,size', [(1, (6, 5)), (2, (7, 9)), (3, (8, 10)), (4, (3, 6))])
def test_no_offset_baseline_equals_independent_computation(stride, size):
    m = make(stride=stride, no_offset=True, pe_type='none').eval()
    assert not hasattr(m, 'conv_offset')
    x = torch.randn(2, 32, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), independent_no_offset(m, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('stride,size', [(1, (7, 5)), (2, (8, 6))])
def test_zero_offsets_sample_the_cell_centres(stride, size):
    """With zero offsets, bilinear samples at the reference points are the pixels
    (stride 1) and the 2x2 cell means (stride 2): the deformable module then equals the
    no-offset baseline with the same weights."""
    deform = make(stride=stride, pe_type='none').eval()
    with torch.no_grad():
        deform.conv_offset[3].weight.zero_()
    baseline = make(stride=stride, pe_type='none', no_offset=True).eval()
    baseline.load_state_dict(deform.state_dict(), strict=False)
    x = torch.randn(1, 32, *size)
    with torch.no_grad():
        torch.testing.assert_close(deform(x), baseline(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('pe_type', PE_TYPES)
@pytest.mark.parametrize('size', [(6, 6), (9, 5)])  # pe_size 6: native and resized
def test_position_bias_variants_forward_backward(pe_type, size):
    m = make(stride=2, pe_type=pe_type).train()
    x = torch.randn(2, 32, *size, requires_grad=True)
    out = m(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    if pe_type != 'none':
        grads = [p.grad for p in m.rpe_table.parameters()] if pe_type in ('dwc', 'log_cpb') \
            else [m.rpe_table.grad]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert not hasattr(m, 'rpe_table')
    for p in m.conv_offset.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_constant_table_bias_changes_nothing():
    m = make(stride=1, pe_type='table', groups=1, num_heads=1, embed_dims=8).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        base = m(x)
        m.rpe_table.add_(5.0)  # softmax is shift-invariant
        torch.testing.assert_close(m(x), base, rtol=1e-4, atol=1e-5)


def test_table_peak_at_zero_displacement_makes_queries_attend_to_themselves():
    """The table's centre is displacement 0: a large peak there (zero offsets, stride
    1) makes every query attend to the key sampled at its own pixel."""
    m = make(stride=1, pe_type='table', groups=1, num_heads=1, embed_dims=8).eval()
    with torch.no_grad():
        m.conv_offset[3].weight.zero_()
        m.rpe_table.zero_()
        m.rpe_table[:, 5, 5] = 200.0  # pe_size 6: centre of the 11 x 11 table
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        expected = m.proj_out(m.proj_v(x))
        torch.testing.assert_close(m(x), expected, rtol=1e-4, atol=1e-4)


def test_attention_dropout_only_in_training():
    m = make(attn_drop=0.5)
    x = torch.randn(1, 32, 5, 5)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, m(x))


@pytest.mark.parametrize('kwargs', [
    dict(embed_dims=30, num_heads=4), dict(num_heads=4, groups=3), dict(pe_type='rope'),
    dict(offset_kernel_size=4), dict(stride=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)


def test_wrong_channels():
    with pytest.raises(ValueError, match='channels'):
        make()(torch.randn(1, 16, 4, 4))


def test_double_precision_gradcheck():
    m = make(stride=2, pe_type='table', embed_dims=8, num_heads=2, groups=2).double()
    x = torch.randn(1, 8, 5, 4, dtype=torch.float64, requires_grad=True)
    # points stay strictly inside pixel cells for this seed, so bilinear is smooth
    assert torch.autograd.gradcheck(lambda t: m(t), (x, ), eps=1e-6, atol=1e-5, fast_mode=True)


def test_sampling_is_bilinear_at_points():
    """Keys are the input bilinearly sampled at the returned points."""
    m = make(stride=2, pe_type='none', groups=2).eval()
    x = torch.randn(1, 32, 9, 7)
    captured = {}
    m.proj_k.register_forward_hook(lambda mod, inp, out: captured.update(keys=inp[0]))
    with torch.no_grad():
        _, points, _ = m(x, return_points=True)
    # sample one point of group 1 by hand (pixel coordinates, align_corners=False)
    y, xx = points[0, 1, 2, 1].tolist()
    py, px = (y + 1) * 9 / 2 - 0.5, (xx + 1) * 7 / 2 - 0.5
    y0, x0 = math.floor(py), math.floor(px)
    fy, fx = py - y0, px - x0
    img = F.pad(x[0, 16:], (1, 1, 1, 1))  # zeros outside; indices shift by one
    val = sum(img[:, y0 + 1 + dy, x0 + 1 + dx] * (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
              for dy in (0, 1) for dx in (0, 1))
    torch.testing.assert_close(captured['keys'][0, 16:, 2, 1], val, rtol=1e-4, atol=1e-5)
