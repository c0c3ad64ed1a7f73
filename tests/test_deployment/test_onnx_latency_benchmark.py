"""benchmarks/onnx_latency.py runs at a tiny size and prints both sides, the ratio and
outputs that agree (the speed itself is not checked here)."""
import re

from tests.conftest import REPO_ROOT, run_tool
from tests.test_ops.ms_deform_attn_helpers import requires_extension


@requires_extension
def test_onnx_latency_reports_both_sides_the_ratio_and_equal_outputs():
    out = run_tool(['python', f'{REPO_ROOT}/benchmarks/onnx_latency.py', '--shape', '64', '64',
                    '--repeats', '1', '--warmup', '0']).stdout
    for row in ('PyTorch \\(deform_ext op\\)', 'onnxruntime \\(standard ops\\)'):
        assert re.search(rf'^{row} +\d+\.\d ms$', out, re.M), out
    assert re.search(r'^ratio \(onnxruntime / PyTorch\) +\d+\.\d\dx$', out, re.M), out
    assert re.search(r'labels equal 100%$', out, re.M), out
