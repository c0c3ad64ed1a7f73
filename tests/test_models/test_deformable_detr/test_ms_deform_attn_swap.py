"""The one-line switch ``model = dict(type='deform_ext.UseDeformExtMSDA', base_type=...)``
on tiny versions of mmdet's own configs: Deformable DETR, DINO, DDQ-DETR and
Mask2Former's pixel decoder. Our op runs (calls counted), the outputs match the
unswitched model in float64, and the state dicts are interchangeable."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.config import Config, ConfigDict

from deform_ext.models.layers import MSDeformAttn, swap_ms_deform_attn
from deform_ext.testing import (MMDET_DETR_CONFIGS, build_model, demo_batch, mmdet_config_path,
                                tiny_mmdet_detr_cfg, without_init_cfg)

MASK2FORMER = 'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py'


def build(cfg):
    """Built under mmdet's default scope, as a config derived from mmdet's would be."""
    return build_model(cfg, scope='mmdet')


def switched(cfg):
    """The one-line switch applied to a model config."""
    return dict(cfg, type='deform_ext.UseDeformExtMSDA', base_type=cfg['type'])


def deform_attn_kinds(model):
    return sorted({type(m).__name__ for m in model.modules()
                   if isinstance(m, MultiScaleDeformableAttention)})


@pytest.fixture
def float64_default(monkeypatch):
    """float64 runs of DINO and DDQ: DINO creates its denoising queries in the default
    dtype, and mmcv's CPU NMS (DDQ) takes float32 only, so it gets float32 copies
    (it returns indices; both models go through the same path)."""
    import importlib
    nms_module = importlib.import_module('mmcv.ops.nms')
    original = nms_module.NMSop.apply

    def nms_float32(bboxes, scores, *args):
        return original(bboxes.float(), scores.float(), *args)

    monkeypatch.setattr(nms_module.NMSop, 'apply', nms_float32)
    previous = torch.get_default_dtype()
    yield torch.set_default_dtype
    torch.set_default_dtype(previous)


@pytest.mark.parametrize('name', list(MMDET_DETR_CONFIGS))
def test_switch_detector(name, op_calls, float64_default):
    cfg = tiny_mmdet_detr_cfg(name)
    plain, ours = build(cfg), build(switched(cfg))
    assert type(ours) is type(plain)  # the model itself, no wrapper
    assert deform_attn_kinds(plain) == ['MultiScaleDeformableAttention']
    assert deform_attn_kinds(ours) == ['MSDeformAttn']
    # Same random stream, same keys: checkpoints load both ways.
    plain_state, our_state = plain.state_dict(), ours.state_dict()
    assert plain_state.keys() == our_state.keys()
    assert all(torch.equal(plain_state[k], our_state[k]) for k in plain_state)
    # DDQ's auxiliary loss builds float32 targets: its losses compare in float32.
    loss_dtype = torch.float32 if name == 'DDQDETR' else torch.float64
    tolerance = dict(rtol=1e-5, atol=1e-6) if name == 'DDQDETR' else dict(rtol=1e-9, atol=1e-12)
    float64_default(loss_dtype)
    losses = []
    for model in (plain, ours):
        model.to(loss_dtype).train()
        torch.manual_seed(1)  # the same denoising queries and dropout
        losses.append(model(**demo_batch(model, dtype=loss_dtype), mode='loss'))
    assert len(op_calls) == 3  # one encoder + two decoder layers, ours only
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], **tolerance)

    float64_default(torch.float64)
    plain.double()
    ours.double()
    data = demo_batch(ours)
    outputs = []
    for model in (plain, ours):
        model.eval()
        with torch.no_grad():
            outputs.append(model(**data, mode='predict'))
    for a, b in zip(*outputs):
        torch.testing.assert_close(b.pred_instances.bboxes, a.pred_instances.bboxes,
                                   rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(b.pred_instances.scores, a.pred_instances.scores,
                                   rtol=1e-9, atol=1e-12)


def test_switch_mask2former_pixel_decoder(op_calls):
    head = Config.fromfile(mmdet_config_path(MASK2FORMER)).model.panoptic_head
    cfg = without_init_cfg(head.pixel_decoder.to_dict())
    dims = 64
    cfg.update(in_channels=[8, 16, 32, 64], strides=[4, 8, 16, 32], feat_channels=dims,
               out_channels=dims, norm_cfg=dict(type='GN', num_groups=8))
    cfg['encoder']['num_layers'] = 2
    cfg['encoder']['layer_cfg']['self_attn_cfg'].update(embed_dims=dims, num_heads=4)
    cfg['encoder']['layer_cfg']['ffn_cfg'].update(embed_dims=dims, feedforward_channels=64)
    cfg['positional_encoding']['num_feats'] = dims // 2
    cfg = ConfigDict(cfg)  # the pixel decoder reads its encoder config by attribute
    plain = build(cfg).double().eval()
    ours = build(dict(type='deform_ext.UseDeformExtMSDA', model=cfg)).double().eval()
    assert deform_attn_kinds(ours) == ['MSDeformAttn']
    ours.load_state_dict(plain.state_dict(), strict=True)
    torch.manual_seed(2)
    feats = [torch.randn(2, c, 64 // s, 48 // s, dtype=torch.float64)
             for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    with torch.no_grad():
        mask_a, multi_a = plain(feats)
        mask_b, multi_b = ours(feats)
    assert len(op_calls) == 2
    torch.testing.assert_close(mask_b, mask_a, rtol=1e-9, atol=1e-12)
    for a, b in zip(multi_a, multi_b):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_swap_keeps_device_dtype_mode_and_sharing():
    shared = MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=1,
                                           batch_first=True).double().eval()
    parent = torch.nn.ModuleDict(dict(a=shared, b=torch.nn.Sequential(shared)))
    swap_ms_deform_attn(parent)
    assert isinstance(parent['a'], MSDeformAttn) and parent['a'] is parent['b'][0]
    assert parent['a'].sampling_offsets.weight.dtype == torch.float64
    assert not parent['a'].training and parent['a'].batch_first
    mmcv_attention = MultiScaleDeformableAttention(embed_dims=16, num_heads=2)
    assert isinstance(swap_ms_deform_attn(mmcv_attention), MSDeformAttn)


def test_switch_needs_exactly_one_model_form():
    from deform_ext.models.layers import use_deform_ext_ms_deform_attn
    with pytest.raises(ValueError):
        use_deform_ext_ms_deform_attn()
    with pytest.raises(ValueError):
        use_deform_ext_ms_deform_attn(model=dict(type='DINO'), base_type='DINO')
