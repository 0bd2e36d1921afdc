#!/usr/bin/env bash
# Nsight Compute on the cells docs/performance.md names as misses, in one device call: the
# routing kernels at T = 65536 (DeepSeekV3), and the GEMMs of a prefill cell (qwen3-30b
# T = 16384), a many-expert decode cell (deepseek-v3 T = 128) and a T = 1 cell (qwen3-30b).
# Prints per kernel: duration, tensor-pipe and DRAM use, occupancy, eligible warps; writes the
# full details and the routing kernel's per-instruction source table (SASS, CSV) to $OUT.
# ncu locks the clocks to base: durations are longer than moe-bench's; compare shares, not µs.
# Usage: scripts/gpu-profile.sh [build dir, default build-gpu]   (PREBUILT builds work: the
#        binaries only need libmoe_trtllm next to them or on LD_LIBRARY_PATH)
set -uo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-gpu}"
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"
BENCH="$B/bench/moe-bench"
[ -x "$BENCH" ] || { echo "gpu-profile: $BENCH not found (build first)"; exit 2; }
NCU=(timeout 240 ncu --graph-profiling node)
KEYS='Duration|Compute \(SM\) Throughput|DRAM Throughput|Achieved Occupancy|Eligible Warps|Registers Per Thread|Executed Instructions  |Issue Slots Busy'

profile() { # name, kernel regex, launch count, bench args...
  local name="$1" re="$2" n="$3"
  shift 3
  echo "== $name"
  "${NCU[@]}" -k "regex:$re" --launch-count "$n" --set full -o "/tmp/$name" -f "$BENCH" "$@" \
    --iters 1 >"$OUT/$name.ncu.log" 2>&1
  ncu -i "/tmp/$name.ncu-rep" --page details >"$OUT/$name.txt" 2>&1
  grep -E "x\([0-9]+, [0-9]+, [0-9]+\), Context|$KEYS" "$OUT/$name.txt" | cut -c1-120
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
profile routing_ds_65536 "topk_hist|block_scan|scatter" 3 \
  --stage routing --preset deepseek-v3 --tokens 65536
ncu -i /tmp/routing_ds_65536.ncu-rep --page source --csv --print-source sass \
  >"$OUT/routing_ds_65536_sass.csv" 2>&1
profile gemm_q30_16384 sm90_bf16_grouped 2 --preset qwen3-30b --tokens 16384
profile gemm_ds_128 sm90_bf16_grouped 2 --preset deepseek-v3 --tokens 128
profile gemm_q30_1 "cluster_kernel|sm90_bf16_grouped|finalize_kernel" 4 --preset qwen3-30b --tokens 1
