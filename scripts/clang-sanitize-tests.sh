#!/usr/bin/env bash
# The misuse tests (test_tensor_checks, test_plan_checks, test_api_errors) built with clang
# AddressSanitizer + UBSan, library sources linked in statically, into build-clang-san/.
# clang's UBSan reports what gcc's misses here: arithmetic on a NULL pointer (NULL data +
# byte_offset of an empty tensor) and negation at INT64_MIN (it folds -x - 2 first).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${MOE_SAN_CC:-clang}
out=build-clang-san
mkdir -p "$out"
flags=(-std=c11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer -ffp-contract=off -D_GNU_SOURCE -DMOE_TRTLLM_BUILDING
       -Iinclude -I. -Itests)
# core/ep_nccl.c is the NCCL transport, built only with CUDA and NCCL (CMakeLists.txt)
srcs=($(ls core/*.c | grep -v '/ep_nccl\.c$') core/cpu/*.c tests/common.c tests/fixture.c
      tests/conformance/gen.c)
for t in test_tensor_checks test_plan_checks test_api_errors; do
  "$CC" "${flags[@]}" "${srcs[@]}" "tests/$t.c" -o "$out/$t" -lm -lpthread
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 "$out/$t"
done
