"""DINO's contrastive denoising queries on the two-stage DeformDETR: the matching
queries are untouched, the denoising queries are noised ground truth behind a mask,
their losses are weighted and train the label embedding, inference and the detector's
own weights are the plain model's, bad settings are errors."""
import pytest
import torch

from deform_ext.models.detectors.deform_detr import DENOISING_PREFIX
from deform_ext.models.layers.denoising import Denoising, DenoisingQueries
from deform_ext.testing import build_model, demo_batch, tiny_deformable_detr_cfg, total_loss

DENOISING = dict(num_dn_queries=12, label_noise_scale=0.5, box_noise_scale=0.4,
                 loss_weight=0.5)
LABEL_EMBEDDING = DENOISING_PREFIX + 'label_embedding.weight'


def deterministic_two_stage_cfg():
    """The tiny two-stage refine config with no dropout anywhere."""
    cfg = tiny_deformable_detr_cfg('deformable-detr-refine-twostage', dropout=0.0)
    cfg['encoder']['layer_cfg']['self_attn_cfg']['dropout'] = 0.0
    cfg['decoder']['layer_cfg']['cross_attn_cfg']['dropout'] = 0.0
    return cfg


def two_stage_pair(**denoising):
    """(plain, denoising) two-stage refine models with the same weights (float32:
    mmdet's denoising targets are)."""
    base = deterministic_two_stage_cfg()
    plain = build_model(base)
    model = build_model(dict(base, denoising=dict(DENOISING, **denoising)))
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert missing == [LABEL_EMBEDDING] and not unexpected
    return plain, model


def test_matching_losses_unchanged_and_denoising_losses_added():
    plain, model = two_stage_pair()
    data = demo_batch(model)
    expected = plain.train()(**data, mode='loss')
    losses = model.train()(**data, mode='loss')
    decoder_keys = [k for k in expected if k.startswith(('loss_', 'd')) and 'enc' not in k]
    assert set(losses) == set(expected) | {k.replace('loss_', 'dn_loss_') for k in decoder_keys}
    for key in expected:  # the mask keeps the matching queries from the denoising ones
        torch.testing.assert_close(losses[key], expected[key])
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in losses if 'dn_' in k)


def test_loss_weight_scales_the_denoising_losses_only():
    _, half = two_stage_pair(loss_weight=0.5)
    _, full = two_stage_pair(loss_weight=1.0)
    data = demo_batch(full)
    torch.manual_seed(3)  # the same noise for both
    halved = half.train()(**data, mode='loss')
    torch.manual_seed(3)
    whole = full.train()(**data, mode='loss')
    for key, value in whole.items():
        torch.testing.assert_close(halved[key], 0.5 * value if 'dn_' in key else value)


def test_queries_are_noised_ground_truth_behind_the_mask():
    """Positive queries' corners stay within box_noise_scale / 2 of the box size,
    negatives' beyond it; n = 2 x groups x the largest box count; the matching rows
    see no denoising column, and no group sees another."""
    model = build_model(dict(deterministic_two_stage_cfg(), denoising=DENOISING))
    data = demo_batch(model, num_items=(3, 2))
    samples = model.data_preprocessor(data, True)['data_samples']
    labels, boxes, mask, meta = model.dn_queries(samples, 7)
    groups = DENOISING['num_dn_queries'] // 3
    n = 2 * 3 * groups
    assert meta['num_denoising_queries'] == n and meta['num_denoising_groups'] == groups
    assert labels.shape == (2, n, 32) and boxes.shape == (2, n, 4) and mask.shape == (n + 7,) * 2
    assert mask[n:, :n].all() and not mask[n:, n:].any()
    for group in range(groups):
        rows = slice(6 * group, 6 * (group + 1))
        assert not mask[rows, rows].any() and mask[rows, :n].sum() == 6 * (n - 6)
    gt = samples[0].gt_instances.bboxes  # (3, 4) x1y1x2y2 pixels
    height, width = samples[0].img_shape
    scale = gt.new_tensor([width, height, width, height])
    cx, cy, w, h = boxes[0].double().sigmoid().unbind(-1)
    noised = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * scale
    size = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
    bound = DENOISING['box_noise_scale'] / 2 * size + 0.5  # + the inverse sigmoid's eps
    for group in range(groups):
        positive = noised[6 * group:6 * group + 3]
        assert ((positive - gt).abs() <= bound).all()
        negative = noised[6 * group + 3:6 * group + 6]
        assert ((negative - gt).abs() >= bound - 1.0).any(dim=1).all()


def test_label_embedding_is_trained():
    _, model = two_stage_pair()
    model.train()
    total_loss(model(**demo_batch(model), mode='loss')).backward()
    gradient = model.dn_queries.label_embedding.weight.grad
    assert gradient is not None and gradient.abs().sum() > 0


def test_inference_is_the_plain_models():
    plain, model = two_stage_pair()
    data = demo_batch(model)
    plain.eval(), model.eval()
    with torch.no_grad():
        expected = plain(**data, mode='predict')
        results = model(**data, mode='predict')
    for got, want in zip(results, expected):
        torch.testing.assert_close(got.pred_instances.bboxes, want.pred_instances.bboxes)
        torch.testing.assert_close(got.pred_instances.scores, want.pred_instances.scores)


def test_trains_with_empty_ground_truth_and_tiny_images():
    _, model = two_stage_pair()
    model.train()
    for num_items in ((0, 2), (0, 0)):
        data = demo_batch(model, image_shapes=((3, 32, 32), (3, 64, 16)), num_items=num_items)
        loss = total_loss(model(**data, mode='loss'))
        loss.backward()
        assert torch.isfinite(loss)


@pytest.mark.parametrize('setting, error', [
    (dict(num_dn_queries=1), ValueError), (dict(box_noise_scale=0), ValueError),
    (dict(label_noise_scale=3), ValueError), (dict(loss_weight=-1), ValueError),
    (dict(groups=2), KeyError)])
def test_bad_settings_are_named(setting, error):
    base = tiny_deformable_detr_cfg('deformable-detr-refine-twostage')
    with pytest.raises(error, match='denoising'):
        build_model(dict(base, denoising=dict(DENOISING, **setting)))


def test_needs_two_stage_and_not_hybrid_matching():
    with pytest.raises(ValueError, match='as_two_stage'):
        build_model(dict(tiny_deformable_detr_cfg('deformable-detr-refine'),
                         denoising=DENOISING))
    with pytest.raises(ValueError, match='hybrid_matching'):
        build_model(dict(tiny_deformable_detr_cfg('deformable-detr-refine-twostage'),
                         denoising=DENOISING, hybrid_matching=dict(num_queries=10)))


def test_settings_defaults_are_dinos():
    queries = DenoisingQueries(Denoising(), num_classes=3, embed_dims=8)
    assert (queries.num_dn_queries, queries.label_noise_scale,
            queries.box_noise_scale) == (100, 0.5, 1.0)
