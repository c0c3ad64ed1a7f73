"""DAttentionPlugin inside mmdet's ResNet and the DATFPN neck, built from configs
under mmdet's scope (scoped names) and under deform_ext's (bare names)."""
import pytest
import torch
from mmengine.registry import DefaultScope

from deform_ext.models.necks import DATFPN
from deform_ext.models.plugins import DAttentionPlugin


def build(cfg, scope):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(cfg)


def small_resnet(plugins):
    return dict(type='ResNet', depth=50, base_channels=16, stem_channels=16,
                out_indices=(0, 1, 2, 3), norm_cfg=dict(type='BN'), plugins=plugins)


@pytest.mark.parametrize('scope,name', [('mmdet', 'deform_ext.DAttentionPlugin'),
                                        ('deform_ext', 'DAttentionPlugin')])
def test_plugin_in_mmdet_resnet(scope, name):
    torch.manual_seed(0)
    plugins = [dict(cfg=dict(type=name, embed_dims=32, num_heads=4,
                             attn_cfg=dict(stride=2, groups=2)),
                    stages=(False, False, True, True), position='after_conv3')]
    resnet = build(small_resnet(plugins), scope)
    plugin = resnet.layer4[0].dattention_plugin
    assert isinstance(plugin, DAttentionPlugin)
    assert plugin.in_channels == 512 and plugin.embed_dims == 32
    assert not hasattr(resnet.layer2[0], 'dattention_plugin')
    assert sum(isinstance(m, DAttentionPlugin) for m in resnet.modules()) == 6 + 3
    x = torch.randn(2, 3, 75, 97)  # not a multiple of the strides
    outs = resnet(x)
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512]
    assert outs[3].shape[-2:] == (3, 4)
    sum(o.square().mean() for o in outs).backward()
    assert plugin.attn.conv_offset[0].weight.grad.abs().sum() > 0
    assert plugin.gamma.grad.abs().sum() > 0


def test_two_plugins_with_postfix_at_full_width():
    plugins = [
        dict(cfg=dict(type='deform_ext.DAttentionPlugin', num_heads=2, postfix=i),
             stages=(False, False, False, True), position='after_conv2') for i in (1, 2)]
    resnet = build(small_resnet(plugins), 'mmdet')
    block = resnet.layer4[0]
    assert block.dattention_plugin1.embed_dims == 128  # after conv2: planes, no reduction
    assert isinstance(block.dattention_plugin1.down, torch.nn.Identity)
    assert block.after_conv2_plugin_names == ['dattention_plugin1', 'dattention_plugin2']
    resnet(torch.randn(1, 3, 64, 64))


def test_plugin_starts_close_to_identity():
    torch.manual_seed(0)
    plugin = DAttentionPlugin(in_channels=64, embed_dims=32, num_heads=4)
    x = torch.randn(1, 64, 9, 9)
    assert (plugin(x) - x).abs().max() < 0.1 * x.abs().max()


@pytest.mark.parametrize('scope,name', [('mmdet', 'deform_ext.DATFPN'), ('deform_ext', 'DATFPN')])
def test_datfpn_wraps_fpn(scope, name):
    torch.manual_seed(0)
    cfg = dict(type=name,
               neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=32, num_outs=4,
                         add_extra_convs='on_input'),
               out_channels=32, levels=(1, 2), num_heads=4,
               attn_cfgs=[dict(type='DAttention', groups=2, stride=2),
                          dict(type='DAttention', groups=2, stride=1)])
    neck = build(cfg, scope)
    assert isinstance(neck, DATFPN) and len(neck.blocks) == 2
    feats = [torch.randn(2, c, s, s + 3, requires_grad=True) for c, s in
             zip((16, 32, 64), (20, 10, 5))]
    plain = neck.neck(feats)
    outs = neck(feats)
    assert [o.shape for o in outs] == [o.shape for o in plain]
    torch.testing.assert_close(outs[0], plain[0])  # untouched levels pass through
    torch.testing.assert_close(outs[3], plain[3])
    assert not torch.allclose(outs[1], plain[1])
    sum(o.square().mean() for o in outs).backward()
    for blocks in neck.blocks:
        assert blocks[0].attn.conv_offset[0].weight.grad.abs().sum() > 0


def test_datfpn_bad_levels():
    with pytest.raises(ValueError):
        DATFPN(neck=dict(type='FPN', in_channels=[8, 16], out_channels=8, num_outs=2),
               out_channels=8, levels=(0, 1), num_heads=2, attn_cfgs=[dict(type='DAttention')])
