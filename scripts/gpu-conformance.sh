#!/usr/bin/env bash
# CUDA conformance on a GPU machine: the default matrix on ort-cpu and ort-cuda (TF32 off,
# CUDA required), the same with TF32 allowed, and the onnxruntime-CUDA vs torch-CUDA timings.
#
#   bash scripts/gpu-conformance.sh [OUT_DIR] [ORTGPU_PARTS_DIR]
#
# OUT_DIR defaults to docs/conformance/cuda. ORTGPU_PARTS_DIR, if given, holds the parts made
# by ../shared/device/ortgpu-parts.sh (part.*, WHEEL_NAME, SHA256): the onnxruntime-gpu wheel
# is reassembled, checked and installed into /tmp/site first (for machines with no registry).
# Needs: python3 with torch (CUDA build), onnx, numpy, rich, matplotlib, packaging.
set -uo pipefail
out=${1:-docs/conformance/cuda}
parts=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PYTHONUNBUFFERED=1

if [ -n "$parts" ]; then
  (cd "$parts" && cat part.* > "$(cat WHEEL_NAME)" \
     && echo "$(cat SHA256)  $(cat WHEEL_NAME)" | sha256sum -c -) || exit 3
  python3 -m pip install -q --no-deps --no-index --target /tmp/site "$parts/$(cat "$parts/WHEEL_NAME")" || exit 3
  export PYTHONPATH=/tmp/site:$here
else
  export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
fi

python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnxruntime', o.__version__, o.get_available_providers())"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

mkdir -p "$out"
python3 -m conformance run --matrix default --runtimes ort-cpu,ort-cuda --require ort-cuda \
  --report-dir "$out/tf32-off" -j 4 --timeout 300
rc_off=$?
python3 -m conformance run --matrix default --runtimes ort-cuda --allow-tf32 --require ort-cuda \
  --report-dir "$out/tf32-on" -j 4 --timeout 300
rc_on=$?
python3 scripts/gpu_bench.py --device cuda --out "$out/bench.json" --md "$out/bench.md"
rc_bench=$?
echo "exit codes: tf32-off=$rc_off tf32-on=$rc_on bench=$rc_bench"
[ "$rc_off" = 0 ] && [ "$rc_bench" = 0 ]
