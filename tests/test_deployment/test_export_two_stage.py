"""Two-stage detectors to ONNX: Faster R-CNN and Cascade R-CNN, with mmdet's RPNHead or
our EncoderRPNHead as first stage. onnxruntime equals PyTorch (boxes within 1e-3 px,
scores within 1e-4, labels equal) at two batch sizes, PyTorch equals mmdet's predict,
and the traceable EncoderRPNHead proposals are its predict's (count, order, boxes)."""
import pytest
import torch
from mmdet.structures import DetDataSample

from deform_ext.deployment import sample_images
from deform_ext.deployment.encoder_rpn_proposals import encoder_rpn_proposals
from deform_ext.deployment.rcnn_detections import rpn_proposals
from deform_ext.testing import build_model, get_config, without_init_cfg
from tests.test_deployment.test_export_detectors import SHAPE, check_export, preprocess
from tests.test_ops.ms_deform_attn_helpers import requires_extension

pytestmark = requires_extension
ENCODER_RPN = '../projects/encoder_rpn/configs/'


def rcnn(config):
    """A shipped two-stage detector at random weights (RPN and RoI scores spread
    enough at their normal init, std 0.01); an EncoderRPNHead's zero-initialised last
    box layer spread out, so proposals are not just its anchors."""
    model = build_model(without_init_cfg(get_config(config).model.to_dict()))
    if hasattr(model.rpn_head, 'reg_branch'):
        torch.manual_seed(1)
        torch.nn.init.normal_(model.rpn_head.reg_branch[-1].weight, std=0.05)
    return model.eval()


@pytest.mark.parametrize('config,rpn_max_per_img', [
    ('dat/faster-rcnn-datfpn_r18-tiny_1xb8-12e_synthetic.py', 3000),  # padded proposals
    (ENCODER_RPN + 'faster-rcnn_r18-tiny_fpn_1xb4-12e_synthetic.py', None)])
def test_faster_rcnn_exports_and_onnxruntime_equals_pytorch(config, rpn_max_per_img,
                                                             tmp_path):
    model = rcnn(config)
    if rpn_max_per_img:  # more proposals than NMS leaves: padding must stay out
        model.rpn_head.test_cfg.max_per_img = rpn_max_per_img
    detector = check_export(model, tmp_path)
    assert detector.kind == 'rcnn'
    if rpn_max_per_img:
        with torch.no_grad():
            features = model.extract_feat(preprocess(model, sample_images(1, *SHAPE)))
            _, found = rpn_proposals(model.rpn_head, features, SHAPE)
        assert not found.all()


@pytest.mark.parametrize('config,kind', [
    ('faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py', 'rcnn'),
    ('faster-rcnn-encoder-rpn-iou_r18-tiny_fpn_1xb4-12e_synthetic.py', 'rcnn'),  # NMS
    ('cascade-rcnn_r18-tiny_fpn_1xb4-12e_synthetic.py', 'cascade-rcnn'),
    ('cascade-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py', 'cascade-rcnn')])
def test_cascade_and_encoder_rpn_export_and_onnxruntime_equals_pytorch(config, kind,
                                                                       tmp_path):
    detector = check_export(rcnn(ENCODER_RPN + config), tmp_path)
    assert detector.kind == kind


@pytest.mark.parametrize('config,min_bbox_size', [
    ('faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py', 0),
    ('faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py', 8),  # fewer, no NMS
    ('faster-rcnn-encoder-rpn-iou_r18-tiny_fpn_1xb4-12e_synthetic.py', 8)])  # and NMS
def test_encoder_rpn_proposals_are_its_predicts(config, min_bbox_size):
    model = rcnn(ENCODER_RPN + config)
    head = model.rpn_head
    head.test_cfg['min_bbox_size'] = min_bbox_size
    images = sample_images(2, *SHAPE)
    samples = [DetDataSample(metainfo=dict(img_shape=SHAPE, batch_input_shape=SHAPE))
               for _ in images]
    with torch.no_grad():
        features = model.extract_feat(preprocess(model, images))
        boxes, found = encoder_rpn_proposals(head, features, SHAPE)
        predicted = head.predict(features, samples)
    for image_boxes, image_found, proposals in zip(boxes, found, predicted):
        count = int(image_found.sum())
        assert count == len(proposals.bboxes) and image_found[:count].all()
        assert torch.equal(image_boxes[:count], proposals.bboxes)
    if min_bbox_size or head.test_cfg.get('nms'):
        assert not found.all()  # some proposals dropped: the padding is exercised
