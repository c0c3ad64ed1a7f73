"""The pure-PyTorch path: the fallback when the extension is missing, the reference
against mmcv's, and ``import deform_ext.ops`` without the OpenMMLab packages."""
import subprocess
import sys
import warnings

import pytest
import torch

from deform_ext.ops import _extension, ms_deform_attn, ms_deform_attn_reference
from ms_deform_attn_helpers import random_op_inputs


def test_fallback_warns_once_how_to_build_and_gives_the_same_numbers(monkeypatch):
    inputs = random_op_inputs()
    compiled = ms_deform_attn(*inputs)
    monkeypatch.setattr(_extension, 'EXTENSION_AVAILABLE', False)
    monkeypatch.setattr(_extension, '_warned', set())
    with pytest.warns(RuntimeWarning, match=r'deform_ext.ops.ms_deform_attn: the compiled '
                      r'extension .* unavailable.*pip install --no-build-isolation -e \.'):
        out = ms_deform_attn(*inputs)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        again = ms_deform_attn(*inputs)
    torch.testing.assert_close(out, ms_deform_attn_reference(*inputs), atol=0, rtol=0)
    torch.testing.assert_close(again, out, atol=0, rtol=0)
    torch.testing.assert_close(out, compiled, atol=1e-12, rtol=1e-12)


def test_fallback_still_checks_inputs(monkeypatch):
    monkeypatch.setattr(_extension, 'EXTENSION_AVAILABLE', False)
    value, shapes, starts, loc, attn = random_op_inputs()
    with pytest.raises(ValueError, match='add up to 39 keys'):
        ms_deform_attn(value[:, 1:], shapes, starts, loc, attn)


def test_reference_gradcheck_double():
    inputs = random_op_inputs(bs=1, shapes=((3, 4), (2, 2)), head_dims=3, num_queries=3,
                              num_points=2, requires_grad=True)
    assert torch.autograd.gradcheck(ms_deform_attn_reference, inputs)


def test_reference_matches_mmcv():
    mmcv_module = pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
    value, shapes, starts, loc, attn = random_op_inputs(bs=3, shapes=((7, 5), (4, 3), (2, 2)),
                                                        head_dims=5, loc_range=(-0.3, 1.3))
    expected = mmcv_module.multi_scale_deformable_attn_pytorch(value, shapes, loc, attn)
    for fn in (ms_deform_attn_reference, ms_deform_attn):
        torch.testing.assert_close(fn(value, shapes, starts, loc, attn), expected,
                                   atol=1e-12, rtol=1e-12)


BLOCK_OPENMMLAB_AND_RUN = '''
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmcv', 'mmdet', 'mmengine'):
            raise ImportError(f'{name} is blocked for this test')
sys.meta_path.insert(0, Blocker())
import torch
import deform_ext.ops
value = torch.randn(1, 20 + 6, 2, 4)
out = deform_ext.ops.ms_deform_attn(
    value, torch.tensor([[4, 5], [2, 3]]), torch.tensor([0, 20]),
    torch.rand(1, 3, 2, 2, 2, 2), torch.rand(1, 3, 2, 2, 2))
assert out.shape == (1, 3, 8), out.shape
assert not [m for m in sys.modules if m.split('.')[0] in ('mmcv', 'mmdet', 'mmengine')]
print('ok')
'''


def test_ops_import_and_run_without_openmmlab(repo_root):
    result = subprocess.run([sys.executable, '-c', BLOCK_OPENMMLAB_AND_RUN], cwd=repo_root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
