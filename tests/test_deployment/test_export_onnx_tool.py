"""tools/deployment/export_onnx.py end to end on the demo config (both forms) and on a
config of every other exported family (DETR, YOLOX, Faster and Cascade R-CNN with
RPNHead or EncoderRPNHead, DINO), and clear errors for a missing checkpoint or an
unsupported detector (DDQ-DETR)."""
import os.path as osp

import onnx
import pytest
import torch

from deform_ext.deployment import PLUGIN_NAME
from deform_ext.testing import build_model, config_path, get_config, without_init_cfg
from tests.conftest import DEMO_CONFIG, run_tool
from tests.test_ops.ms_deform_attn_helpers import requires_extension

pytestmark = requires_extension
TOOL = 'tools/deployment/export_onnx.py'
ENCODER_RPN = '../projects/encoder_rpn/configs/'
SWAP = '../projects/ms_deform_attn_swap/configs/'


def save_checkpoint(config, path):
    cfg = get_config(config)
    model = build_model(without_init_cfg(cfg.model.to_dict()),
                        scope=cfg.get('default_scope', 'deform_ext'))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


def test_demo_config_exports_in_both_forms(tmp_path):
    checkpoint = save_checkpoint('demo/deformable-detr-refine-twostage_r18-*.py', tmp_path / 'demo.pth')
    fallback = str(tmp_path / 'fallback.onnx')
    result = run_tool(['python', TOOL, DEMO_CONFIG, checkpoint, '--out', fallback,
                       '--shape', '128', '128', '--fallback'])
    assert 'standard ONNX ops; onnx.checker passed' in result.stdout
    assert 'onnxruntime vs PyTorch on a sample image' in result.stdout
    assert 'labels equal 100%' in result.stdout
    plugin = str(tmp_path / 'plugin.onnx')
    result = run_tool(['python', TOOL, DEMO_CONFIG, checkpoint, '--out', plugin])
    assert '(batch, 3, 256, 256)' in result.stdout  # the test pipeline's Resize scale
    assert 'runs on TensorRT' in result.stdout
    assert any(n.op_type == PLUGIN_NAME for n in onnx.load(plugin).graph.node)


@pytest.mark.parametrize('config', [
    'deformable_detr/detr_r18-tiny_1xb8-120e_synthetic.py',
    'dat/yolox-datfpn_csp-tiny_1xb8-12e_synthetic.py',
    'dat/faster-rcnn-datfpn_r18-tiny_1xb8-12e_synthetic.py',
    ENCODER_RPN + 'cascade-rcnn_r18-tiny_fpn_1xb4-12e_synthetic.py',
    ENCODER_RPN + 'faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
    ENCODER_RPN + 'cascade-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
    SWAP + 'dino-4scale-ms-deform-attn_r18-tiny_1xb8-24e_synthetic.py'])
def test_each_family_exports(config, tmp_path):
    checkpoint = save_checkpoint(config, tmp_path / 'model.pth')
    out = str(tmp_path / 'model.onnx')
    result = run_tool(['python', TOOL, config_path(config), checkpoint, '--out', out,
                       '--shape', '128', '160', '--fallback'])
    assert '(batch, 3, 128, 160)' in result.stdout
    assert 'onnx.checker passed' in result.stdout
    assert 'labels equal 100%' in result.stdout
    assert osp.isfile(out)


def test_missing_checkpoint_and_unsupported_detector_are_clear_errors(tmp_path):
    result = run_tool(['python', TOOL, DEMO_CONFIG, str(tmp_path / 'none.pth')], check=False)
    assert result.returncode != 0
    assert f"checkpoint file {tmp_path / 'none.pth'} does not exist" in result.stderr
    # refused before any export; an empty checkpoint spares saving an R-50's weights
    config = SWAP + 'ddq-detr-4scale-ms-deform-attn_r50_8xb2-12e_coco.py'
    checkpoint = str(tmp_path / 'empty.pth')
    torch.save({'state_dict': {}, 'meta': {}}, checkpoint)
    result = run_tool(['python', TOOL, config_path(config), checkpoint,
                       '--out', str(tmp_path / 'ddq.onnx')], check=False)
    assert result.returncode != 0
    assert ("error: cannot export DDQDETR with DDQDETRHead: DDQ-DETR's distinct query "
            'selection') in result.stderr
    assert not osp.exists(tmp_path / 'ddq.onnx')
