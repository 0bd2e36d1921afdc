/*
 * quantize_fp8.cu - bf16 rows -> e4m3 + fp32 scales on the GPU, with the rule of
 * kernels/fp8_math.h (docs/formats.md "FP8"): the GEMM1 input quantization point of an FP8 run
 * (bf16 hidden states) as one pass, for the FP8 GEMM path to call (or to check a fused
 * producer against). Bit-identical to the CPU backend's quantization of the same rows
 * (core/cpu/fp8_gemm.c, quantize_hidden_body).
 *
 * One warp per (row, 128-column group); lane l holds columns [4l, 4l+4) of the group:
 *   BLOCK:      amax over the group's finite values (warp max: exact in any order),
 *               s = moe_fp8_scale(amax) -> scales[row * (cols/128) + group]
 *   PER_TENSOR: s = *static_scale (scales not written)
 *   q[row, c] = moe_fp8_quantize(x[row, c], s)
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels.h"
#include "fp8_math.h"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    quantize_rows(const uint16_t *__restrict__ x, int64_t rows, int64_t cols, int block,
                  const float *__restrict__ static_scale, uint8_t *__restrict__ q,
                  float *__restrict__ scales) {
  const int lane = threadIdx.x & 31;
  const int64_t groups_per_row = cols / MOE_FP8_BLOCK, groups = rows * groups_per_row;
  for (int64_t gi = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5); gi < groups;
       gi += (int64_t)gridDim.x * kWarps) {
    const int64_t row = gi / groups_per_row, grp = gi - row * groups_per_row;
    const int64_t at = row * cols + grp * MOE_FP8_BLOCK + 4 * lane;
    float v[4];
    if (kVec) {
      const uint2 u = *reinterpret_cast<const uint2 *>(x + at);
      v[0] = moe_bf16_to_f32((uint16_t)(u.x & 0xFFFFu));
      v[1] = moe_bf16_to_f32((uint16_t)(u.x >> 16));
      v[2] = moe_bf16_to_f32((uint16_t)(u.y & 0xFFFFu));
      v[3] = moe_bf16_to_f32((uint16_t)(u.y >> 16));
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = moe_bf16_to_f32(x[at + i]);
    }
    float s;
    if (block) {
      float m = 0.0f;
#pragma unroll
      for (int i = 0; i < 4; ++i) m = moe_fp8_amax_step(m, v[i]);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
      s = moe_fp8_scale(m);
      if (lane == 0) scales[gi] = s; /* gi = row * groups_per_row + grp */
    } else {
      s = *static_scale;
    }
    uint32_t packed = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) packed |= (uint32_t)moe_fp8_quantize(v[i], s) << (8 * i);
    if (kVec) {
      *reinterpret_cast<uint32_t *>(q + at) = packed;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) q[at + i] = (uint8_t)(packed >> (8 * i));
    }
  }
}

}  // namespace

extern "C" int moe_cuda_quantize_fp8(const uint16_t *x, int64_t rows, int64_t cols,
                                     int32_t scaling_mode, const float *static_scale, uint8_t *q,
                                     float *scales, void *stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const bool block = scaling_mode == MOE_K_SCALING_BLOCK;
  if (rows < 0 || cols < 0 || cols % MOE_FP8_BLOCK ||
      (!block && (scaling_mode != MOE_K_SCALING_PER_TENSOR || static_scale == nullptr)))
    return cudaErrorInvalidValue;
  const int64_t groups = rows * (cols / MOE_FP8_BLOCK);
  if (groups == 0) return cudaSuccess;
  if (x == nullptr || q == nullptr || (block && scales == nullptr)) return cudaErrorInvalidValue;
  int64_t grid = (groups + kWarps - 1) / kWarps;
  if (grid > 65535LL * 16) grid = 65535LL * 16;
  const bool vec =
      (reinterpret_cast<uintptr_t>(x) & 7u) == 0 && (reinterpret_cast<uintptr_t>(q) & 3u) == 0;
  if (vec)
    quantize_rows<true>
        <<<(unsigned)grid, kThreads, 0, stream>>>(x, rows, cols, block, static_scale, q, scales);
  else
    quantize_rows<false>
        <<<(unsigned)grid, kThreads, 0, stream>>>(x, rows, cols, block, static_scale, q, scales);
  return cudaGetLastError();
}
