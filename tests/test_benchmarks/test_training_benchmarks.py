"""The training benchmarks run end to end at a tiny size and report what they claim.

Speed and memory are not checked here (benchmarks/README.md has the figures); these
tests keep the scripts working and check the correctness statements they print.
"""
import os.path as osp
import re
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = ['--size', '64', '64', '--iters', '1', '--batch', '1', '--device', 'cpu']


def run_benchmark(script, *args):
    result = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'benchmarks', script), *args],
                            capture_output=True, text=True, timeout=600,
                            cwd=osp.join(REPO_ROOT, 'benchmarks'))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_grad_checkpoint_reports_identical_gradients_and_both_rows():
    out = run_benchmark('grad_checkpoint.py', *TINY)
    assert re.search(r'^num_cp=0 +\d+\.\d +\d+\.\d$', out, re.M), out
    assert re.search(r'^num_cp=2 +\d+\.\d +\d+\.\d$', out, re.M), out
    assert re.search(r'^ratio \(cp / none\) +\d+\.\d+x +\d+\.\d+x$', out, re.M), out
    difference = re.search(r'^max \|grad difference\| after one step: (\S+)$', out, re.M)
    assert difference and float(difference.group(1)) < 1e-4, out  # gradients ~1-10


def test_train_speed_reports_both_models_and_the_ratio():
    out = run_benchmark('train_speed.py', *TINY, '--warmup', '0', '--amp')
    for name in ('deform_ext (MSDeformAttn)', 'deform_ext bfloat16 autocast',
                 'mmdet (mmcv MSDA)'):
        assert re.search(rf'^{re.escape(name)} +\d+\.\d+ +\d+\.\d$', out, re.M), out
    for ours in ('ours', 'ours bfloat16'):
        assert re.search(rf'^ratio \({ours} / mmdet\) +\d+\.\d+x +\d+\.\d+x$', out, re.M), out
    rows = re.findall(r'^(deform_ext \(MSDeformAttn\)|mmdet \(mmcv MSDA\)) +(\d+\.\d) +(\d+\.\d) '
                      r'+(-?\d+\.\d)$', out, re.M)
    assert len(rows) == 2, out  # step, attention core and rest, ms
    for _, step_ms, core_ms, rest_ms in rows:
        assert 0 < float(core_ms) < float(step_ms), out  # the core's calls were replayed
    assert re.search(r'^attention core: ours \d+\.\d+x faster; step ratio with a free core: '
                     r'\d+\.\d+x at most$', out, re.M), out
