#!/usr/bin/env bash
# Fuzzes the public C API on the CPU backend (issue 23): builds tests/fuzz/moe_fuzz.c and the
# library sources with clang -fsanitize=fuzzer,address,undefined into build-fuzz/ and runs it
# for <seconds> with one worker, from the committed seed corpus tests/fuzz/corpus (read only;
# new inputs go to build-fuzz/corpus). A finding (crash, sanitizer report, leak, broken API
# invariant, an input slower than 60 s) fails the script and leaves its input in
# build-fuzz/artifacts/; replay it with build-fuzz/moe_fuzz <file>.
# Usage: scripts/fuzz.sh <seconds> [more libFuzzer flags]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: scripts/fuzz.sh <seconds> [libFuzzer flags]}
shift
CC=${MOE_FUZZ_CC:-clang}
out=build-fuzz
mkdir -p "$out/corpus" "$out/artifacts"
# -ffp-contract=off as in the library build (CMakeLists.txt): same rounding as the real thing.
# core/ep_nccl.c is the NCCL transport, built only with CUDA and NCCL (CMakeLists.txt).
"$CC" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer -ffp-contract=off -D_GNU_SOURCE -DMOE_TRTLLM_BUILDING -Iinclude -I. \
  $(ls core/*.c | grep -v '/ep_nccl\.c$') core/cpu/*.c tests/fuzz/moe_fuzz.c \
  -o "$out/moe_fuzz" -lm -lpthread
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$out/moe_fuzz" -max_total_time="$secs" -timeout=60 -print_final_stats=1 \
  -artifact_prefix="$out/artifacts/" "$@" "$out/corpus" tests/fuzz/corpus
