#!/usr/bin/env bash
# Like ../shared/device/ortgpu-parts.sh, in fewer parts: the onnxruntime-gpu wheel's files are
# re-packed as one tar.xz (194 MiB instead of 244 MiB for 1.31.1) and split into 4 git-ignored
# folders .ortgpu1 .. .ortgpu4 of about 49 MiB, so a GPU machine with no package registry
# receives it in 4 calls of at most 64 MiB instead of 6. gpu-conformance.sh unpacks either form.
# Usage, in the repo root:  bash scripts/ortgpu-xz-parts.sh [VERSION]   (default 1.31.1)
set -euo pipefail
ver=${1:-1.31.1}
grep -qxF '/.ortgpu*/' .git/info/exclude 2>/dev/null || echo '/.ortgpu*/' >> .git/info/exclude
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp" "onnxruntime-gpu==$ver"
mkdir "$tmp/x"
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$tmp"/*.whl "$tmp/x"
name="onnxruntime_gpu-$ver.tar.xz"
(cd "$tmp/x" && tar cf - . | xz -9 -T0 > "$tmp/$name")
rm -rf .ortgpu*/
split -n 4 -d -a 2 "$tmp/$name" "$tmp/part."
i=1
for p in "$tmp"/part.*; do mkdir -p ".ortgpu$i"; mv "$p" ".ortgpu$i/"; i=$((i + 1)); done
echo "$name" > .ortgpu1/ARCHIVE
sha256sum "$tmp/$name" | cut -d' ' -f1 > .ortgpu1/SHA256
echo "parts ready: $(ls -d .ortgpu*/ | tr '\n' ' ')"
