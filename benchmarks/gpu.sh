#!/usr/bin/env bash
# One call on a GPU machine: check advaug on the device and measure it (at most 8 minutes).
#
#   bash benchmarks/gpu.sh              # writes benchmarks/results/gpu-<card>-<date>.json
#   bash benchmarks/gpu.sh --tiny       # the same on a CPU with tiny sizes (seconds)
#
# Uses the machine's own python3 and PyTorch (2.11+) with this checkout on PYTHONPATH; nothing
# is installed or downloaded. Extra arguments go to benchmarks/gpu_bench.py (see its --help).
# Exit code: 0 when every check passed, 1 when a check failed, 2 when there is no GPU (and no
# --tiny), 124 when the 8-minute limit cut the run short.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/advaug-inductor}"

echo "== $(date -u +%FT%TZ) advaug gpu.sh on $(hostname)"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader \
        || true
fi
"$PY" - <<'EOF' || { echo "gpu.sh: $PY cannot import torch" >&2; exit 2; }
import importlib.util, torch
have = {m: importlib.util.find_spec(m) is not None
        for m in ("numpy", "yaml", "tqdm", "tensorboard", "safetensors")}
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, "
      f"gpu {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}; "
      f"packages {have}")
EOF

# 470 s for the Python part leaves room for the checks above inside 8 minutes.
timeout --signal=TERM --kill-after=10 470 "$PY" benchmarks/gpu_bench.py "$@"
code=$?
[ "$code" -eq 124 ] && echo "gpu.sh: stopped at the 8-minute limit" >&2
exit "$code"
