"""tools/train.py's flags change the config as documented (no training here)."""
import importlib.util
import os.path as osp

import pytest

from tests.conftest import DEMO_CONFIG, REPO_ROOT


def load_train_tool():
    spec = importlib.util.spec_from_file_location('train_tool', osp.join(REPO_ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('amp_dtype, expected', [(None, None), ('float16', 'float16')])
def test_amp_picks_the_autocast_wrapper_that_runs_on_cpu(tmp_path, amp_dtype, expected):
    train = load_train_tool()
    options = [] if amp_dtype is None else ['--cfg-options', f'amp_dtype={amp_dtype}']
    cfg = train.build_config(train.parse_args([DEMO_CONFIG, '--amp', '--work-dir', str(tmp_path),
                                               *options]))
    assert cfg.optim_wrapper.type == 'deform_ext.AutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == expected
    from deform_ext.registry import OPTIM_WRAPPERS
    assert 'AutocastOptimWrapper' in OPTIM_WRAPPERS.module_dict


def test_resume_and_auto_scale_lr_flags(tmp_path):
    train = load_train_tool()
    cfg = train.build_config(train.parse_args([DEMO_CONFIG, '--resume', '--auto-scale-lr',
                                               '--work-dir', str(tmp_path)]))
    assert cfg.resume is True and cfg.load_from is None and cfg.auto_scale_lr.enable is True
    cfg = train.build_config(train.parse_args([DEMO_CONFIG, '--resume', 'x.pth']))
    assert cfg.resume is True and cfg.load_from == 'x.pth'
