#!/bin/sh
# On a GPU machine with no network and no SWIG: `pip install .` with the CUDA backend, build
# requirements from a wheelhouse made elsewhere (bindings/python/wheelhouse.sh), into a virtual
# environment that sees the machine's torch and numpy; then the binding's tests against the
# installed wheel (conformance on CUDA, the torch ops with torch.compile and CUDA graphs).
# Usage: bindings/python/gpu-wheel.sh WHEELHOUSE [VENV]   (PYTHON picks the interpreter)
set -eu
cd "$(dirname "$0")/../.."
root=$PWD
wh=$(cd "$1" && pwd)
venv=${2:-/tmp/moe-trtllm-venv}
py=${PYTHON:-python3}
export PATH="/usr/local/cuda/bin:$PATH"
# --without-pip: no ensurepip needed; the system's pip is visible through the site packages.
"$py" -m venv --clear --without-pip --system-site-packages "$venv"
vpy=$venv/bin/python
"$vpy" -m pip install -q --no-index --find-links "$wh" ml_dtypes pytest
# SKBUILD_BUILD_DIR keeps the CMake build (ignored build-* folder): a rerun after a timeout
# compiles only what is left.
CMAKE_ARGS="${CMAKE_ARGS:-} -DMOE_WITH_CUDA=${MOE_WHEEL_CUDA:-ON}" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
  SKBUILD_BUILD_DIR="${MOE_WHEEL_BUILD_DIR:-$root/build-wheel-gpu}" \
  "$vpy" -m pip install -q --no-index --find-links "$wh" .
cd /tmp
"$vpy" -c "import moe_trtllm as m; print('moe_trtllm', m.__version__, m.__file__, 'cuda devices:', m.cuda_device_count())"
MOE_REQUIRE_TORCH=${MOE_REQUIRE_TORCH:-1} "$vpy" -m pytest -q -p no:cacheprovider -rs "$root/bindings/python/tests"
