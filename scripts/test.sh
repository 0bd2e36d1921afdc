#!/usr/bin/env bash
# The whole test suite: builds the library (with every CUDA kernel when nvcc is present),
# the C tests and every binding whose toolchain is installed, runs them all through ctest,
# then rebuilds the C tests with AddressSanitizer + UBSan and runs them again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
source scripts/env.sh
# ---- Python (issue 22): a fresh virtual environment with pytest, numpy, ml_dtypes and torch
# from PyPI (bindings/python/venv.sh); the build below tests the binding with its python.
MOE_PYTHON=$(bash bindings/python/venv.sh build-venv)
# ----
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$MOE_PYTHON"
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"
# ---- Python wheel (issue 22): pip install . into that environment (CPU-only), its tests run
# against the installed package, pip install bindings/python, CMake's reasons.
bash bindings/python/test-wheel.sh build-venv
# ----
# Sanitizer build of the C library and tests (CPU backend; the CUDA kernels are compiled and
# tested in the build above).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMOE_WITH_CUDA=OFF \
      -DMOE_BUILD_BINDINGS=OFF -DMOE_BUILD_BENCH=OFF -DMOE_SANITIZE=ON
cmake --build build-asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS"
# ---- hardening (issue 23) ------------------------------------------------------------------
# The misuse tests under clang ASan + UBSan (it reports NULL-pointer arithmetic and INT64_MIN
# negation, which gcc's misses), the C API fuzzer for 60 s (libFuzzer, one worker), and the
# 8-thread test under ThreadSanitizer (its own CPU-only build dir, just that test).
bash scripts/clang-sanitize-tests.sh
bash scripts/fuzz.sh 60
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_WITH_CUDA=OFF \
      -DMOE_BUILD_BINDINGS=OFF -DMOE_BUILD_BENCH=OFF \
      "-DCMAKE_C_FLAGS=-fsanitize=thread -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread
cmake --build build-tsan -j "$JOBS" --target test_threads
TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_threads
# ---- end hardening ---------------------------------------------------------------------------
