#!/usr/bin/env bash
# Builds here (nvcc compiles sm_90a without a GPU) everything a GPU call needs, so the GPU
# machine spends its time on tests and timings, not on nvcc (a full CUDA build there is about
# 140 s of device time). Writes the ignored folder .gpubuild/ (about 20 MiB: under the device
# tool's 64 MiB carry limit) holding, the builds packed in builds.tar.xz,
#   build-gpu/   the CUDA build's library, test and bench programs and CTest files (built in
#                build-gpu/ here; no bindings; no NCCL transport, since the GPU machine has no
#                NCCL library where this machine's build would look for it)
#   build-base/  with BASE_SRC=<a source tree of the baseline>: its library and moe-bench, for
#                `scripts/gpu-check.sh ab`
#   pywrap/      the SWIG-generated Python wrapper (core_wrap.c, core.py) from build/, for
#                bindings/python/gpu-check.sh (the GPU machine has no SWIG)
#   whl/         the wheelhouse of bindings/python/wheelhouse.sh (ml_dtypes, pytest)
# Carry .gpubuild, then on the GPU machine: `bash scripts/gpu-check.sh [mode]` finds it and
# uses it (PREBUILT). CTest files hold absolute paths: build the bundle in a checkout at the
# same path as the GPU machine's copy of the repository.
# Usage: [BASE_SRC=DIR | BASE_DIR=DIR] bash scripts/gpu-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
jobs=${JOBS:-$(nproc)}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
  -DMOE_BUILD_BINDINGS=OFF -DMOE_ENABLE_NCCL=OFF >/dev/null
cmake --build build-gpu -j "$jobs"
out=.gpubuild
rm -rf "$out"
mkdir -p "$out/build-gpu"
# programs and CTest files only (no object files)
(cd build-gpu && find . -path '*/CMakeFiles' -prune -o \
  \( -name 'CTestTestfile.cmake' -o -name 'libmoe_trtllm.so*' -o -type f -perm -u+x \) -print |
  grep -v -e '/test_ep_nccl$' | tar cf - -T - | tar xf - -C "../$out/build-gpu")
if [ -n "${BASE_SRC:-}" ]; then
  cmake -S "$BASE_SRC" -B build-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
    -DMOE_BUILD_BINDINGS=OFF -DMOE_BUILD_TESTS=OFF >/dev/null
  cmake --build build-base -j "$jobs"
  mkdir -p "$out/build-base/bench"
  cp -a build-base/libmoe_trtllm.so* "$out/build-base/"
  cp -a build-base/bench/moe-bench "$out/build-base/bench/"
fi
# BASE_DIR=DIR instead: a baseline already built (its libmoe_trtllm.so* and bench/moe-bench, e.g.
# an earlier build-gpu/ saved before a change), copied as build-base/. A moe-bench linked in
# build-gpu/ finds its library by RUNPATH there, so DIR's bench/moe-bench should be a wrapper
# that sets LD_LIBRARY_PATH to DIR (which the loader searches before RUNPATH).
if [ -n "${BASE_DIR:-}" ]; then
  mkdir -p "$out/build-base"
  cp -a "$BASE_DIR"/. "$out/build-base/"
fi
# MOE_BUNDLE_NCCL=1: build-nccl/, the library with moe_ep's NCCL transport (linked against the
# CUDA toolkit's libnccl.so.2, or MOE_NCCL_ROOT's) and test_ep_nccl / moe-ep-bench, for
# `scripts/gpu-check.sh ep` (which points the loader at the GPU machine's NCCL).
if [ "${MOE_BUNDLE_NCCL:-0}" = 1 ]; then
  cmake -S . -B build-nccl -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
    -DMOE_BUILD_BINDINGS=OFF -DMOE_ENABLE_NCCL=ON \
    -DMOE_NCCL_ROOT="${MOE_NCCL_ROOT:-/usr/local/cuda}" >/dev/null
  cmake --build build-nccl -j "$jobs" --target moe_trtllm test_ep_nccl moe-ep-bench
  mkdir -p "$out/build-nccl/tests" "$out/build-nccl/bench"
  cp -a build-nccl/libmoe_trtllm.so* "$out/build-nccl/"
  cp -a build-nccl/tests/test_ep_nccl "$out/build-nccl/tests/"
  cp -a build-nccl/bench/moe-ep-bench "$out/build-nccl/bench/"
fi
# The Python wrapper SWIG generates in a CPU build with bindings (build/, scripts/test.sh's).
if [ -f build/CMakeCache.txt ] && ninja -C build bindings/python/wrap/corePYTHON_wrap.c >/dev/null
then
  mkdir -p "$out/pywrap"
  cp build/bindings/python/wrap/corePYTHON_wrap.c "$out/pywrap/core_wrap.c"
  cp build/bindings/python/moe_trtllm/core.py "$out/pywrap/core.py"
else
  echo "gpu-bundle: no build/ with the Python binding: no pywrap/ (run scripts/test.sh once)" >&2
fi
bash bindings/python/wheelhouse.sh "$out/whl" >/dev/null || echo "gpu-bundle: no wheelhouse" >&2
# Only the GPU machine's CPython's binary wheels (3.12 there; MOE_GPU_PY_TAG overrides): the
# wheelhouse holds four versions, and the bundle must stay under the carry limit.
tag=${MOE_GPU_PY_TAG:-cp312}
find "$out/whl" -name '*-cp3*-*.whl' ! -name "*-$tag-*" -delete 2>/dev/null || true
# The builds compress about 5x (mostly sm_90a cubins): one xz archive keeps the bundle far under
# the carry limit; scripts/gpu-check.sh unpacks it.
builds=$(cd "$out" && ls -d build-* 2>/dev/null || true)
if [ -n "$builds" ]; then
  (cd "$out" && tar cf - $builds | xz -T0 -6 >builds.tar.xz && rm -rf $builds)
fi
du -sh "$out"
