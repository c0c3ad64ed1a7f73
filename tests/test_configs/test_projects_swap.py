"""projects/ms_deform_attn_swap: every config builds mmdet's model with each deformable
attention on deform_ext's op, and each COCO config is mmdet's own but for the switch."""
import ast
import glob
import os.path as osp
from typing import Any

import pytest
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.config import Config
from mmengine.hub import get_config

from deform_ext.models.layers import MSDeformAttn
from deform_ext.testing import build_model, without_init_cfg
from tests.conftest import REPO_ROOT

SWAP_CONFIGS = sorted(glob.glob(osp.join(REPO_ROOT, 'projects', 'ms_deform_attn_swap',
                                         'configs', '*.py')))
COCO_CONFIGS = [path for path in SWAP_CONFIGS if path.endswith('_coco.py')]


def without_scope(node: Any) -> Any:
    """A copy of a config node without the ``_scope_`` keys that inheriting from an
    ``mmdet::`` base adds."""
    if isinstance(node, dict):
        return {k: without_scope(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return type(node)(without_scope(v) for v in node)
    return node


def base_of(path: str) -> str:
    """The ``_base_`` a config file names (one string such as ``'mmdet::dino/...py'``)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == '_base_')


def test_there_are_swap_configs():
    assert COCO_CONFIGS and len(SWAP_CONFIGS) > len(COCO_CONFIGS)


@pytest.mark.parametrize('path', SWAP_CONFIGS, ids=osp.basename)
def test_every_deformable_attention_is_ours(path):
    cfg = Config.fromfile(path)
    model = build_model(without_init_cfg(cfg.model.to_dict()), scope=cfg.default_scope)
    # MSDeformAttn subclasses mmcv's class: only the exact type tells them apart
    kinds = [type(m) for m in model.modules() if isinstance(m, MultiScaleDeformableAttention)]
    assert kinds and all(kind is MSDeformAttn for kind in kinds), kinds


@pytest.mark.parametrize('path', COCO_CONFIGS, ids=osp.basename)
def test_coco_config_is_mmdets_plus_the_switch(path):
    base = base_of(path)
    assert base.startswith('mmdet::')
    ours = without_scope(Config.fromfile(path).to_dict())
    theirs = without_scope(get_config(base).to_dict())
    assert ours.pop('custom_imports') == dict(imports=['deform_ext'],
                                              allow_failed_imports=False)
    assert ours['model'].pop('type') == 'deform_ext.UseDeformExtMSDA'
    ours['model']['type'] = ours['model'].pop('base_type')
    assert ours == theirs
