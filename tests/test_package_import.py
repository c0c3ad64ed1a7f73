"""``import deform_ext`` needs torch alone; components register only with mmdet present."""
import subprocess
import sys

BLOCK_OPENMMLAB = '''
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmcv', 'mmdet', 'mmengine'):
            raise ImportError(f'{name} is blocked for this test')
sys.meta_path.insert(0, Blocker())
'''


def run(code):
    return subprocess.run([sys.executable, '-c', BLOCK_OPENMMLAB + code],
                          capture_output=True, text=True, timeout=120)


def test_package_imports_without_openmmlab():
    result = run('import deform_ext, deform_ext.ops\n'
                 "print(deform_ext.__version__, 'deform_ext.registry' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == 'False'


def test_blocker_really_blocks():
    result = run('import mmdet\n')
    assert result.returncode != 0 and 'blocked for this test' in result.stderr
