#!/bin/sh
# Runs the Python binding's tests (conformance on CPU and CUDA through torch) on a GPU machine
# that has no SWIG: compiles a wrapper SWIG generated elsewhere against that machine's Python.
# (The wheel route, bindings/python/gpu-wheel.sh, needs no pre-generated wrapper.)
# Usage: [MOE_WHEELHOUSE=DIR] bindings/python/gpu-check.sh WRAPDIR [BUILD_DIR]
#   WRAPDIR holds core_wrap.c (or corePYTHON_wrap.c) and core.py (a build's bindings/python/wrap and
#   bindings/python/moe_trtllm); BUILD_DIR (default build-gpu) is configured with CUDA on.
set -eu
cd "$(dirname "$0")/../.."
wrap=$1
build=${2:-build-gpu}
export PATH="/usr/local/cuda/bin:$PATH"
if [ ! -f "$build/libmoe_trtllm.so" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
    -DMOE_BUILD_BINDINGS=OFF -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_BENCH=OFF >/dev/null
  cmake --build "$build" -j "$(nproc)"
fi
build=$(cd "$build" && pwd)
py=${PYTHON:-python3}
pkg=$(mktemp -d)/moe_trtllm
mkdir -p "$pkg"
cp bindings/python/moe_trtllm/*.py "$wrap/core.py" "$pkg/"
inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
ext=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
src="$wrap/core_wrap.c"
[ -f "$src" ] || src="$wrap/corePYTHON_wrap.c"   # the name UseSWIG gives it
cc -O2 -shared -fPIC -I"$inc" -Iinclude -Ibindings/swig "$src" \
  -L"$build" -lmoe_trtllm -Wl,-rpath,"$build" -o "$pkg/_core$ext"
# ml_dtypes and pytest from a wheelhouse (bindings/python/wheelhouse.sh) when the machine lacks them.
site=$(dirname "$pkg")
if [ -n "${MOE_WHEELHOUSE:-}" ] && ! "$py" -c "import ml_dtypes, pytest" 2>/dev/null; then
  mld=ml_dtypes  # the newest needs numpy >= 2
  "$py" -c "import numpy, sys; sys.exit(int(numpy.__version__.split('.')[0]) < 2)" || mld="ml_dtypes<0.6"
  "$py" -m pip install -q --no-index --find-links "$MOE_WHEELHOUSE" --target "$site/deps" \
    --no-deps "$mld" pytest pluggy iniconfig packaging pygments exceptiongroup tomli
  site="$site:$site/deps"
fi
PYTHONPATH=$site MOE_REQUIRE_TORCH=${MOE_REQUIRE_TORCH:-1} "$py" -m pytest -q -p no:cacheprovider \
  bindings/python/tests -rs
