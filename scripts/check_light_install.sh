#!/usr/bin/env bash
# The light CPU-only install (README, "A light CPU-only install"), checked from scratch:
#   1. a new virtual environment in a temporary folder;
#   2. a CPU build of torch (default torch==2.13.0; TORCH_SPEC=... for another);
#   3. pip install -e <this checkout>, WITHOUT the pytorch3d extra (PyTorch3D must then be absent);
#   4. resihmr-dr --help, resihmr-dr validate on the built-in sample and a short pytest subset
#      (the start-up, config and validate tests and one SMPL-X fit with the tests' tiny model),
#      each run twice: cold (empty bytecode, Numba and Matplotlib caches) and warm.
# Prints the time of every step and a summary; exits non-zero at the first failure (its log's tail
# shown). The folder is removed at the end unless KEEP=1.
#
#   bash scripts/check_light_install.sh            # PYTHON=python3.11, TORCH_SPEC, KEEP=1, COLD_PIP_CACHE=1
#
# COLD_PIP_CACHE=1 installs with an empty pip cache (every wheel fetched again), for first-install
# timings; otherwise pip's own cache is used. Nothing outside the temporary folder is changed (the
# editable install writes src/resihmr_dr.egg-info in the checkout, which git ignores).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
KEEP=${KEEP:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/resihmr-light-install.XXXXXX")
mkdir -p "$WORK/logs"

cleanup() {
    if [[ "$KEEP" == 1 ]]; then
        echo "kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

SUMMARY=()

# timed NAME COMMAND...: run COMMAND with its output in $WORK/logs/NAME.log; print and record its time.
timed() {
    local name=$1
    shift
    local log="$WORK/logs/$name.log" start end seconds
    start=$(date +%s.%N)
    if ! "$@" >"$log" 2>&1; then
        echo "FAILED: $name ($*); the end of $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    printf '%-34s %8s s\n' "$name" "$seconds"
    SUMMARY+=("$(printf '%-34s %8s s' "$name" "$seconds")")
}

VENV="$WORK/venv"
BIN="$VENV/bin"
if [[ "${COLD_PIP_CACHE:-0}" == 1 ]]; then
    export PIP_CACHE_DIR="$WORK/pip-cache"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "checkout: $REPO"
echo "folder:   $WORK"
echo "python:   $($PYTHON --version 2>&1) ($PYTHON)"

timed "venv" "$PYTHON" -m venv "$VENV"
timed "pip install $TORCH_SPEC" "$BIN/python" -m pip install "$TORCH_SPEC"
timed "pip install -e . (no extras)" "$BIN/python" -m pip install -e "$REPO"

# What was installed: a CPU torch, no PyTorch3D, the package from this checkout.
"$BIN/python" - "$REPO" <<'EOF'
import importlib.util
import sys
from pathlib import Path

import torch

import resihmr_dr

repo = Path(sys.argv[1]).resolve()
where = Path(resihmr_dr.__file__).resolve()
assert where.is_relative_to(repo / "src"), f"resihmr_dr imports from {where}, not from {repo}/src"
assert importlib.util.find_spec("pytorch3d") is None, "pytorch3d is installed: the light install must not pull it in"
assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda})"
print(f"torch {torch.__version__} (CPU build), resihmr_dr {resihmr_dr.__version__} from {where.parent}, no pytorch3d")
EOF
du -sh "$VENV" | awk '{ print "venv size: " $1 }'

# Cold runs start with empty caches for bytecode (every module compiled again), Numba's kernels and
# Matplotlib's fonts; the warm runs reuse what the cold ones wrote.
export PYTHONPYCACHEPREFIX="$WORK/cache/pycache"
export NUMBA_CACHE_DIR="$WORK/cache/numba"
export MPLCONFIGDIR="$WORK/cache/matplotlib"
SAMPLE=$("$BIN/python" -c "from resihmr_dr.data.sample import sample_annotations_path; print(sample_annotations_path())")

timed "pip install pytest" "$BIN/python" -m pip install "pytest>=8"
TESTS=(
    tests/test_cli_startup.py
    tests/test_config.py
    tests/test_validate_checks.py
    tests/test_architecture.py
    "tests/test_outputs_formats.py::test_a_female_smplx_fit_records_its_gender_and_loads_with_it"
)
for run in cold warm; do
    timed "resihmr-dr --help ($run)" "$BIN/resihmr-dr" --help
    timed "resihmr-dr validate ($run)" "$BIN/resihmr-dr" validate --annotations "$SAMPLE"
    timed "pytest subset ($run)" bash -c 'cd "$1" && shift && "$@"' _ "$REPO" \
        "$BIN/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
done
grep -E "^[0-9]+ passed" "$WORK/logs/pytest subset (warm).log" | sed 's/^/pytest subset: /' || true

echo
echo "summary ($(nproc) cores; $($PYTHON --version 2>&1); $TORCH_SPEC; pip cache: ${PIP_CACHE_DIR:-default})"
printf '%s\n' "${SUMMARY[@]}"
