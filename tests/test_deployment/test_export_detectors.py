"""Whole detectors to ONNX, every family we ship (Deformable DETR, DINO, DETR,
RetinaNet, YOLOX; the two-stage ones in test_export_two_stage.py): onnxruntime's
boxes, scores and labels equal PyTorch's (goal: scores within 1e-4, boxes within 1e-3
pixels) at the traced and another batch size, PyTorch's equal mmdet's own predictions,
and unsupported detectors are named with their reason."""
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
SWAP = '../projects/ms_deform_attn_swap/configs/'


def retinanet(config):
    """A shipped RetinaNet at random weights, its classifier spread out (at its prior
    init every score is 0.01: all below score_thr and tied)."""
    model = build_model(without_init_cfg(get_config(config).model.to_dict()))
    torch.manual_seed(1)
    for parameter in model.bbox_head.retina_cls.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return model


def yolox(config):
    """A shipped YOLOX at random weights with usable features: BatchNorm statistics
    from sample images (variance floored at 0.1: channels that barely vary would
    otherwise be amplified until rounding decides the order), classifier and
    objectness spread out (at their prior init every score is 1e-4, below score_thr)."""
    model = build_model(without_init_cfg(get_config(config).model.to_dict()))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        model.train().extract_feat(preprocess(model, sample_images(4, *SHAPE, seed=5)))
    for norm in norms:
        norm.running_var.clamp_(min=0.1)
    torch.manual_seed(1)
    head = model.bbox_head
    for conv in [*head.multi_level_conv_cls, *head.multi_level_conv_obj]:
        for parameter in conv.parameters():
            torch.nn.init.normal_(parameter, std=0.3)
    return model.eval()


def preprocess(model, images):
    """The model's inputs for images (bs, 3, H, W) BGR 0-255 (no padding needed), by
    mmdet's own data preprocessor (not the exporter's copy of its steps)."""
    return model.data_preprocessor(dict(inputs=list(images)), False)['inputs']


def mmdet_predictions(model, images):
    """mmdet's own predictions for images (bs, 3, H, W) BGR 0-255 of SHAPE."""
    inputs = preprocess(model, images)
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
    k = reference[1].shape[1]
    for index, predicted in enumerate(mmdet_predictions(model, images)):
        found = min(len(predicted), k)  # YOLOX's predict keeps every survivor
        assert (reference[2][index, found:] == -1).all()
        torch.testing.assert_close(reference[0][index, :found], predicted.bboxes[:found])
        torch.testing.assert_close(reference[1][index, :found], predicted.scores[:found])
        assert torch.equal(reference[2][index, :found], predicted.labels[:found])
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


def test_detr_exports_and_onnxruntime_equals_pytorch(tmp_path):
    model = build_model(without_init_cfg(get_config(
        'deformable_detr/detr_r18-tiny_1xb8-120e_synthetic.py').model.to_dict()))
    assert ExportableDetector(model.eval(), SHAPE).kind == 'detr'
    check_export(model, tmp_path)


def test_dat_yolox_exports_and_onnxruntime_equals_pytorch(tmp_path):
    model = yolox('dat/yolox-datfpn_csp-tiny_1xb8-12e_synthetic.py')
    detector = check_export(model, tmp_path)
    assert detector.kind == 'yolox' and detector(sample_images(1, *SHAPE))[1].shape == (1, 100)


def test_dino_exports_and_onnxruntime_equals_pytorch(tmp_path):
    """mmdet's DINO on our op (its denoising queries exist only in training)."""
    cfg = get_config(SWAP + 'dino-4scale-ms-deform-attn_r18-tiny_1xb8-24e_synthetic.py')
    model = build_model(without_init_cfg(cfg.model.to_dict()), scope=cfg.default_scope)
    detector = check_export(model, tmp_path)
    assert detector.kind == 'deformable-detr'
    path = str(tmp_path / 'plugin.onnx')
    export_detector(detector, sample_images(1, *SHAPE), path, plugin=True)
    plugins = [n for n in onnx.load(path).graph.node if n.op_type == PLUGIN_NAME]
    assert len(plugins) == len(model.encoder.layers) + len(model.decoder.layers)


@pytest.mark.parametrize('config,message', [
    ('ddq-detr-4scale-ms-deform-attn_r50_8xb2-12e_coco.py',
     "DDQDETR with DDQDETRHead: DDQ-DETR's distinct query selection runs NMS per image"),
    ('mask2former-ms-deform-attn_r50_8xb2-lsj-50e_coco.py',
     'Mask2Former with Mask2FormerHead: Mask2Former and MaskFormer predict instance and '
     'panoptic masks')])
def test_unsupported_detector_is_named_with_its_reason(config, message):
    cfg = get_config(SWAP + config)
    model = build_model(without_init_cfg(cfg.model.to_dict()), scope=cfg.default_scope)
    with pytest.raises(UnsupportedModelError, match=f'cannot export {message}.*RetinaNet'):
        ExportableDetector(model, SHAPE)


def test_rcnn_mask_head_is_refused():
    cfg = get_config('dat/faster-rcnn-datfpn_r18-tiny_1xb8-12e_synthetic.py').model.to_dict()
    cfg['roi_head'].update(
        mask_roi_extractor=dict(type='SingleRoIExtractor', out_channels=64,
                                roi_layer=dict(type='RoIAlign', output_size=14),
                                featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNMaskHead', in_channels=64, conv_out_channels=64,
                       num_classes=6))
    model = build_model(without_init_cfg(cfg))
    with pytest.raises(UnsupportedModelError, match='mask heads are not exported'):
        ExportableDetector(model, SHAPE)


def test_shape_off_the_pad_size_divisor_is_refused():
    model = retinanet('dat/retinanet-datfpn_r18-tiny_1xb8-12e_synthetic.py')
    with pytest.raises(ValueError, match='multiple of .*pad_size_divisor 32'):
        ExportableDetector(model, (100, 128))
