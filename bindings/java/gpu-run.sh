#!/bin/sh
# Runs the Java binding's tests, GPU conformance variant included, on a GPU machine without a
# JVM or SWIG, from the folder .jre/ that bindings/java/gpu-prep.sh made elsewhere (carry it).
# Builds the CUDA library when BUILD_DIR has none, compiles the carried SWIG JNI source against
# it with the C compiler, and runs JUnit with the carried runtime. -Dmoetrtllm.requireGpu=true:
# a missing device or CUDA runtime fails instead of skipping.
#
# Usage (repository root): bindings/java/gpu-run.sh [BUILD_DIR]   (default build)
# Writes the full JUnit tree to $OUT/java-gpu.log when $OUT is set, else .jre/java-gpu.log.
set -eu
cd "$(dirname "$0")/../.."
j=.jre
build=${1:-build}
[ -x "$j/jre/bin/java" ] || { echo "gpu-run: no $j/jre: run bindings/java/gpu-prep.sh first" >&2; exit 2; }
if [ ! -f "$build/libmoe_trtllm.so" ]; then
  gen=""
  command -v ninja >/dev/null 2>&1 && gen="-G Ninja"
  cmake -S . -B "$build" $gen -DCMAKE_BUILD_TYPE=Release -DMOE_BUILD_BINDINGS=OFF \
        -DMOE_BUILD_BENCH=OFF
  cmake --build "$build" --target moe_trtllm -j "$(nproc)"
fi
lib=$(cd "$build" && pwd)
${CC:-cc} -shared -fPIC -O2 -I"$j/include" -I"$j/include/linux" -Iinclude -Ibindings/swig \
  "$j/src/moe_trtllm_jniJAVA_wrap.c" -L"$lib" -lmoe_trtllm -ldl -lpthread \
  -Wl,-rpath,"$lib" -o "$j/libmoe_trtllm_jni.so"
log=${OUT:-$j}/java-gpu.log
set +e
LD_LIBRARY_PATH="$lib:$PWD/$j/lib-extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$j/jre/bin/java" -Djava.library.path="$j" -Dmoetrtllm.requireGpu=true \
  -Dmoetrtllm.cases="$PWD/tests/conformance/cases.txt" \
  -jar "$j/junit-platform-console-standalone.jar" --disable-banner --disable-ansi-colors \
  --details=tree --fail-if-no-tests -cp "$j/classes:$j/test-classes" \
  --select-package io.moetrtllm >"$log" 2>&1
rc=$?
set -e
echo "gpu-run: GPU conformance cases passed: $(grep -c 'gpu:.*✔' "$log"), failed: $(grep -c 'gpu:.*✘' "$log")"
grep -E "CudaRuntime:|SKIP|✘" "$log" | head -40 || true
tail -15 "$log"
echo "gpu-run: full log in $log (exit $rc)"
exit $rc
