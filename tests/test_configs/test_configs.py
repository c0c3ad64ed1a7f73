"""Every config under configs/ and projects/ loads and builds; every detector config
runs one tiny forward/backward (pretrained weights nulled: nothing downloads here)."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config, ConfigDict
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

from deform_ext.utils import check_top_level_keys
from tests.conftest import REPO_ROOT

CONFIGS = sorted(
    path for pattern in ('configs/**/*.py', 'projects/*/configs/**/*.py')
    for path in glob.glob(osp.join(REPO_ROOT, pattern), recursive=True)
    if '_base_' not in path.split(osp.sep))


def without_pretrained(node):
    """A copy of a config node with every ``init_cfg`` removed."""
    if isinstance(node, dict):
        return {k: without_pretrained(v) for k, v in node.items() if k != 'init_cfg'}
    if isinstance(node, (list, tuple)):
        return type(node)(without_pretrained(v) for v in node)
    return node


def build_model(cfg):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        # a ConfigDict: two-stage detectors read train_cfg.rpn as an attribute
        return MODELS.build(ConfigDict(without_pretrained(cfg.model.to_dict())))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_config_builds_and_trains_one_step(path):
    cfg = Config.fromfile(path)
    check_top_level_keys(cfg, source=path)
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper', 'train_cfg'):
        assert key in cfg, f'{path} has no {key}'
    torch.manual_seed(0)
    np.random.seed(0)  # demo_mm_inputs draws its boxes from numpy's global generator
    model = build_model(cfg)
    model.init_weights()  # as the Runner does (init_cfg with pretrained weights removed)
    model.train()
    # two-stage detectors (Faster R-CNN) keep their box head in roi_head
    bbox_head = model.bbox_head if hasattr(model, 'bbox_head') else model.roi_head.bbox_head
    num_classes = bbox_head.num_classes
    packed = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 128, 96)],
                            num_items=[3, 2], num_classes=num_classes)
    MessageHub.get_current_instance().update_info('iter', 0)  # read by YOLOX batch resize
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)  # some heads return per-level lists
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
