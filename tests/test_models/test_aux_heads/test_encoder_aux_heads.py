"""EncoderAuxHeads on our DeformDETR: the losses, what they train, per-level weights,
the choice of levels, and clear errors."""
import copy

import pytest
import torch

from deform_ext.models.layers.encoder_pyramid import level_strides, memory_levels
from deform_ext.testing import build_model, demo_batch, total_loss
from tests.test_models.test_aux_heads.conftest import aux_head, tiny_ours

AUX_KEYS = {'loss_aux_cls', 'loss_aux_bbox', 'loss_aux_centerness'}


def losses_of(cfg, seed=0):
    model = build_model(cfg).train()
    return model, model(**demo_batch(model, seed=seed), mode='loss')


def test_memory_levels_and_strides():
    memory = torch.arange(2 * (4 * 6 + 2 * 3) * 5, dtype=torch.float).reshape(2, 30, 5)
    shapes = torch.tensor([[4, 6], [2, 3]])
    fine, coarse = memory_levels(memory, shapes)
    assert fine.shape == (2, 5, 4, 6) and coarse.shape == (2, 5, 2, 3)
    assert torch.equal(fine[1, :, 2, 3], memory[1, 2 * 6 + 3])
    assert torch.equal(coarse[0, :, 1, 2], memory[0, 24 + 5])
    assert level_strides(torch.tensor([[8, 12], [4, 6], [2, 3], [1, 2]]), 64) == [8, 16, 32, 64]
    assert level_strides(torch.tensor([[28, 28], [4, 4]]), 224) == [8, 64]  # ceil(224 / 64)
    with pytest.raises(ValueError, match='30 tokens'):
        memory_levels(memory, torch.tensor([[4, 6]]))


@pytest.mark.parametrize('variant', ['deformable-detr', 'deformable-detr-refine-twostage'])
def test_aux_losses_train_heads_encoder_and_shallow_backbone(variant):
    model, losses = losses_of(tiny_ours(variant, levels=(4, 8, 16, 32, 64)))
    assert AUX_KEYS <= set(losses) and 'loss_cls' in losses
    assert all(torch.isfinite(losses[k]) and losses[k].dim() == 0 for k in AUX_KEYS)
    aux = sum(losses[k] for k in AUX_KEYS)
    # layer1's bn2, not a conv: ResNet's residual branches start at zero (no conv grads)
    grads = torch.autograd.grad(aux, [model.aux_head.heads[0].atss_cls.weight,
                                      model.aux_head.pyramid.laterals['4'].conv.weight,
                                      model.backbone.layer1[0].bn2.weight,
                                      model.encoder.layers[-1].ffn.layers[-2].weight])
    assert all(g.abs().sum() > 0 for g in grads)


def test_level_weights_weigh_each_level():
    levels = (8, 16)

    def aux(weights):
        _, losses = losses_of(tiny_ours(levels=levels, level_weights=weights))
        return torch.stack([losses[k] for k in sorted(AUX_KEYS)])

    fine, coarse, mixed = aux((1.0, 0.0)), aux((0.0, 1.0)), aux((2.0, 3.0))
    assert torch.allclose(mixed, 2 * fine + 3 * coarse, rtol=1e-5, atol=1e-6)


def test_deep_levels_only_have_no_extra_modules():
    model, losses = losses_of(tiny_ours(levels=(16, 32, 64)))
    assert AUX_KEYS <= set(losses)
    assert not list(model.aux_head.pyramid.parameters())
    assert model.aux_head.heads[0].prior_generator.strides == [(16, 16), (32, 32), (64, 64)]


def test_several_heads_get_numbered_losses():
    fcos = dict(type='FCOSHead', regress_ranges=((-1, 64), (64, 1e8)))
    from deform_ext.models.dense_heads.encoder_aux_heads import DEFAULT_HEAD
    _, losses = losses_of(tiny_ours(levels=(8, 16), head=[DEFAULT_HEAD, fcos]))
    assert {'loss_aux0_cls', 'loss_aux1_cls', 'loss_aux1_bbox'} <= set(losses)


def test_a_head_without_type_updates_the_default_atss_head():
    narrow = dict(feat_channels=8, norm_cfg=dict(type='GN', num_groups=4))
    model, losses = losses_of(tiny_ours(levels=(4, 8), head=narrow))
    head = model.aux_head.heads[0]
    assert type(head).__name__ == 'ATSSHead' and head.feat_channels == 8
    assert head.atss_cls.in_channels == 8 and head.cls_convs[0].gn.num_groups == 4
    assert head.cls_convs[0].conv.in_channels == model.embed_dims
    assert AUX_KEYS <= set(losses)


def test_summed_losses_refuse_level_weights():
    # FCOS's loss_by_feat returns losses summed over levels
    fcos = dict(type='FCOSHead', regress_ranges=((-1, 64), (64, 1e8)))
    with pytest.raises(ValueError, match='FCOSHead returns loss_cls summed over levels'):
        losses_of(tiny_ours(levels=(8, 16), level_weights=(2.0, 1.0), head=fcos))


def test_a_level_the_model_lacks_is_named():
    cfg = tiny_ours()
    cfg['aux_head'] = aux_head(levels=(4, 8))
    cfg['aux_head']['extra_levels'] = []  # memory strides 8-64: no stride 4
    with pytest.raises(ValueError, match=r'strides \[4\] are not in the model.*'
                                         r'\[8, 16, 32, 64\]'):
        losses_of(cfg)


@pytest.mark.parametrize('change, message', [
    (dict(levels=(8, 4)), 'increasing order'),
    (dict(level_weights=(1.0,)), '1 level_weights for 2 levels'),
    (dict(extra_levels=[dict(stride=2, source='backbone.layer1', in_channels=16)]),
     r'strides \[2\] are not in levels'),
    (dict(levels=(4, 8), extra_levels=[dict(stride=4, source='backbone.layer9',
                                            in_channels=16)]), "no module 'backbone.layer9'"),
])
def test_bad_configs_are_refused_when_built(change, message):
    cfg = tiny_ours()
    cfg['aux_head'] = dict(aux_head(levels=(8, 16)), **change)
    with pytest.raises(ValueError, match=message):
        build_model(cfg)


def test_a_deep_copy_keeps_its_own_hooks():
    """EMA copies the model: the copy's stride-4 hook fills the copy's inputs."""
    model = build_model(tiny_ours(levels=(4, 8))).train()
    twin = copy.deepcopy(model)
    losses = twin(**demo_batch(twin), mode='loss')
    assert AUX_KEYS <= set(losses)
    assert torch.isfinite(total_loss(losses))
