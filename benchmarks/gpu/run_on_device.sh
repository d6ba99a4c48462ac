#!/usr/bin/env bash
# The one command a session with a GPU runs on the device machine, from the repository root:
#     bash benchmarks/gpu/run_on_device.sh        (with benchmarks/gpu/wheels carried)
# Installs the carried wheels, checks KeOps on CUDA, runs the GPU tests, the operator benchmark on
# cuda and then the CPU operator tests, each under its own time limit so that the whole call fits
# in the machine's 600 s per command. Everything it produces goes under $OUT (default ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
SIZES="${GDL_BENCH_SIZES:-10000,100000,1000000}"
export KEOPS_CACHE_FOLDER="${KEOPS_CACHE_FOLDER:-$PWD/.keops-cache-gpu}"
export GDL_CACHE_DIR="$OUT/gdl-cache"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
DEADLINE=$(( $(date +%s) + ${GDL_TOTAL_S:-570} ))  # the machine stops a command at 600 s
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/steps.log"; }
phase() {  # phase NAME SECONDS COMMAND...: run with a time limit, keep its output and exit status
    local name=$1 limit=$2 left=$(( DEADLINE - $(date +%s) - 10 ))
    shift 2
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 0 ]; then log "$name skipped: no time left"; return 0; fi
    log "$name (limit ${limit}s): $*"
    timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    log "$name finished with status $status"
    tail -n 25 "$OUT/$name.log"
    return 0
}

log "machine"
{ nvidia-smi; "$PYTHON" --version; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"; } \
    >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

log "install the carried wheels (no dependencies resolved, nothing downloaded)"
wheels=(benchmarks/gpu/wheels/*.whl)
if [ ! -e "${wheels[0]}" ]; then
    log "no wheels under benchmarks/gpu/wheels: build them with benchmarks/gpu/build_wheels.sh and carry them"
    exit 2
fi
"$PYTHON" -m pip install --no-deps --no-index --disable-pip-version-check "${wheels[@]}" >"$OUT/install.log" 2>&1 \
    || "$PYTHON" -m pip install --no-deps --no-index --break-system-packages "${wheels[@]}" >>"$OUT/install.log" 2>&1
"$PYTHON" -m pip install --no-deps --no-index --no-build-isolation -e . >>"$OUT/install.log" 2>&1 \
    || log "gdl not installed as a package (setuptools missing?): using PYTHONPATH"
tail -n 3 "$OUT/install.log"

phase keops_probe 120 "$PYTHON" -c "
import gdl.ops, torch
print('operators:', gdl.ops.available())
for device in ('cuda', 'cpu'):
    print(device, gdl.ops.keops_status(device))
"
phase gpu_tests "${GDL_GPU_TESTS_S:-180}" "$PYTHON" -m pytest tests/gpu -q -rs --junitxml="$OUT/gpu_tests.xml"
phase knn_grid "${GDL_KNN_GRID_S:-90}" "$PYTHON" benchmarks/gpu/knn_grid_sweep.py --device cuda --sizes "$SIZES" \
    --json "$OUT/knn_grid_sweep.json"
if [ -f benchmarks/ops.py ]; then
    phase benchmark "${GDL_BENCH_S:-200}" "$PYTHON" benchmarks/ops.py --device cuda --sizes "$SIZES"
    cp -r benchmarks/results "$OUT/benchmark_results" 2>/dev/null
fi
phase ops_tests "${GDL_OPS_TESTS_S:-120}" "$PYTHON" -m pytest tests/ops -q -rs --junitxml="$OUT/ops_tests.xml"
log "done; results under $OUT"
