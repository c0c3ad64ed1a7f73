"""EncoderRPNHead: the first stage of two-stage DeformDETR as an R-CNN's RPN — the same
scores as the detector's first stage for the same weights, mmdet's RPN contract, fewer
proposals (never a crash) when an image has fewer tokens than asked for, training on
empty ground truth, clear errors."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from deform_ext.models.dense_heads.encoder_rpn_weights import encoder_rpn_weights
from deform_ext.testing import build_model, demo_batch, tiny_deformable_detr_cfg, without_init_cfg
from tests.conftest import REPO_ROOT

CONFIGS = osp.join(REPO_ROOT, 'projects', 'encoder_rpn', 'configs')
ASSIGNMENTS = {
    'one-to-one': 'faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
    'iou': 'faster-rcnn-encoder-rpn-iou_r18-tiny_fpn_1xb4-12e_synthetic.py',
    'one-to-many': 'faster-rcnn-encoder-rpn-o2m_r18-tiny_fpn_1xb4-12e_synthetic.py',
}


def faster_rcnn(assignment: str):
    cfg = Config.fromfile(osp.join(CONFIGS, ASSIGNMENTS[assignment]))
    return build_model(without_init_cfg(cfg.model.to_dict()), scope=cfg.default_scope)


def two_stage_detector_and_head(encoder_layers=1):
    """A two-stage DeformDETR and an EncoderRPNHead holding its first stage's weights."""
    detector_cfg = tiny_deformable_detr_cfg('deformable-detr-refine-twostage',
                                            encoder_layers=encoder_layers)
    detector = build_model(detector_cfg).eval()
    head = build_model(dict(type='EncoderRPNHead', in_channels=32,
                            num_levels=detector.num_feature_levels,
                            encoder=detector_cfg['encoder'], test_cfg=dict(max_per_img=50)))
    head.load_state_dict(encoder_rpn_weights(detector.state_dict(), encoder_layers), strict=True)
    return detector, head.eval()


def test_scores_tokens_as_the_two_stage_detector_does():
    detector, head = two_stage_detector_and_head()
    data = demo_batch(detector)  # two image shapes: a padded batch
    with torch.no_grad():
        feats = detector.extract_feat(data['inputs'])
        encoder_inputs, decoder_inputs = detector.pre_transformer(feats, data['data_samples'])
        memory = detector.forward_encoder(**encoder_inputs)['memory']
        detector.train()  # the first stage's outputs are returned while training
        _, first_stage = detector.pre_decoder(memory, decoder_inputs['memory_mask'],
                                              decoder_inputs['spatial_shapes'])
        tokens = head(feats, [s.metainfo for s in data['data_samples']])
    assert tokens.valid.any(1).all() and not tokens.valid.all()  # padding is invalid
    torch.testing.assert_close(tokens.class_logits[..., 0],
                               first_stage['enc_outputs_class'][..., 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tokens.coords_unact.sigmoid(), first_stage['enc_outputs_coord'],
                               rtol=1e-5, atol=1e-6)


def test_weights_of_a_detector_without_first_stage_are_refused():
    detector = build_model(tiny_deformable_detr_cfg('deformable-detr-refine'))
    with pytest.raises(KeyError, match='memory_trans_fc.weight'):
        encoder_rpn_weights(detector.state_dict(), 1)
    with pytest.raises(KeyError, match='encoder.layers.1'):
        encoder_rpn_weights(two_stage_detector_and_head()[0].state_dict(), 2)


def test_converter_writes_a_checkpoint_the_head_loads_strictly(tmp_path):
    detector, head = two_stage_detector_and_head()
    source, converted = tmp_path / 'two-stage.pth', tmp_path / 'encoder-rpn.pth'
    torch.save({'state_dict': detector.state_dict(), 'meta': {'epoch': 3}}, source)
    tool = osp.join(REPO_ROOT, 'tools', 'model_converters', 'deform_detr_to_encoder_rpn.py')
    subprocess.run([sys.executable, tool, str(source), str(converted)], check=True)
    state = torch.load(converted, weights_only=True)['state_dict']
    head.load_state_dict(state, strict=True)
    assert torch.equal(state['cls_branch.weight'], detector.bbox_head.cls_branches[2].weight[:1])

    torch.save({'state_dict': build_model(tiny_deformable_detr_cfg()).state_dict()}, source)
    refused = subprocess.run([sys.executable, tool, str(source), str(converted)],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and f'{source}: not a two-stage' in refused.stderr


@pytest.mark.parametrize('nms', [None, dict(type='nms', iou_threshold=0.7)], ids=['top-k', 'nms'])
def test_tiny_images_give_fewer_proposals_not_an_error(nms):
    model = faster_rcnn('one-to-one').eval()
    data = demo_batch(model, image_shapes=((3, 32, 32), (3, 64, 16)), num_items=(1, 1))
    metas = [s.metainfo for s in data['data_samples']]
    with torch.no_grad():
        tokens = model.rpn_head(model.extract_feat(data['inputs']), metas)
        proposals = model.rpn_head.predict_by_tokens(
            tokens, metas, dict(max_per_img=1000, nms_pre=2000, nms=nms))
    for result, valid, meta in zip(proposals, tokens.valid, metas):
        height, width = meta['img_shape']
        assert 0 < len(result) <= int(valid.sum()) < 1000
        assert torch.isfinite(result.bboxes).all()
        assert (result.bboxes[:, 0::2] >= 0).all() and (result.bboxes[:, 0::2] <= width).all()
        assert (result.bboxes[:, 1::2] >= 0).all() and (result.bboxes[:, 1::2] <= height).all()
        assert (result.scores[:-1] >= result.scores[1:]).all()
        assert (result.labels == 0).all()
    with torch.no_grad():  # the whole detector on those images
        detections = model(**data, mode='predict')
    assert len(detections) == 2


def test_two_stage_detector_decodes_every_token_of_a_tiny_image():
    model = build_model(dict(tiny_deformable_detr_cfg('deformable-detr-refine-twostage'),
                             num_queries=300))
    data = demo_batch(model, image_shapes=((3, 32, 32), (3, 32, 32)), num_items=(1, 2))
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())
    model.eval()
    with torch.no_grad():
        assert len(model(**data, mode='predict')) == 2


@pytest.mark.parametrize('assignment', list(ASSIGNMENTS))
def test_trains_on_images_without_ground_truth(assignment):
    model = faster_rcnn(assignment).train()
    data = demo_batch(model, image_shapes=((3, 96, 128), (3, 128, 96)), num_items=(0, 0))
    losses = model(**data, mode='loss')
    rpn = {k: v for k, v in losses.items() if k.startswith('loss_rpn')}
    assert sorted(rpn) == ['loss_rpn_bbox', 'loss_rpn_cls', 'loss_rpn_iou']
    assert rpn['loss_rpn_cls'] > 0 and rpn['loss_rpn_bbox'] == 0
    model.parse_losses(losses)[0].backward()
    assert all(p.grad is not None for p in model.rpn_head.parameters())


@pytest.mark.parametrize('assignment', list(ASSIGNMENTS))
def test_learns_the_objects_of_a_batch(assignment):
    """A few AdamW steps on one batch lower the first stage's losses."""
    model = faster_rcnn(assignment).train()
    data = demo_batch(model, image_shapes=((3, 96, 128), (3, 128, 96)), num_items=(3, 2))
    optimizer = torch.optim.AdamW(model.rpn_head.parameters(), lr=1e-3)
    history = []
    for _ in range(15):
        losses = model.rpn_head.loss(model.extract_feat(data['inputs']), data['data_samples'])
        total = sum(losses.values())
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.8 * history[0], history


def test_one_to_many_matching_gives_each_object_gt_repeats_tokens():
    model = faster_rcnn('one-to-many').train()
    head = model.rpn_head
    data = demo_batch(model, image_shapes=((3, 96, 128), (3, 128, 96)), num_items=(3, 2))
    metas = [sample.metainfo for sample in data['data_samples']]
    tokens = head(model.extract_feat(data['inputs']), metas)
    gts = [sample.gt_instances for sample in data['data_samples']]
    seen = []
    original = head.loss_iou.forward

    def keep_targets(pred, target, *args, **kwargs):
        seen.append(target)
        return original(pred, target, *args, **kwargs)
    head.loss_iou.forward = keep_targets
    losses = head.loss_by_tokens(tokens, gts, metas)
    assert all(torch.isfinite(v) for v in losses.values())
    targets = seen[0]
    assert len(targets) == 3 * (3 + 2)  # three tokens per object
    expected = torch.cat([gt.bboxes.repeat(3, 1) for gt in gts])
    assert sorted(map(tuple, targets.round().tolist())) == \
        sorted(map(tuple, expected.round().tolist()))
    with pytest.raises(ValueError, match='gt_repeats must be >= 1, got 0'):
        build_model(dict(type='EncoderRPNHead', in_channels=32, num_levels=2,
                         train_cfg=dict(gt_repeats=0)))
    iou = dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3)
    with pytest.raises(ValueError, match='gt_repeats=3 needs HungarianAssigner.*MaxIoUAssigner'):
        build_model(dict(type='EncoderRPNHead', in_channels=32, num_levels=2,
                         train_cfg=dict(assigner=iou, gt_repeats=3)))


def test_rescale_maps_proposals_to_the_original_image():
    model = faster_rcnn('one-to-one').eval()
    data = demo_batch(model)
    for sample in data['data_samples']:
        sample.set_metainfo(dict(scale_factor=(2.0, 4.0)))
    feats = model.extract_feat(data['inputs'])
    with torch.no_grad():
        scaled = model.rpn_head.predict(feats, data['data_samples'], rescale=False)
        original = model.rpn_head.predict(feats, data['data_samples'], rescale=True)
    for a, b in zip(scaled, original):
        torch.testing.assert_close(b.bboxes, a.bboxes / a.bboxes.new_tensor([2, 4, 2, 4]))


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match='num_classes must be 1'):
        build_model(dict(type='EncoderRPNHead', in_channels=32, num_levels=2, num_classes=3))
    detector_cfg = tiny_deformable_detr_cfg('deformable-detr-refine-twostage')
    with pytest.raises(ValueError, match=r'num_levels=4 but the head has in_channels=32, '
                                         r'num_levels=3'):
        build_model(dict(type='EncoderRPNHead', in_channels=32, num_levels=3,
                         encoder=detector_cfg['encoder']))
    head = build_model(dict(type='EncoderRPNHead', in_channels=32, num_levels=4,
                            encoder=detector_cfg['encoder']))
    with pytest.raises(ValueError, match=r'num_levels=4\) got 2 feature levels'):
        head([torch.zeros(1, 32, 8, 8)] * 2, [dict(img_shape=(32, 32),
                                                  batch_input_shape=(32, 32))])
