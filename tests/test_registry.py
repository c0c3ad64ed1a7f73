"""Our components are reachable from our scope by bare name and from mmdet's scope by
scoped name after custom_imports; a bare name never reaches our child registry."""
import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope

from deform_ext.registry import DATASETS, MODELS, SCOPE, build_in_scope


def dataset_cfg(type_name, data_root):
    return dict(type=type_name, data_root=data_root, ann_file='annotations/instances_val.json',
                data_prefix=dict(img='val/'), pipeline=[], test_mode=True)


def build_dataset_in(scope, cfg):
    from mmdet.registry import DATASETS as MMDET_DATASETS
    with DefaultScope.overwrite_default_scope(scope):
        return MMDET_DATASETS.build(cfg)


def test_registries_are_children_of_mmdet():
    from mmdet.registry import MODELS as MMDET_MODELS
    assert MODELS.parent is MMDET_MODELS and MODELS.scope == SCOPE == 'deform_ext'
    assert 'SyntheticCocoDataset' in DATASETS.module_dict


def test_our_scope_resolves_our_names_and_mmdet_names(tiny_coco):
    dataset = build_dataset_in('deform_ext', dataset_cfg('SyntheticCocoDataset', tiny_coco))
    assert type(dataset).__name__ == 'SyntheticCocoDataset' and len(dataset) == 8
    mmdet_dataset = build_dataset_in('deform_ext', dataset_cfg('CocoDataset', tiny_coco))
    assert type(mmdet_dataset).__name__ == 'CocoDataset'


def test_mmdet_scope_needs_the_scoped_name(tiny_coco):
    dataset = build_dataset_in('mmdet', dataset_cfg('deform_ext.SyntheticCocoDataset', tiny_coco))
    assert type(dataset).__name__ == 'SyntheticCocoDataset'
    with pytest.raises(KeyError, match='SyntheticCocoDataset is not in the mmdet::dataset'):
        build_dataset_in('mmdet', dataset_cfg('SyntheticCocoDataset', tiny_coco))


def test_build_in_scope_resolves_our_bare_names_under_mmdet_scope():
    cfg = dict(type='MSDeformAttn', embed_dims=8, num_heads=2)
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(KeyError, match='MSDeformAttn is not in the mmdet::model'):
            MODELS.build(cfg)
        attention = build_in_scope(MODELS, cfg)
        assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    assert type(attention).__name__ == 'MSDeformAttn'


def test_build_in_scope_defaults_and_leaves_the_config_alone():
    from deform_ext.models.layers import MSDeformAttn
    cfg = dict(embed_dims=8, num_levels=2)
    attention = build_in_scope(MODELS, cfg, default_type=MSDeformAttn,
                               default_args=dict(num_heads=2, num_levels=3))
    assert isinstance(attention, MSDeformAttn)
    assert (attention.num_heads, attention.num_levels) == (2, 2)
    assert cfg == dict(embed_dims=8, num_levels=2)
    explicit = build_in_scope(MODELS, dict(type='FFN', embed_dims=8, feedforward_channels=16),
                              default_type=MSDeformAttn)
    assert type(explicit).__name__ == 'FFN'


def test_custom_imports_from_an_unmodified_mmdet_config(tmp_path, tiny_coco):
    """A fresh process: an mmdet-scoped config pulls deform_ext in through custom_imports."""
    config = tmp_path / 'mmdet_style.py'
    config.write_text(
        "default_scope = 'mmdet'\n"
        "custom_imports = dict(imports=['deform_ext'], allow_failed_imports=False)\n"
        f"dataset = {dataset_cfg('deform_ext.SyntheticCocoDataset', tiny_coco)!r}\n")
    script = (
        'import sys\n'
        'from mmengine.config import Config\n'
        'from mmengine.registry import init_default_scope\n'
        'from mmdet.registry import DATASETS\n'
        f'cfg = Config.fromfile({str(config)!r})\n'
        "assert 'deform_ext' in sys.modules\n"
        'init_default_scope(cfg.default_scope)\n'
        'print(type(DATASETS.build(cfg.dataset)).__name__)\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('SyntheticCocoDataset')


def test_config_without_custom_imports_does_not_import_us(tmp_path):
    config = tmp_path / 'plain.py'
    config.write_text("default_scope = 'mmdet'\nx = 1\n")
    script = ('import sys\nfrom mmengine.config import Config\n'
              f'Config.fromfile({str(config)!r})\nprint("deform_ext" in sys.modules)\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == 'False', result.stderr
