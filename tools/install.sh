#!/usr/bin/env bash
# Idempotent set-up of the environment that `make demo` and `make test` use.
#
#   PYTHON=/path/to/python tools/install.sh   use that interpreter (e.g. one with a
#                                            CUDA torch) instead of creating .venv
#   TORCH_SPEC="torch==2.13.0"                what to install when torch is missing
#
# A stamp keyed by the requirement files, setup.py and the C++/CUDA sources makes a
# second run with nothing changed return in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
MMCV_VERSION=2.1.0

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[install] error:\033[0m %s\n' "$*" >&2; exit 1; }

if [[ -n "${PYTHON:-}" && "$PYTHON" != "$VENV/bin/python" ]]; then
  PY=$PYTHON
  say "using the given interpreter $PY (no virtual environment)"
else
  PY=$VENV/bin/python
  if [[ ! -x $PY ]]; then
    BASE=$(command -v python3.11 || command -v python3) || die "no python3 found"
    say "creating virtual environment $VENV with $BASE"
    "$BASE" -m venv "$VENV"
  fi
fi
PIP=("$PY" -m pip --disable-pip-version-check)

STAMP_DIR=$(dirname "$PY")/..
STAMP=$STAMP_DIR/.deform_ext-install-stamp
fingerprint() {
  {
    "$PY" -c 'import sys; print(sys.version)'
    cat requirements/*.txt setup.py
    find deform_ext -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' | sort | xargs -r cat
  } | sha256sum | cut -d' ' -f1
}
FP=$(fingerprint)
if [[ -f $STAMP && $(cat "$STAMP") == "$FP" ]] && "$PY" -c 'import mmcv.ops, mmdet, deform_ext' 2>/dev/null; then
  say "environment up to date ($PY)"
  exit 0
fi

say "build tools (setuptools 80.9.0, wheel, ninja)"
"${PIP[@]}" install -q -r requirements/build.txt

if ! "$PY" -c 'import torch' 2>/dev/null; then
  say "installing $TORCH_SPEC (CPU wheel from local disk here; ~1 min)"
  "${PIP[@]}" install -q "$TORCH_SPEC"
fi
TORCH_KEY=$("$PY" -c 'import sys, torch; v=sys.version_info; print(f"cp{v.major}{v.minor}-torch{torch.__version__}".replace("+", "_"))')
say "torch: $TORCH_KEY"

# mmcv: no wheel for this torch exists on the registry, so build one with its ops
# and keep it in a cache keyed by Python, torch and CUDA version (pip's own wheel
# cache is keyed by the sdist alone and would hand back an ABI-incompatible build).
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  PIP_CACHE=$("${PIP[@]}" cache dir 2>/dev/null || echo "$HOME/.cache/pip")
  WHEEL_DIR=${MMCV_WHEEL_CACHE:-$PIP_CACHE/deform_ext-mmcv/$TORCH_KEY}
  mkdir -p "$WHEEL_DIR"
  WHEEL=$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
  if [[ -z $WHEEL ]]; then
    say "building mmcv $MMCV_VERSION with compiled ops from its sdist (about 10 min on 2 cores)"
    TMP=$(mktemp -d)
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" wheel -q --no-deps \
      --no-build-isolation --no-cache-dir --no-binary mmcv -w "$TMP" "mmcv==$MMCV_VERSION" \
      || die "building mmcv $MMCV_VERSION failed (see the compiler output above)"
    mv "$TMP"/mmcv-*.whl "$WHEEL_DIR"/ && rm -rf "$TMP"
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-*.whl | head -1)
  else
    say "using cached mmcv wheel $WHEEL"
  fi
  "${PIP[@]}" install -q "$WHEEL"
fi

say "mmengine, mmdet, pycocotools and test tools"
"${PIP[@]}" install -q -r requirements/runtime.txt -r requirements/tests.txt

"$PY" -c 'import mmcv.ops' 2>/dev/null || die "mmcv is installed but 'import mmcv.ops' fails: its compiled ops are missing or built against another torch. Delete the cached wheel under \$(pip cache dir)/deform_ext-mmcv and rerun."

if [[ -f setup.py ]]; then
  say "deform_ext (editable; compiles the C++ op, ~1 min)"
  "${PIP[@]}" install -q --no-build-isolation --use-pep517 --no-deps -e . \
    || die "building deform_ext failed (see the compiler output above)"
fi
echo "$FP" > "$STAMP"
say "done: $("$PY" -c 'import torch, mmcv, mmdet, mmengine; print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}")')"
