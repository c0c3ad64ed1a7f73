"""Running a benchmark script as a user does, for the benchmark tests."""
import os.path as osp
import subprocess
import sys

from tests.conftest import REPO_ROOT

COCO_NUMBER = r'-?\d\.\d{3}'  # a COCO metric in a table; COCO gives -1 where no such objects


def run_benchmark(script: str, *args: str) -> str:
    """``python benchmarks/<script> args`` from the repository root; its stdout.
    Fails the test with the output's tail when it exits non-zero."""
    result = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'benchmarks', script), *args],
                            capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout
