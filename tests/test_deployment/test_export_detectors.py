"""Whole detectors to ONNX: onnxruntime's boxes, scores and labels equal PyTorch's
(goal: scores within 1e-4, boxes within 1e-3 pixels) at the traced and another batch
size, PyTorch's equal mmdet's own predictions, and unsupported detectors are named."""
import onnx
import pytest
import torch
from mmdet.structures import DetDataSample

from deform_ext.deployment import (PLUGIN_NAME, ExportableDetector, UnsupportedModelError,
                                   detection_differences, export_detector, run_detector_onnx,
                                   sample_images)
from deform_ext.testing import build_model, get_config, tiny_deformable_detr_cfg, without_init_cfg
from tests.test_ops.ms_deform_attn_helpers import requires_extension

pytestmark = requires_extension
SHAPE = (128, 160)  # every level of a stride-64 map at least 2 cells


def retinanet(config):
    """A shipped RetinaNet at random weights, its classifier spread out (at its prior
    init every score is 0.01: all below score_thr and tied)."""
    model = build_model(without_init_cfg(get_config(config).model.to_dict()))
    torch.manual_seed(1)
    for parameter in model.bbox_head.retina_cls.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return model


def mmdet_predictions(model, images):
    """mmdet's own predictions for images (bs, 3, H, W) BGR 0-255 of SHAPE."""
    preprocessor = model.data_preprocessor
    inputs = (images.flip(1) - preprocessor.mean) / preprocessor.std
    samples = [DetDataSample(metainfo=dict(img_shape=SHAPE, batch_input_shape=SHAPE,
                                           ori_shape=SHAPE, scale_factor=(1.0, 1.0)))
               for _ in images]
    with torch.no_grad():
        return [s.pred_instances for s in model.predict(inputs, samples, rescale=False)]


def check_export(model, tmp_path):
    detector = ExportableDetector(model.eval(), SHAPE)
    path = str(tmp_path / 'model.onnx')
    export_detector(detector, sample_images(2, *SHAPE), path, plugin=False)
    for images in (sample_images(2, *SHAPE), sample_images(3, *SHAPE, seed=1)):
        with torch.no_grad():
            reference = detector(images)
        differences = detection_differences(reference, run_detector_onnx(path, images))
        assert differences['boxes'] < 1e-3 and differences['scores'] < 1e-4, differences
        assert differences['labels_equal'] == 1.0
        assert (reference[2] >= 0).any(), 'nothing detected: the comparison is empty'
    for index, predicted in enumerate(mmdet_predictions(model, images)):
        found = len(predicted)
        torch.testing.assert_close(reference[0][index, :found], predicted.bboxes)
        torch.testing.assert_close(reference[1][index, :found], predicted.scores)
        assert torch.equal(reference[2][index, :found], predicted.labels)
    return detector


@pytest.mark.parametrize('variant', ['deformable-detr', 'deformable-detr-refine-twostage',
                                     'deformable-detr-singlescale'])
def test_deformable_detr_exports_and_onnxruntime_equals_pytorch(variant, tmp_path):
    model = build_model(tiny_deformable_detr_cfg(variant, dropout=0.0))
    detector = check_export(model, tmp_path)
    path = str(tmp_path / 'plugin.onnx')
    export_detector(detector, sample_images(1, *SHAPE), path, plugin=True)
    plugins = [n for n in onnx.load(path).graph.node if n.op_type == PLUGIN_NAME]
    assert len(plugins) == len(model.deform_attn_modules())


@pytest.mark.parametrize('config', ['dat/retinanet-datfpn_r18-tiny_1xb8-12e_synthetic.py',
                                    'dat/retinanet_dat-mini_1xb8-12e_synthetic.py'])
def test_dat_retinanet_exports_and_onnxruntime_equals_pytorch(config, tmp_path):
    check_export(retinanet(config), tmp_path)


def test_unsupported_detector_is_named():
    model = build_model(without_init_cfg(get_config(
        'dat/faster-rcnn-datfpn_r18-tiny_1xb8-12e_synthetic.py').model.to_dict()))
    with pytest.raises(UnsupportedModelError, match='cannot export FasterRCNN.*RetinaNet'):
        ExportableDetector(model, SHAPE)


def test_shape_off_the_pad_size_divisor_is_refused():
    model = retinanet('dat/retinanet-datfpn_r18-tiny_1xb8-12e_synthetic.py')
    with pytest.raises(ValueError, match='multiple of .*pad_size_divisor 32'):
        ExportableDetector(model, (100, 128))
