"""The compatibility patches: idempotent, undoable, opt-out respected, version-guarded."""
import os
import subprocess
import sys
import types
import warnings

import pytest
from mmdet.datasets.api_wrappers import COCO
from mmengine.dist import utils as dist_utils
from mmengine.dist import utils as dist_utils_module
from mmengine.hooks import CheckpointHook, LoggerHook
from mmengine.hooks import checkpoint_hook as checkpoint_hook_module
from mmengine.runner import checkpoint as checkpoint_module

import deform_ext  # noqa: F401  installs the patches
from deform_ext import compat
from deform_ext.compat import patch as patch_module
from deform_ext.compat.patch import Patch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _patched_places():
    """Every attribute or entry the patches touch, as it is now."""
    return {
        'save_checkpoint': checkpoint_module.save_checkpoint,
        'find_latest_checkpoint': checkpoint_module.find_latest_checkpoint,
        'local loader': checkpoint_module.CheckpointLoader._schemes[''],
        'hook open': vars(checkpoint_hook_module).get('open'),
        'after_val_epoch': vars(CheckpointHook)['after_val_epoch'],
        'launcher': dist_utils._init_dist_pytorch,
        'test metrics json': vars(LoggerHook)['after_test_epoch'],
        'coco init': vars(COCO)['__init__'],
    }


@pytest.fixture
def restored():
    """Leave the patches installed after the test, whatever it did."""
    yield
    compat.uninstall()
    compat.install()


def test_import_installs_every_patch():
    assert compat.installed() == [patch.name for patch in compat.PATCHES]


def test_install_twice_changes_nothing(restored):
    before = _patched_places()
    assert compat.install() == compat.installed()
    assert _patched_places() == before


def test_uninstall_restores_the_originals_then_reinstalls(restored):
    patched = _patched_places()
    compat.uninstall()
    original = _patched_places()
    assert compat.installed() == []
    assert all(original[name] is not patched[name] for name in patched)
    assert original['hook open'] is None  # the module had no `open` of its own
    assert original['local loader'].__module__ == 'mmengine.runner.checkpoint'
    assert original['coco init'].__module__.startswith('mmdet.')
    compat.uninstall()  # a second undo is a no-op
    assert _patched_places() == original
    compat.install()
    assert compat.installed() == [patch.name for patch in compat.PATCHES]


def test_compat_disabled_block(restored):
    patched = _patched_places()
    with compat.compat_disabled():
        assert compat.installed() == []
        assert checkpoint_module.save_checkpoint is not patched['save_checkpoint']
    assert _patched_places().keys() == patched.keys()
    assert compat.installed() == [patch.name for patch in compat.PATCHES]


def test_unsupported_version_warns_once_and_stays_off(restored, monkeypatch):
    compat.uninstall()
    original = _patched_places()
    monkeypatch.setattr(patch_module, 'installed_version',
                        lambda package: '0.11.0' if package == 'mmengine' else '3.3.0')
    for patch in compat.PATCHES:
        monkeypatch.setattr(patch, '_warned', False)
    with pytest.warns(RuntimeWarning, match=r"'checkpoint_writes'.*mmengine 0\.10\.x.*"
                                            r"mmengine 0\.11\.0.*stays off") as record:
        assert compat.install() == ['coco_errors']  # the mmdet patch still applies
    assert len([w for w in record if 'mmengine' in str(w.message)]) == 4
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a second install: no second warning
        assert compat.install() == ['coco_errors']
    now = _patched_places()
    assert all(now[name] is original[name] for name in now if name != 'coco init')


def test_patch_restores_inherited_and_missing_names():
    class Base:
        def greet(self):
            return 'base'

    class Child(Base):
        pass

    table = {'kept': 1}
    module = types.ModuleType('target')
    patch = Patch('demo', 'pytest', '', lambda: [
        (Child, 'greet', lambda self: 'patched'), (table, 'added', 2), (module, 'open', len)],
        purpose='a test')
    assert patch.install() and patch.install()
    assert Child().greet() == 'patched' and table == {'kept': 1, 'added': 2}
    patch.uninstall()
    assert 'greet' not in vars(Child) and Child().greet() == 'base'  # inherited again
    assert table == {'kept': 1} and not hasattr(module, 'open')


def test_opt_out_keeps_every_patch_off():
    """A fresh interpreter with DEFORM_EXT_NO_COMPAT=1: deform_ext imports and
    registers its components, and mmengine/mmdet are left as they are."""
    code = (
        'import deform_ext, mmengine.runner.checkpoint as c\n'
        'from deform_ext import compat\n'
        'from deform_ext.registry import MODELS\n'
        'assert compat.installed() == [], compat.installed()\n'
        "assert c.save_checkpoint.__module__ == 'mmengine.runner.checkpoint'\n"
        "assert MODELS.get('DeformDETR') is not None\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, text=True,
                            capture_output=True, timeout=300,
                            env=dict(os.environ, DEFORM_EXT_NO_COMPAT='1'))
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]


def test_only_the_main_process_writes_the_test_metrics(monkeypatch):
    """On rank 1 the test-epoch logging (which dumps the metrics JSON) does not run;
    on rank 0 it does (here it fails on the missing runner, proving it ran)."""
    monkeypatch.setattr(dist_utils_module, 'get_rank', lambda group=None: 1)
    assert LoggerHook().after_test_epoch(runner=None) is None
    monkeypatch.setattr(dist_utils_module, 'get_rank', lambda group=None: 0)
    with pytest.raises(AttributeError):
        LoggerHook().after_test_epoch(runner=None)
