#!/usr/bin/env bash
# CUDA conformance on a GPU machine: the default matrix on ort-cpu and ort-cuda (TF32 off,
# CUDA required), the same with TF32 allowed, targeted checks (scripts/gpu_checks.py) and the
# onnxruntime-CUDA vs torch-CUDA timings for both lowerings (scripts/gpu_bench.py).
#
#   bash scripts/gpu-conformance.sh [OUT_DIR] [ORTGPU_PARTS_DIR]
#
# OUT_DIR defaults to docs/conformance/cuda. ORTGPU_PARTS_DIR, if given, holds the parts of
# onnxruntime-gpu for a machine with no package registry: either the wheel's parts made by
# ../shared/device/ortgpu-parts.sh (part.*, WHEEL_NAME, SHA256) or the smaller tar.xz parts
# made by scripts/ortgpu-xz-parts.sh (part.*, ARCHIVE, SHA256). They are reassembled, checked
# and installed into /tmp/site, which goes first on PYTHONPATH.
# MATRIX (default "default") and JOBS (default 6) may be set in the environment.
# Needs: python3 with torch (CUDA build), onnx, numpy, rich, matplotlib, packaging.
set -uo pipefail
out=${1:-docs/conformance/cuda}
parts=${2:-}
matrix=${MATRIX:-default}
jobs=${JOBS:-6}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PYTHONUNBUFFERED=1

if [ -n "$parts" ]; then
  if [ -f "$parts/WHEEL_NAME" ]; then file=$(cat "$parts/WHEEL_NAME"); else file=$(cat "$parts/ARCHIVE"); fi
  (cd "$parts" && cat part.* > "$file" && echo "$(cat SHA256)  $file" | sha256sum -c -) || exit 3
  if [ -f "$parts/WHEEL_NAME" ]; then
    python3 -m pip install -q --no-deps --no-index --target /tmp/site "$parts/$file" || exit 3
  else
    mkdir -p /tmp/site
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
      "$parts/$file" /tmp/site || exit 3
  fi
  export PYTHONPATH=/tmp/site:$here
else
  export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
fi

python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnxruntime', o.__version__, o.__file__, o.get_available_providers())"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

mkdir -p "$out"
SECONDS=0
python3 -m conformance run --matrix "$matrix" --runtimes ort-cpu,ort-cuda --require ort-cuda \
  --report-dir "$out/tf32-off" -j "$jobs" --timeout 300 --no-heatmap
rc_off=$?
echo "tf32-off: exit $rc_off after ${SECONDS}s"
python3 -m conformance run --matrix "$matrix" --runtimes ort-cuda --allow-tf32 --require ort-cuda \
  --report-dir "$out/tf32-on" -j "$jobs" --timeout 300 --no-heatmap
rc_on=$?
echo "tf32-on: exit $rc_on after ${SECONDS}s"
python3 scripts/gpu_checks.py --providers cpu,cuda --out "$out/checks.json"
rc_checks=$?
python3 scripts/gpu_bench.py --device cuda --quick --repeats 20 --out "$out/bench.json" --md "$out/bench.md"
rc_bench=$?
echo "exit codes: tf32-off=$rc_off tf32-on=$rc_on checks=$rc_checks bench=$rc_bench after ${SECONDS}s"
[ "$rc_off" = 0 ] && [ "$rc_on" = 0 ] && [ "$rc_checks" = 0 ] && [ "$rc_bench" = 0 ]
