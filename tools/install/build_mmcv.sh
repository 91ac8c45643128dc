#!/usr/bin/env bash
# Build and install mmcv 2.1.0 with its C++ ops for the torch in the venv.
#
# mmcv 2.1.0 has no wheels on PyPI, and its setup.py compiles with -std=c++17,
# while the headers of torch >= 2.10 need C++20. We build the sdist with the
# standard raised to C++20 and keep the wheel in a cache keyed by the torch
# version, so a second `make install` takes seconds.
#
# Usage: tools/install/build_mmcv.sh PYTHON
set -euo pipefail
PY=${1:?usage: build_mmcv.sh PYTHON}
VERSION=2.1.0
TORCH=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
CACHE=${MMKD_WHEEL_CACHE:-$HOME/.cache/mmkd/wheels}/torch-$TORCH
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/mmcv-$VERSION-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download --no-deps --no-binary :all: "mmcv==$VERSION" -d "$work"
  tar -xzf "$work/mmcv-$VERSION.tar.gz" -C "$work"
  sed -i 's/-std=c++1[47]/-std=c++20/g' "$work/mmcv-$VERSION/setup.py"
  echo "compiling mmcv $VERSION ops for torch $TORCH (8-9 minutes on 2 cores) ..."
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${JOBS:-$(nproc)} \
    "$PY" -m pip wheel --no-build-isolation --no-deps -w "$CACHE" "$work/mmcv-$VERSION"
  wheel=$(ls "$CACHE"/mmcv-$VERSION-*.whl | head -n 1)
fi
# Dependencies come with requirements/openmmlab.txt, which pins them.
"$PY" -m pip install --no-deps "$wheel"
