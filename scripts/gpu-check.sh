#!/usr/bin/env bash
# The GPU machine's checks, one mode per device call (each fits the device tool's 600 s per call
# on an H100 when the builds come from a carried .gpubuild/ of scripts/gpu-bundle.sh): build
# (CUDA on) unless carried, then
#   tests:    ctest without its two long suites, test_fp8 (every FP8 config) split over
#             parallel processes (MOE_TEST_GPU_SHARD: its CPU oracle per config dominates), the
#             Python binding on the GPU (a bundle's SWIG wrapper), test_large_t (every preset at
#             T = 65536 and beyond);
#   sanitize: compute-sanitizer memcheck on the GPU tests (its steps side by side) and racecheck
#             on the routing and GEMM kernels (one step at a time; RACECHECK_STEPS picks some);
#   bench:    the benchmarks and the PyTorch comparison;
#   ab:       a same-run A/B of the whole moe-bench table against BASE_SRC (a source tree of the
#             baseline, built into build-base, or a bundle's build-base) with bench/ab.py;
#   ep:       moe_ep over NCCL with a one-rank communicator (a bundle's build-nccl);
#   full:     tests, sanitize and bench in one run (four calls' worth of device time or more).
# Usage: scripts/gpu-check.sh [tests|sanitize|bench|ab|ep|full]
# SANITIZERS=all|memcheck|racecheck picks the sanitize steps (default all).
# Writes logs to $OUT (or ./gpu-out) for fetching, and prints a short table last.
# Every step runs under `timeout $STEP_TIMEOUT` (default 300 s): a hung kernel costs one step,
# not the whole device call. PREBUILT=1 skips configure + build and uses a build-gpu/ made on
# the development machine (same repo path; carry it with the call): no device time on nvcc.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"
MODE="${1:-full}"
summary=()
STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
step() { # name, command...
  local name="$1"; shift
  local t0=$(date +%s)
  if timeout "$STEP_TIMEOUT" "$@" >"$OUT/$name.log" 2>&1; then r=PASS; else r="FAIL($?)"; fi
  summary+=("$(printf '%-28s %-9s %4ss' "$name" "$r" $(( $(date +%s) - t0 )))")
  tail -n 25 "$OUT/$name.log"
}
# pstep name command...: a step in the background; pwait waits for them all and records them.
# For steps that mostly use the CPU (oracles) or cannot fill the GPU alone (sanitizers).
pjobs=()
pstep() {
  local name="$1"; shift
  ( t0=$(date +%s)
    if timeout "$STEP_TIMEOUT" "$@" >"$OUT/$name.log" 2>&1; then r=PASS; else r="FAIL($?)"; fi
    printf '%-28s %-9s %4ss' "$name" "$r" $(( $(date +%s) - t0 )) >"$OUT/$name.rc" ) &
  pjobs+=("$name")
}
pwait() {
  wait
  local n
  for n in "${pjobs[@]}"; do
    summary+=("$(cat "$OUT/$n.rc")")
    rm -f "$OUT/$n.rc"
    tail -n 8 "$OUT/$n.log"
  done
  pjobs=()
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
# A bundle made by scripts/gpu-bundle.sh (carried .gpubuild/): its builds replace building here.
if [ -f .gpubuild/builds.tar.xz ]; then
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    .gpubuild/builds.tar.xz .gpubuild && rm -f .gpubuild/builds.tar.xz
fi
if [ -d .gpubuild/build-gpu ]; then
  rm -rf build-gpu && mv .gpubuild/build-gpu build-gpu
  PREBUILT=1
fi
if [ -d .gpubuild/build-base ]; then rm -rf build-base && mv .gpubuild/build-base build-base; fi
if [ "${PREBUILT:-0}" != 1 ]; then
  step configure cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
       -DMOE_BUILD_BINDINGS=OFF
  step build cmake --build build-gpu -j 16
fi
if [ "$MODE" = full ] || [ "$MODE" = tests ]; then
# A carried build's install_package, readme_c_example and bench_* tests run this machine's cmake
# or compiler (their paths are not on the device); all are CPU-side checks that scripts/test.sh
# and CI run, so skip them there. test_fp8 and test_large_t run below.
ctest_skip='test_fp8|test_large_t'
[ "${PREBUILT:-0}" = 1 ] && ctest_skip="$ctest_skip|install_package|readme_c_example|^bench_"
step ctest ctest --test-dir build-gpu --output-on-failure -j 8 -E "$ctest_skip"
# test_fp8: every config of both FP8 catalogues against the CPU backend and float64 (about 440 s
# in one process on an H100, nearly all of it the CPU oracle per config), in 8 processes.
for i in 0 1 2 3 4 5 6 7; do
  pstep "test_fp8_$i" env MOE_TEST_GPU_SHARD="$i/8" build-gpu/tests/test_fp8
done
# The Python binding on the GPU (torch tensors, the torch ops with torch.compile and CUDA graph
# capture, the conformance cases on CUDA) from a bundle's SWIG wrapper and wheelhouse.
if [ -f .gpubuild/pywrap/core_wrap.c ]; then
  PYTEST_ADDOPTS="-rfs --tb=short" MOE_WHEELHOUSE=.gpubuild/whl \
    pstep python_gpu sh bindings/python/gpu-check.sh .gpubuild/pywrap build-gpu
fi
pwait
# every preset at T = 65536 and beyond in BF16, FP8 and MXFP4 W4A16 (about 220 s on an H100;
# alone: its runs fill the card's memory)
step large_t build-gpu/tests/test_large_t
fi
if [ "$MODE" = full ] || [ "$MODE" = sanitize ]; then
san=(compute-sanitizer --error-exitcode 9 --tool)
SANITIZERS="${SANITIZERS:-all}"
if [ "$SANITIZERS" = all ] || [ "$SANITIZERS" = memcheck ]; then
pstep memcheck_conformance "${san[@]}" memcheck build-gpu/tests/run_cases
pstep memcheck_moe "${san[@]}" memcheck build-gpu/tests/test_moe
# the FP8 kernels: per-tensor C = 1 / 4, the persistent GEMM2 (t192), block C = 1 / 2
MOE_TEST_GPU_CONFIGS=sm90_fp8pt_t16_c1_m128_s12,sm90_fp8pt_t64_c4_m128_s12,sm90_fp8pt_t192_c1_m256_s4,sm90_fp8blk_t8_c1_m256_s6,sm90_fp8blk_t64_c2_m256_s6 \
  pstep memcheck_fp8 "${san[@]}" memcheck build-gpu/tests/test_fp8
# the MXFP4 W4A16 kernels on test_mxfp4's eleven GPU cases (gpt-oss's 2880 included): a decode, a
# prefill and a C = 4 config, so the step stays within STEP_TIMEOUT (test_mxfp4 fails on a name
# that is not in the catalogue)
MOE_TEST_GPU_CONFIGS=sm90_w4a16_t8_c1_m64_s16,sm90_w4a16_t128_c1_m128_s8,sm90_w4a16_t256_c4_m128_s10 \
  pstep memcheck_mxfp4 "${san[@]}" memcheck build-gpu/tests/test_mxfp4
[ -x build-gpu/tests/test_gpu_errors ] && pstep memcheck_gpu_errors "${san[@]}" memcheck build-gpu/tests/test_gpu_errors
MOE_TEST_GPU_CASES=7 pstep memcheck_routing "${san[@]}" memcheck build-gpu/tests/test_routing
# the grouped run (device plan builder from device counts, invalid counts clamped, SM budget,
# graph replay) over every 3rd valid config of each activation
MOE_TEST_GPU_CASES=3 pstep memcheck_grouped "${san[@]}" memcheck build-gpu/tests/test_grouped
pwait
fi
if [ "$SANITIZERS" = all ] || [ "$SANITIZERS" = racecheck ]; then
# One racecheck step at a time: racecheck serialises the GPU, so side by side every step ran
# past STEP_TIMEOUT (nine at once, 300 s each, on an H100). All of them take more than one call:
# RACECHECK_STEPS (an extended regex of step names, default all) picks a share per call.
rstep() {
  [[ "$1" =~ ${RACECHECK_STEPS:-.} ]] || return 0
  step "$@"
}
rstep racecheck_conformance "${san[@]}" racecheck build-gpu/tests/run_cases
MOE_TEST_GPU_CASES=23 rstep racecheck_routing "${san[@]}" racecheck build-gpu/tests/test_routing
MOE_TEST_GPU_CASES=7 rstep racecheck_grouped "${san[@]}" racecheck build-gpu/tests/test_grouped
# racecheck on the GEMMs of C = 1, 2, 4, all three weight-tile heights (64/128/256 rows), the
# 192-token tile and the 144- and 176-token tiles (N not a multiple of 32), and the persistent
# GEMM2 (the C = 1 configs with one CTA per SM run it in test_moe's cases with I <= 2048),
# three configs a step so each stays within STEP_TIMEOUT (all nine took over 250 s on an H200,
# seven over 240 s on an H100; the t192/t144/t176 step about 144 s on an H100, alone). Configs are
# named as moe_runner_describe_config names them; test_moe fails on a name it does not know.
MOE_TEST_GPU_CONFIGS=sm90_bf16_t8_c1_m128_s13,sm90_bf16_t16_c2_m128_s13,sm90_bf16_t32_c4_m128_s13 \
  rstep racecheck_moe_c124 "${san[@]}" racecheck build-gpu/tests/test_moe
MOE_TEST_GPU_CONFIGS=sm90_bf16_t16_c1_m64_s8,sm90_bf16_t128_c1_m256_s4,sm90_bf16_t256_c2_m256_s4 \
  rstep racecheck_moe_m64_256 "${san[@]}" racecheck build-gpu/tests/test_moe
MOE_TEST_GPU_CONFIGS=sm90_bf16_t192_c1_m256_s4,sm90_bf16_t144_c1_m256_s4,sm90_bf16_t176_c1_m256_s4 \
  rstep racecheck_moe_tiles "${san[@]}" racecheck build-gpu/tests/test_moe
# the FP8 per-tensor kernels: C = 1 / 2 / 4, the gathering and the permuted GEMM1, the
# persistent GEMM2 (t64 c1 s4 and t192: one CTA per SM)
MOE_TEST_GPU_CONFIGS=sm90_fp8pt_t16_c1_m128_s12,sm90_fp8pt_t64_c2_m128_s11,sm90_fp8pt_t64_c4_m128_s12,sm90_fp8pt_t192_c1_m256_s4 \
  rstep racecheck_fp8 "${san[@]}" racecheck build-gpu/tests/test_fp8
# the block-scaled FP8 kernels (promotion per k-block, the quantizing GEMM1 epilogue): C = 1, 2,
# 4 and the 8- and 64-token CTA tiles
MOE_TEST_GPU_CONFIGS=sm90_fp8blk_t8_c1_m256_s6,sm90_fp8blk_t64_c2_m256_s6,sm90_fp8blk_t256_c4_m256_s5 \
  rstep racecheck_fp8_block "${san[@]}" racecheck build-gpu/tests/test_fp8
# the MXFP4 W4A16 kernels: C = 1, 2 and 4
# (the pattern picks the catalogue's first C = 2 config), the GPU cases with H, I <= 1024 (the
# 2880 case runs the same code many more times)
MOE_TEST_GPU_MAX_K=1024 \
MOE_TEST_GPU_CONFIGS='sm90_w4a16_t8_c1_m64_s16,sm90_w4a16_*_c2_*,sm90_w4a16_t256_c4_m128_s10' \
  rstep racecheck_mxfp4 "${san[@]}" racecheck build-gpu/tests/test_mxfp4
fi
fi
# moe_ep over NCCL with a one-rank communicator (the full dispatch -> experts -> combine path,
# bit-identical to the plain forward) and its benchmark, from a bundle's build-nccl/ (NCCL
# found here: the CUDA toolkit's, else the nvidia-nccl wheel's beside PyTorch).
if [ "$MODE" = ep ] || { [ "$MODE" = full ] && [ -d .gpubuild/build-nccl ]; }; then
  [ -d .gpubuild/build-nccl ] && rm -rf build-nccl && mv .gpubuild/build-nccl build-nccl
  nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(nvidia.nccl.__path__[0], "lib"))' 2>/dev/null)
  export LD_LIBRARY_PATH="${nccl_dir:+$nccl_dir:}/usr/local/cuda/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  step ep_nccl_1rank build-nccl/tests/test_ep_nccl
  step ep_nccl_bench bash scripts/ep-nccl-run.sh 1 build-nccl/bench/moe-ep-bench
fi
if [ "$MODE" = ab ]; then
  if [ ! -x build-base/bench/moe-bench ]; then
  step configure_base cmake -S "${BASE_SRC:?ab needs BASE_SRC or a bundle with build-base}" \
       -B build-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
       -DMOE_BUILD_BINDINGS=OFF -DMOE_BUILD_TESTS=OFF
  step build_base cmake --build build-base -j 16
  fi
  step ab python3 bench/ab.py --a build-base/bench/moe-bench --b build-gpu/bench/moe-bench \
       --rounds "${AB_ROUNDS:-2}" --iters "${AB_ITERS:-20}" --json "$OUT/ab.jsonl"
  cat "$OUT/ab.log"
fi
if [ "$MODE" = full ] || [ "$MODE" = bench ]; then
  step bench_routing ./build-gpu/bench/moe-bench --stage routing --preset deepseek-v3,qwen3-30b \
       --json
  step bench_forward ./build-gpu/bench/moe-bench --json
  # the same cells with the config moe_runner_autotune picks (the table's tuned columns)
  step bench_tuned ./build-gpu/bench/moe-bench --json --config tuned
  # the grouped layouts and the SM budget against the plain forward on the same rows (docs/ep.md)
  step grouped_bench ./build-gpu/bench/moe-grouped-bench
  if [ -f bench/torch_compare.py ]; then
    step torch_compare python3 bench/torch_compare.py --lib build-gpu/libmoe_trtllm.so ${TORCH_TOKENS:+--tokens $TORCH_TOKENS}
  fi
fi
echo
echo "==== summary ($(head -1 "$OUT/gpu.txt")) ===="
printf '%s\n' "${summary[@]}"
for f in "$OUT"/bench_*.log; do
  [ -f "$f" ] || continue
  echo "-- $(basename "$f" .log)"
  grep '^{' "$f" | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if r.get("floor_us") is None: r["floor_us"], r["pct_floor"] = 0.0, 0.0
    print("%-20s %-7s T=%-6d %9.1f us %7.1f TFLOP/s %6.3f TB/s floor %8.1f us %5.1f%%" % (
        r["preset"], r["stage"], r["tokens"], r["us"], r["tflops"], r["tbps"], r["floor_us"], r["pct_floor"]))'
done
# The device tool returns at most 8 files from $OUT: every step's log goes back in one archive.
if ls "$OUT"/*.log >/dev/null 2>&1; then
  (cd "$OUT" && tar czf logs.tgz ./*.log && rm -f ./*.log)
fi
