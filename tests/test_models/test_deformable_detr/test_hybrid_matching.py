"""Hybrid matching (H-DETR's one-to-many query group) on the two-stage DeformDETR:
the one-to-one group is untouched, the extra group's losses are those of repeated
targets, inference and the weights are the plain model's, bad settings are errors."""
import pytest
import torch
from mmengine.structures import InstanceData

from deform_ext.models.layers.hybrid_matching import (group_self_attn_mask,
                                                      repeated_targets)
from deform_ext.testing import build_model, demo_batch, tiny_deformable_detr_cfg, total_loss

HYBRID = dict(num_queries=20, gt_repeats=3, loss_weight=0.5)


def deterministic_two_stage_cfg():
    """The tiny two-stage refine config with no dropout anywhere (the deformable
    attentions' own included): groups of different sizes draw different masks."""
    cfg = tiny_deformable_detr_cfg('deformable-detr-refine-twostage', dropout=0.0)
    cfg['encoder']['layer_cfg']['self_attn_cfg']['dropout'] = 0.0
    cfg['decoder']['layer_cfg']['cross_attn_cfg']['dropout'] = 0.0
    return cfg


def two_stage_pair(**hybrid):
    """(plain, hybrid) two-stage refine models with the same weights, float64."""
    base = deterministic_two_stage_cfg()
    plain = build_model(base).double()
    model = build_model(dict(base, hybrid_matching=dict(HYBRID, **hybrid))).double()
    model.load_state_dict(plain.state_dict())
    return plain, model


def test_one_to_one_losses_unchanged_and_one_to_many_added():
    plain, model = two_stage_pair()
    data = demo_batch(model)
    expected = plain.train()(**data, mode='loss')
    losses = model.train()(**data, mode='loss')
    assert set(losses) == set(expected) | {
        f'o2m.{k}' for k in expected if not k.startswith('enc_')}
    for key in expected:  # the mask keeps the groups apart: same one-to-one numbers
        torch.testing.assert_close(losses[key], expected[key])
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in losses if 'o2m' in k)


def test_one_to_many_losses_are_the_heads_on_repeated_targets():
    """o2m.* = loss_weight x the head's losses of the extra queries' outputs against
    every box repeated gt_repeats times, the queries being the best proposals."""
    plain, model = two_stage_pair(gt_repeats=2)
    model.train()
    data = demo_batch(model)
    losses = model(**data, mode='loss')
    plain.train()
    # the extra group alone, as a plain model with 20 queries decodes it
    plain.num_queries = HYBRID['num_queries']
    samples = data['data_samples']
    for sample in samples:
        sample.gt_instances = repeated_targets([sample.gt_instances], 2)[0]
    alone = plain(**data, mode='loss')
    for key, value in alone.items():
        if not key.startswith('enc_'):
            torch.testing.assert_close(losses[f'o2m.{key}'], 0.5 * value)


def test_inference_and_weights_are_the_plain_models():
    plain, model = two_stage_pair()
    assert set(model.state_dict()) == set(plain.state_dict())
    data = demo_batch(model)
    plain.eval(), model.eval()
    with torch.no_grad():
        expected = plain(**data, mode='predict')
        results = model(**data, mode='predict')
    for got, want in zip(results, expected):
        torch.testing.assert_close(got.pred_instances.bboxes, want.pred_instances.bboxes)
        torch.testing.assert_close(got.pred_instances.scores, want.pred_instances.scores)


def test_trains_with_empty_ground_truth_and_tiny_images():
    _, model = two_stage_pair(num_queries=500)  # more than the tokens of a 32x32 image
    model.train()
    data = demo_batch(model, image_shapes=((3, 32, 32), (3, 64, 16)), num_items=(0, 2))
    loss = total_loss(model(**data, mode='loss'))
    loss.backward()
    assert torch.isfinite(loss)


def test_group_mask_and_repeated_targets():
    mask = group_self_attn_mask(2, 3, torch.device('cpu'))
    assert mask.shape == (5, 5)
    assert not mask[:2, :2].any() and not mask[2:, 2:].any()
    assert mask[:2, 2:].all() and mask[2:, :2].all()
    gt = InstanceData(bboxes=torch.tensor([[0., 0, 1, 1], [2, 2, 3, 3]]),
                      labels=torch.tensor([4, 5]))
    repeated = repeated_targets([gt], 3)[0]
    assert repeated.labels.tolist() == [4, 5] * 3
    assert len(repeated_targets([gt[:0]], 3)[0]) == 0


@pytest.mark.parametrize('setting, error', [
    (dict(gt_repeats=0), ValueError), (dict(num_queries=0), ValueError),
    (dict(k=6), KeyError)])
def test_bad_settings_are_named(setting, error):
    base = tiny_deformable_detr_cfg('deformable-detr-refine-twostage')
    with pytest.raises(error, match='hybrid_matching'):
        build_model(dict(base, hybrid_matching=dict(HYBRID, **setting)))


def test_needs_two_stage():
    with pytest.raises(ValueError, match='as_two_stage'):
        build_model(dict(tiny_deformable_detr_cfg('deformable-detr-refine'),
                         hybrid_matching=HYBRID))
