#!/usr/bin/env bash
# The GPU checks, for a session lent a CUDA machine (the device tool runs this in one call):
#   bash benchmarks/gpu.sh
# 1. the CUDA tests, none of which may skip (DESCENTLAB_REQUIRE_CUDA=1);
# 2. benchmarks/throughput.py --device cuda (no scaling curve, no first-call rows).
# Under 5 minutes. Writes benchmarks/results/{gpu_cuda.log,throughput_cuda.json,.md}, and
# copies them to $OUT when set (the device tool brings back what is there).
# It runs from the source tree (PYTHONPATH=src) on the machine's own python3 and torch: the
# device machine has no network, so nothing is installed there.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=benchmarks/results
LOG=$RESULTS/gpu_cuda.log
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export DESCENTLAB_KERNEL_CACHE="$(mktemp -d)"
export DESCENTLAB_REQUIRE_CUDA=1
status=0

{
  echo "# benchmarks/gpu.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.is_available() and torch.cuda.get_device_name(0))" 2>&1
} >"$LOG"

echo "## CUDA tests" >>"$LOG"
# the test files that hold CUDA tests; -k cuda selects them
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -k cuda -rs \
  tests/descent/test_descent.py tests/engine/c/test_c_loop.py \
  tests/engine/test_engines_agree.py >>"$LOG" 2>&1 || status=1

echo "## throughput --device cuda" >>"$LOG"
timeout 240 "$PY" benchmarks/throughput.py --device cuda --no-scaling --no-compile-times \
  --reps 3 >>"$LOG" 2>&1 || status=1

echo "## exit status $status" >>"$LOG"
if [ -n "${OUT:-}" ]; then
  cp "$LOG" "$RESULTS"/throughput_cuda.* "$OUT"/ 2>/dev/null
fi
tail -40 "$LOG"
exit $status
