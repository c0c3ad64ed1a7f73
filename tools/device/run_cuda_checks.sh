#!/usr/bin/env bash
# One-shot CUDA checks of deform_ext.ops on a GPU machine (no internet needed):
# builds deform_ext.ops._C in place with the CUDA kernels, runs the GPU tests and the
# op benchmarks (float32, float16, bfloat16), times the deterministic backward against
# the default one, and writes every log under $OUT (default /tmp/deform_ext_cuda_out).
#
#   tools/device/run_cuda_checks.sh            (from the repository root, or anywhere)
#   OUT=/some/dir PYTHON=python3 TORCH_CUDA_ARCH_LIST=9.0 tools/device/run_cuda_checks.sh
#
# Files (at most 8, flat, for the device tool): env.txt, build.log, test_cuda.log,
# test_ops.log, bench.log, bench_deterministic.log, summary.txt.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/deform_ext_cuda_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

# --- environment ---------------------------------------------------------------------
{
  date
  nvidia-smi 2>&1 | head -n 15
  nvcc --version 2>&1 | tail -n 2
  "$PY" - <<'PY'
import importlib, sys
import torch
print('python', sys.version.split()[0])
print('torch', torch.__version__, 'cuda', torch.version.cuda,
      'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for name in ('pytest', 'hypothesis', 'triton', 'ninja', 'setuptools'):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, '__version__', 'present'))
    except ImportError:
        print(name, 'MISSING')
PY
} > "$OUT/env.txt" 2>&1
HAVE_PYTEST=0; "$PY" -c 'import pytest' 2>/dev/null && HAVE_PYTEST=1
HAVE_HYPOTHESIS=0; "$PY" -c 'import hypothesis' 2>/dev/null && HAVE_HYPOTHESIS=1
note "pytest: $([ $HAVE_PYTEST = 1 ] && echo present || echo 'MISSING (tests run with the file'"'"'s own runner)')"
note "hypothesis: $([ $HAVE_HYPOTHESIS = 1 ] && echo present || echo 'MISSING (test_ms_deform_attn_fuzz.py skipped)')"

# --- build -----------------------------------------------------------------------------
start=$(date +%s)
FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
  "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1
rc=$?
note "build: rc=$rc in $(( $(date +%s) - start )) s (errors: $(grep -c ' error' "$OUT/build.log"), warnings in our sources: $(grep -E 'ms_deform_attn.*warning' "$OUT/build.log" | wc -l))"
if [ $rc -ne 0 ]; then
  tail -n 60 "$OUT/build.log"
  note "build failed: see build.log"
  exit 1
fi
"$PY" -c "from deform_ext.ops import _extension as e; print('cuda kernel registered:', e.has_kernel('ms_deform_attn', 'cuda'), e.has_kernel('ms_deform_attn_backward', 'cuda'))" 2>&1 | tee -a "$SUMMARY"

# --- tests -----------------------------------------------------------------------------
start=$(date +%s)
if [ $HAVE_PYTEST = 1 ]; then
  # pytest.ini's addopts / timeout need no plugin; -p no:cacheprovider keeps the tree clean
  "$PY" -m pytest tests/test_ops/test_ms_deform_attn_cuda.py -v -rs -p no:cacheprovider \
    > "$OUT/test_cuda.log" 2>&1
else
  "$PY" tests/test_ops/test_ms_deform_attn_cuda.py > "$OUT/test_cuda.log" 2>&1
fi
rc=$?
note "CUDA tests: rc=$rc in $(( $(date +%s) - start )) s: $(tail -n 1 "$OUT/test_cuda.log")"
if [ $HAVE_PYTEST = 1 ]; then
  IGNORE=(--ignore=tests/test_ops/test_ms_deform_attn_cuda.py)
  [ $HAVE_HYPOTHESIS = 1 ] || IGNORE+=(--ignore=tests/test_ops/test_ms_deform_attn_fuzz.py)
  start=$(date +%s)
  "$PY" -m pytest tests/test_ops "${IGNORE[@]}" -q -rs -p no:cacheprovider \
    > "$OUT/test_ops.log" 2>&1
  note "other op tests (CPU kernels, CUDA build): rc=$? in $(( $(date +%s) - start )) s: $(tail -n 1 "$OUT/test_ops.log")"
else
  echo "pytest missing: the other op tests need it" > "$OUT/test_ops.log"
fi

# --- benchmarks ------------------------------------------------------------------------
start=$(date +%s)
"$PY" benchmarks/ms_deform_attn.py --device cuda --dtype float32 float16 bfloat16 \
  > "$OUT/bench.log" 2>&1
note "benchmark: rc=$? in $(( $(date +%s) - start )) s (bench.log)"

"$PY" - > "$OUT/bench_deterministic.log" 2>&1 <<'PY'
"""Default (atomic) against deterministic (fixed-point) backward, encoder N=2 and N=8."""
import torch
from deform_ext.ops import ms_deform_attn

levels = ((100, 167), (50, 84), (25, 42), (13, 21))
shapes = torch.tensor(levels, device='cuda')
sizes = shapes.prod(1)
starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
keys = int(sizes.sum())


def time_ms(fn, repeats=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(repeats)]
    for a, b in events:
        a.record(); fn(); b.record()
    torch.cuda.synchronize()
    return sorted(a.elapsed_time(b) for a, b in events)[repeats // 2]


print(f'{"case":28s} {"default ms":>11s} {"determ. ms":>11s} {"ratio":>6s}')
for bs in (2, 8):
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        value = torch.randn(bs, keys, 8, 32, device='cuda', dtype=dtype)
        loc = torch.rand(bs, keys, 8, 4, 4, 2, device='cuda')
        attn = torch.rand(bs, keys, 8, 4, 4, device='cuda').softmax(-1)
        grad = torch.randn(bs, keys, 256, device='cuda', dtype=dtype)
        back = torch.ops.deform_ext.ms_deform_attn_backward
        times = []
        for det in (False, True):
            torch.use_deterministic_algorithms(det, warn_only=True)
            times.append(time_ms(lambda: back(grad, value, shapes, starts, loc, attn)))
        torch.use_deterministic_algorithms(False)
        fwd = time_ms(lambda: ms_deform_attn(value, shapes, starts, loc, attn))
        print(f'encoder N={bs} {str(dtype)[6:]:9s} bwd {times[0]:11.3f} {times[1]:11.3f} '
              f'{times[1] / times[0]:6.2f}   (forward {fwd:.3f} ms)')
        del value, loc, attn, grad
        torch.cuda.empty_cache()
PY
note "deterministic backward timing: rc=$? (bench_deterministic.log)"
cat "$OUT/bench_deterministic.log" >> "$SUMMARY"
echo "--- done; logs in $OUT"
cat "$SUMMARY"
