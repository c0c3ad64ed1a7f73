"""Co-DETR's positive queries behind ``aux_head.positive_queries``: the targets they
get, their losses, what they train, that inference never sees them, clear errors."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from deform_ext.models.layers.ms_deform_attn import MSDeformAttn
from deform_ext.models.layers.positive_queries import (PositiveBatch, PositiveQueries,
                                                       positive_query_losses)
from deform_ext.testing import build_model, demo_batch, total_loss
from tests.test_models.test_aux_heads.conftest import aux_head, tiny_mmdet, tiny_ours

LEVELS = (8, 16, 32, 64)  # the tiny models' memory levels
PQ_KEYS = {'loss_pq_cls', 'loss_pq_bbox', 'loss_pq_iou'}


def sample(height, width, num_boxes=1):
    data = DetDataSample(metainfo=dict(img_shape=(height, width)))
    data.gt_instances = InstanceData(bboxes=torch.zeros(num_boxes, 4),
                                     labels=torch.zeros(num_boxes, dtype=torch.long))
    return data


def image_positives(count, size=(40.0, 20.0), label=2):
    """``count`` positives: anchors at x = 0, 10, 20... of ``size`` (w, h) pixels, all
    assigned to one box (0, 0, 40, 20) of class ``label``."""
    width, height = size
    anchors = torch.tensor([[10.0 * i, 0.0, 10.0 * i + width, height] for i in range(count)])
    boxes = torch.tensor([[0.0, 0.0, 40.0, 20.0]]).expand(count, 4)
    return anchors.reshape(count, 4), boxes, torch.full((count,), label)


def test_batch_normalises_pads_with_weight_zero_and_caps():
    queries = PositiveQueries(embed_dims=8, num_heads=1, max_per_image=3)
    batch = queries.batch([image_positives(2), image_positives(5), image_positives(0)],
                          [sample(20, 40), sample(40, 80), sample(10, 10, num_boxes=0)])
    assert batch.anchors.shape == (3, 3, 4) and batch.labels.shape == (3, 3)
    assert batch.weights.tolist() == [[1, 1, 0], [1, 1, 1], [0, 0, 0]]
    # image 0 (40 x 20): its two anchors, then one of them again as padding
    first = batch.anchors[0]
    assert sorted(first[:2, 0].tolist()) == pytest.approx([0.5, 0.75])
    assert first[2].tolist() in first[:2].tolist()
    assert batch.targets[0].tolist() == [[0.5, 0.5, 1.0, 1.0]] * 3
    assert batch.labels[0].tolist() == [2, 2, 2]
    # image 1 (80 x 40): three of its five anchors, no repeat
    assert len({tuple(a) for a in batch.anchors[1].tolist()}) == 3
    assert batch.targets[1].tolist() == [[0.25, 0.25, 0.5, 0.5]] * 3
    assert ((batch.anchors >= 0) & (batch.anchors <= 1)).all()


def fake_batch(targets, weights):
    bs, count = weights.shape
    return PositiveBatch(anchors=targets.clone(), labels=torch.ones(bs, count, dtype=torch.long),
                         targets=targets, weights=weights)


def test_losses_vanish_at_the_targets_and_ignore_padding():
    head = build_model(tiny_ours('deformable-detr')).bbox_head
    targets = torch.tensor([[[0.5, 0.5, 0.4, 0.2], [0.3, 0.6, 0.2, 0.2]]])
    batch = fake_batch(targets, torch.tensor([[1.0, 0.0]]))
    num_classes = head.cls_out_channels
    scores = torch.randn(2, 1, 2, num_classes)
    exact = targets[None].repeat(2, 1, 1, 1)
    losses = positive_query_losses(head, scores, exact, batch, 'pq', 1.0)
    assert set(losses) == PQ_KEYS | {f'd0.{key}' for key in PQ_KEYS}
    assert losses['loss_pq_bbox'] == losses['loss_pq_iou'] == 0
    # the padded query's box does not count
    padded_wrong = exact.clone()
    padded_wrong[:, :, 1] = torch.tensor([0.9, 0.1, 0.1, 0.1])
    losses = positive_query_losses(head, scores, padded_wrong, batch, 'pq', 2.0)
    assert losses['loss_pq_bbox'] == losses['loss_pq_iou'] == 0
    # nor its class score
    moved = scores.clone()
    moved[:, :, 1] += 5
    assert torch.allclose(positive_query_losses(head, moved, exact, batch, 'pq', 2.0)['loss_pq_cls'],
                          losses['loss_pq_cls'])
    # a wrong positive box costs L1 and GIoU, times the weight
    wrong = exact.clone()
    wrong[:, :, 0, :2] += 0.1
    once = positive_query_losses(head, scores, wrong, batch, 'pq', 1.0)
    twice = positive_query_losses(head, scores, wrong, batch, 'pq', 2.0)
    assert once['loss_pq_bbox'] > 0 and once['loss_pq_iou'] > 0
    assert torch.allclose(twice['loss_pq_iou'], 2 * once['loss_pq_iou'])
    # 0.4 x 0.2 boxes shifted by (0.1, 0.1): overlap 0.3 x 0.1, union 0.13, hull 0.5 x 0.3
    giou = 0.03 / 0.13 - (0.15 - 0.13) / 0.15
    expected = torch.tensor(head.loss_iou.loss_weight * (1 - giou))
    assert torch.allclose(once['loss_pq_iou'], expected, atol=1e-5)


def test_iou_aware_heads_learn_the_iou_as_class_target():
    qfl = dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0)
    cfg = tiny_ours('deformable-detr')
    head = build_model(dict(cfg, bbox_head=dict(cfg['bbox_head'], loss_cls=qfl))).bbox_head
    targets = torch.tensor([[[0.5, 0.5, 0.4, 0.2]]])
    batch = fake_batch(targets, torch.ones(1, 1))
    shifted = targets.clone()
    shifted[..., 0] += 0.2  # IoU with the target: 0.2 x 0.2 / (2 x 0.08 - 0.04) = 1/3
    logit = torch.logit(torch.tensor(1 / 3))
    scores = torch.full((1, 1, 1, head.cls_out_channels), -20.0)
    scores[..., 1] = logit  # class 1, the batch's label, scored at exactly the IoU
    at_iou = positive_query_losses(head, scores, shifted[None], batch, 'pq', 1.0)
    assert at_iou['loss_pq_cls'] < 1e-6
    scores[..., 1] = 10.0  # certain, as a plain focal loss would have it
    assert positive_query_losses(head, scores, shifted[None], batch, 'pq', 1.0)['loss_pq_cls'] > 0.1


def pq_model(cfg, scope='deform_ext'):
    return build_model(cfg, scope=scope).train()


CASES = {
    'DeformDETR': lambda **pq: pq_model(tiny_ours('deformable-detr-refine-twostage',
                                                  levels=LEVELS, positive_queries=pq)),
    'DeformableDETR': lambda **pq: pq_model(dict(
        tiny_mmdet('DeformableDETR'), type='deform_ext.DeformableDETRWithAux',
        aux_head=aux_head(LEVELS, positive_queries=pq)), scope='mmdet'),
}


@pytest.mark.parametrize('name', list(CASES))
def test_positive_queries_train_decoder_and_projection(name):
    model = CASES[name](max_per_image=20)
    losses = model(**demo_batch(model), mode='loss')
    assert PQ_KEYS | {f'd0.{key}' for key in PQ_KEYS} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_pq_bbox'] > 0 and losses['loss_pq_iou'] > 0
    pq = sum(v for k, v in losses.items() if 'loss_pq' in k)
    decoder_weight = next(p for n, p in model.decoder.named_parameters() if 'cross_attn' in n)
    grads = torch.autograd.grad(pq, [model.aux_head.positive_queries.projections[0][0].weight,
                                     decoder_weight])
    assert all(g.abs().sum() > 0 for g in grads)


def test_own_and_aux_losses_and_inference_are_unchanged():
    """The offset loss too: it counts the detector's own queries' offsets only."""
    offset_loss = dict(type='OffsetL1Loss', loss_weight=1.0)
    with_pq = pq_model(dict(tiny_ours('deformable-detr-refine-twostage', levels=LEVELS,
                                      positive_queries=dict()), offset_loss=offset_loss))
    for module in with_pq.modules():  # offsets that depend on the query, not bias alone
        if isinstance(module, MSDeformAttn):
            torch.nn.init.normal_(module.sampling_offsets.weight, std=0.1)
    without = pq_model(dict(tiny_ours('deformable-detr-refine-twostage', levels=LEVELS),
                            offset_loss=offset_loss))
    missing, unexpected = without.load_state_dict(with_pq.state_dict(), strict=False)
    assert not missing and unexpected
    assert all(k.startswith('aux_head.positive_queries.') for k in unexpected)
    ours = with_pq(**demo_batch(with_pq), mode='loss')
    theirs = without(**demo_batch(without), mode='loss')
    assert 'loss_offset' in theirs
    assert set(ours) - set(theirs) == PQ_KEYS | {f'd0.{key}' for key in PQ_KEYS}
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key
    with_pq.eval(), without.eval()
    data = demo_batch(without)
    with torch.no_grad():
        for a, b in zip(with_pq.predict(data['inputs'], data['data_samples']),
                        without.predict(data['inputs'], data['data_samples'])):
            assert torch.equal(a.pred_instances.bboxes, b.pred_instances.bboxes)


def test_the_heads_hooks_see_only_the_detectors_own_queries():
    """Distillation reads the head's last call: it must be the detector's queries."""
    model = CASES['DeformDETR'](max_per_image=7)
    calls = []
    model.bbox_head.register_forward_hook(
        lambda module, args, output: calls.append(args[0].shape[2]))
    losses = model(**demo_batch(model), mode='loss')
    assert 'loss_pq_cls' in losses
    assert calls and set(calls) == {model.num_queries}, calls


def test_images_without_objects_train():
    model = CASES['DeformDETR']()
    data = demo_batch(model)
    for data_sample in data['data_samples']:
        data_sample.gt_instances = data_sample.gt_instances[:0]
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_pq_bbox'] == 0 and losses['loss_pq_cls'] == 0
    total_loss(losses).backward()


def test_dino_and_anchor_free_heads_are_refused():
    with pytest.raises(ValueError, match='DINOWithAux makes its decoder query positions'):
        build_model(dict(tiny_mmdet('DINO'), type='deform_ext.DINOWithAux',
                         aux_head=aux_head(LEVELS, positive_queries=dict())), scope='mmdet')
    fcos = dict(type='FCOSHead', loss_cls=dict(type='FocalLoss', use_sigmoid=True))
    retina = dict(type='RetinaHead', reg_decoded_bbox=True,
                  anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                        scales_per_octave=1, ratios=[1.0]),
                  bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                  loss_bbox=dict(type='GIoULoss'))
    for head, name in ((fcos, 'FCOSHead'), (retina, 'RetinaHead')):
        with pytest.raises(ValueError, match=f'need ATSSHead .or a subclass. as the '
                           f'auxiliary head, got {name}'):
            build_model(tiny_ours('deformable-detr', levels=LEVELS, head=head,
                                  positive_queries=dict()))
    with pytest.raises(ValueError, match='max_per_image >= 1'):
        build_model(tiny_ours('deformable-detr', levels=LEVELS,
                              positive_queries=dict(max_per_image=0)))
