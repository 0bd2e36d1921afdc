/*
 * weights_prepare_fp8.cu - canonical -> FP8 prepared weights on the GPU (docs/formats.md,
 * prepared layout version 2). Produces the bytes of the CPU backend's
 * core/cpu/fp8_weights.c:
 *   e4m3 [E_l, R, C] in the BF16 prepared row order (gated W1: 8-row blocks of up and gate
 *   interleaved; otherwise canonical order), zero bytes up to moe_k_fp8_scales_offset(E_l*R*C),
 *   then the fp32 scales in canonical order: BLOCK [E_l, R/128, C/128], PER_TENSOR [E_l].
 * From e4m3 + scales: a row relayout and a copy of the scales. From bf16: quantized with the
 * shared rule of kernels/fp8_math.h (amax over the group's finite values, s = amax / 448 or 1,
 * q = e4m3(x / s)); the group max is order-independent, so the result is deterministic.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels.h"
#include "fp8_math.h"

namespace {

constexpr int kBlock = MOE_FP8_BLOCK;
constexpr int kThreads = 256;

/* Prepared row of canonical row c (rows = R of one expert). I % 8 == 0 since I % 128 == 0. */
__device__ __forceinline__ int64_t prepared_row(int interleave, int64_t rows, int64_t c) {
  if (!interleave) return c;
  const int64_t inter = rows / 2, half = c / inter, f = c - half * inter;
  return 16 * (f / 8) + 8 * half + f % 8;
}

__device__ __forceinline__ int64_t grid_stride_start() {
  return blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
}

/* Relayout of e4m3 rows, 16 bytes per thread (cols % 16 == 0, both pointers 16-byte aligned). */
__global__ void relayout_vec(const uint4 *__restrict__ src, uint4 *__restrict__ dst,
                             int64_t total_rows, int64_t rows, int64_t vec_per_row,
                             int interleave) {
  const int64_t total = total_rows * vec_per_row;
  for (int64_t i = grid_stride_start(); i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / vec_per_row, v = i - row * vec_per_row;
    const int64_t e = row / rows, c = row - e * rows;
    dst[(e * rows + prepared_row(interleave, rows, c)) * vec_per_row + v] = src[i];
  }
}

/* The same, one byte per thread (unaligned pointers). */
__global__ void relayout_bytes(const uint8_t *__restrict__ src, uint8_t *__restrict__ dst,
                               int64_t total_rows, int64_t rows, int64_t cols, int interleave) {
  const int64_t total = total_rows * cols;
  for (int64_t i = grid_stride_start(); i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / cols, k = i - row * cols;
    const int64_t e = row / rows, c = row - e * rows;
    dst[(e * rows + prepared_row(interleave, rows, c)) * cols + k] = src[i];
  }
}

/* Max over the CTA of non-negative finite values (exact, any order). All threads get it. */
__device__ float block_max(float v) {
  __shared__ float warp_max[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = v;
  __syncthreads();
  float m = warp_max[0];
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
  __syncthreads(); /* warp_max may be reused by the caller's next call */
  return m;
}

/* PER_TENSOR step 1: amax of each expert into amax_bits[e] (float bits; non-negative floats
 * order like their bit patterns, so atomicMax on the bits is the float max). grid.y = expert. */
__global__ void __launch_bounds__(kThreads)
    expert_amax(const uint16_t *__restrict__ src, unsigned int *__restrict__ amax_bits,
                int64_t per_expert) {
  const uint16_t *w = src + blockIdx.y * per_expert;
  float m = 0.0f;
  for (int64_t i = grid_stride_start(); i < per_expert; i += (int64_t)gridDim.x * blockDim.x)
    m = moe_fp8_amax_step(m, moe_bf16_to_f32(w[i]));
  m = block_max(m);
  if (threadIdx.x == 0) atomicMax(&amax_bits[blockIdx.y], __float_as_uint(m));
}

/* PER_TENSOR step 2: scales[e] = moe_fp8_scale(amax[e]), in place. */
__global__ void expert_scales(float *__restrict__ scales, int64_t experts) {
  const int64_t e = grid_stride_start();
  if (e < experts) scales[e] = moe_fp8_scale(scales[e]);
}

/* PER_TENSOR step 3: q = e4m3(x / scales[e]) at the prepared row. */
__global__ void quantize_per_tensor(const uint16_t *__restrict__ src, uint8_t *__restrict__ dst,
                                    const float *__restrict__ scales, int64_t experts, int64_t rows,
                                    int64_t cols, int interleave) {
  const int64_t per_expert = rows * cols, total = experts * per_expert;
  for (int64_t i = grid_stride_start(); i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e = i / per_expert, rem = i - e * per_expert;
    const int64_t c = rem / cols, k = rem - c * cols;
    dst[e * per_expert + prepared_row(interleave, rows, c) * cols + k] =
        moe_fp8_quantize(moe_bf16_to_f32(src[i]), scales[e]);
  }
}

/* BLOCK: one CTA per 128x128 block (e, i, j): amax, scale, quantize. */
__global__ void __launch_bounds__(kThreads)
    quantize_blocks(const uint16_t *__restrict__ src, uint8_t *__restrict__ dst,
                    float *__restrict__ scales, int64_t experts, int64_t rows, int64_t cols,
                    int interleave) {
  const int64_t rb = rows / kBlock, cb = cols / kBlock, blocks = experts * rb * cb;
  constexpr int kPer = kBlock * kBlock / kThreads; /* 64 elements per thread */
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const int64_t e = blk / (rb * cb), i = (blk / cb) % rb, j = blk % cb;
    const uint16_t *w = src + e * rows * cols + (i * kBlock) * cols + j * kBlock;
    /* Two passes over the block's 32 KiB (the second hits L1/L2): keeping 64 values per
     * thread in registers spilled. */
    float m = 0.0f;
    for (int n = 0; n < kPer; ++n) {
      const int idx = threadIdx.x + n * kThreads, r = idx / kBlock, k = idx % kBlock;
      m = moe_fp8_amax_step(m, moe_bf16_to_f32(w[r * cols + k]));
    }
    const float s = moe_fp8_scale(block_max(m));
    if (threadIdx.x == 0) scales[blk] = s; /* blk = (e * rb + i) * cb + j: canonical order */
    uint8_t *out = dst + e * rows * cols;
    for (int n = 0; n < kPer; ++n) {
      const int idx = threadIdx.x + n * kThreads, r = idx / kBlock, k = idx % kBlock;
      out[prepared_row(interleave, rows, i * kBlock + r) * cols + j * kBlock + k] =
          moe_fp8_quantize(moe_bf16_to_f32(w[r * cols + k]), s);
    }
  }
}

unsigned grid_for(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  return (unsigned)(blocks > 0 ? blocks : 1);
}

}  // namespace

extern "C" int moe_cuda_weights_prepare_fp8(int32_t which, int32_t gated, int32_t scaling_mode,
                                            int64_t local_experts, int64_t rows, int64_t cols,
                                            const void *canonical, const float *canonical_scales,
                                            uint8_t *prepared, void *stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const bool block = scaling_mode == MOE_K_SCALING_BLOCK;
  if (local_experts < 0 || rows < 0 || cols < 0 || rows % kBlock || cols % kBlock ||
      (!block && scaling_mode != MOE_K_SCALING_PER_TENSOR) || (which != 1 && which != 2))
    return cudaErrorInvalidValue;
  const int64_t per_expert = rows * cols, values = local_experts * per_expert;
  if (values == 0) return cudaSuccess;
  if (canonical == nullptr || prepared == nullptr) return cudaErrorInvalidValue;
  const int interleave = which == 1 && gated;
  const int64_t off = moe_k_fp8_scales_offset(values);
  const int64_t nscales = block ? local_experts * (rows / kBlock) * (cols / kBlock) : local_experts;
  float *scales = reinterpret_cast<float *>(prepared + off);
  cudaError_t e = cudaSuccess;
  if (off > values) e = cudaMemsetAsync(prepared + values, 0, (size_t)(off - values), stream);
  if (e != cudaSuccess) return e;
  if (canonical_scales != nullptr) { /* e4m3 + scales: relayout and copy */
    const int64_t total_rows = local_experts * rows;
    const bool vec = (reinterpret_cast<uintptr_t>(canonical) & 15u) == 0 &&
                     (reinterpret_cast<uintptr_t>(prepared) & 15u) == 0;
    if (vec) {
      relayout_vec<<<grid_for(total_rows * (cols / 16)), kThreads, 0, stream>>>(
          static_cast<const uint4 *>(canonical), reinterpret_cast<uint4 *>(prepared), total_rows,
          rows, cols / 16, interleave);
    } else {
      relayout_bytes<<<grid_for(values), kThreads, 0, stream>>>(
          static_cast<const uint8_t *>(canonical), prepared, total_rows, rows, cols, interleave);
    }
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    return cudaMemcpyAsync(scales, canonical_scales, (size_t)nscales * sizeof(float),
                           cudaMemcpyDeviceToDevice, stream);
  }
  const uint16_t *src = static_cast<const uint16_t *>(canonical);
  if (block) {
    quantize_blocks<<<grid_for(nscales * kThreads), kThreads, 0, stream>>>(
        src, prepared, scales, local_experts, rows, cols, interleave);
    return cudaGetLastError();
  }
  if (local_experts > 65535) return cudaErrorInvalidValue; /* grid.y of expert_amax */
  if ((e = cudaMemsetAsync(scales, 0, (size_t)nscales * sizeof(float), stream)) != cudaSuccess)
    return e;
  int64_t per_expert_blocks = (per_expert + kThreads - 1) / kThreads;
  if (per_expert_blocks > 1024) per_expert_blocks = 1024;
  expert_amax<<<dim3((unsigned)per_expert_blocks, (unsigned)local_experts), kThreads, 0, stream>>>(
      src, reinterpret_cast<unsigned int *>(scales), per_expert);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  expert_scales<<<grid_for(local_experts), kThreads, 0, stream>>>(scales, local_experts);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  quantize_per_tensor<<<grid_for(values), kThreads, 0, stream>>>(
      src, prepared, scales, local_experts, rows, cols, interleave);
  return cudaGetLastError();
}
