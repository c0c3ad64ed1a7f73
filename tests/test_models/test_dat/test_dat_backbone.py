"""DAT backbone and its local-window attention: shapes at any size, padding masked,
gradients, frozen stages, the release architectures."""
import math

import pytest
import torch

from deform_ext.models.backbones import DAT
from deform_ext.models.layers import DATLocalAttention
from deform_ext.registry import MODELS

L = dict(type='DATLocalAttention', window_size=4)
S = dict(type='DATLocalAttention', window_size=4, shift_size=2)
D = dict(type='DAttention', groups=2, stride=1, pe_type='table', pe_size=4)
TINY_ARCH = dict(embed_dims=[16, 32, 64, 128], num_heads=[2, 2, 4, 4],
                 stage_blocks=[[L, S], [L, S], [L, D], [dict(D, stride=2), D]])


def naive_window_attention(m, x):
    """Full attention over all H*W <= window**2 tokens with the table bias by hand."""
    bs, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    q, k, v = m.proj_qkv(tokens).chunk(3, -1)
    heads, d = m.num_heads, c // m.num_heads
    q, k, v = (t.reshape(bs, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    ws = m.window_size
    index = (ys[:, None] - ys[None] + ws - 1) * (2 * ws - 1) + (xs[:, None] - xs[None] + ws - 1)
    bias = m.relative_position_bias_table[index].permute(2, 0, 1)
    attn = (q @ k.transpose(-1, -2) / math.sqrt(d) + bias).softmax(-1)
    out = m.proj_out((attn @ v).transpose(1, 2).reshape(bs, -1, c))
    return out.transpose(1, 2).reshape(bs, c, h, w)


@pytest.mark.parametrize('size', [(7, 7), (5, 3)])
def test_window_attention_masks_padding(size):
    """One window covers the map: with padding keys masked this is full attention."""
    torch.manual_seed(0)
    m = DATLocalAttention(16, 2, window_size=7).eval()
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), naive_window_attention(m, x), rtol=1e-4, atol=1e-5)


def test_shifted_window_attention_is_local_and_any_size():
    torch.manual_seed(0)
    m = DATLocalAttention(16, 2, window_size=4, shift_size=2).eval()
    x = torch.randn(1, 16, 9, 10, requires_grad=True)
    out = m(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # the output at (0, 0) depends only on its own shifted window, not on far pixels
    out[0, :, 0, 0].sum().backward()
    grad = x.grad[0].abs().sum(0)
    assert grad[0, 0] > 0 and grad[8, 9] == 0 and grad[5:, 5:].sum() == 0


@pytest.mark.parametrize('size', [(64, 64), (61, 45), (30, 97)])
def test_backbone_shapes_at_any_size(size):
    torch.manual_seed(0)
    m = DAT(arch=TINY_ARCH)
    outs = m(torch.randn(2, 3, *size))
    assert len(outs) == 4
    h, w = size
    for i, out in enumerate(outs):
        h, w = math.ceil(h / (4 if i == 0 else 2)), math.ceil(w / (4 if i == 0 else 2))
        assert out.shape == (2, TINY_ARCH['embed_dims'][i], h, w)


def test_backbone_gradients_and_out_indices():
    torch.manual_seed(0)
    m = MODELS.build(dict(type='DAT', arch=TINY_ARCH, out_indices=(1, 3), drop_path_rate=0.1))
    outs = m(torch.randn(1, 3, 50, 38))
    assert [o.shape[1] for o in outs] == [32, 128]
    sum(o.square().mean() for o in outs).backward()
    offset_conv = m.stages[3].blocks[0].attn.conv_offset[0]
    assert offset_conv.weight.grad.abs().sum() > 0
    assert m.stages[3].blocks[1].attn.rpe_table.grad.abs().sum() > 0
    assert set(m.out_norms.keys()) == {'1', '3'}


def test_frozen_stages():
    m = DAT(arch=TINY_ARCH, frozen_stages=1).train()
    assert not any(p.requires_grad for p in m.patch_embed.parameters())
    assert not any(p.requires_grad for p in m.stages[1].parameters())
    assert not any(p.requires_grad for p in m.downsamples[0].parameters())
    assert all(p.requires_grad for p in m.stages[2].parameters())
    assert not m.stages[0].training and m.stages[2].training


def test_with_cp_matches():
    torch.manual_seed(0)
    m = DAT(arch=TINY_ARCH).eval()
    x = torch.randn(1, 3, 40, 40, requires_grad=True)
    ref = m(x)
    for stage in m.stages:
        stage.with_cp = True
    for a, b in zip(ref, m(x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('arch,params', [('tiny', 27.55), ('small', 48.93), ('base', 86.86)])
def test_release_architectures(arch, params):
    """DAT-T/S/B as released: millions of parameters without the 1000-class head
    (with it: 28.3, 49.7, 87.9; the paper rounds to 29, 50, 88)."""
    with torch.device('meta'):
        m = DAT(arch=arch)
    count = sum(p.numel() for p in m.parameters()) / 1e6
    assert abs(count - params) < 0.05, count
    kinds = [type(b.attn).__name__ for b in m.stages[2].blocks]
    assert kinds == ['DATLocalAttention', 'DAttention'] * (len(kinds) // 2)


def test_bad_arch():
    with pytest.raises(ValueError):
        DAT(arch='huge')
    with pytest.raises(ValueError):
        DAT(arch=TINY_ARCH, out_indices=(4, ))
