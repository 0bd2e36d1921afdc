/*
 * finalize.cu - weighted sum of each token's K expert rows back into token order.
 *
 * One thread per (token, 8 columns): 16-byte loads of the permuted GEMM2 rows (up to kSlotBatch
 * in flight), fp32 sum in slot order k = 0..K-1 (mul then add, each rounded, like the CPU
 * reference), one bf16 rounding.
 * Tokens with no local slot get exactly 0.
 */
#include <cuda_bf16.h>

#include "kernels/finalize.cuh"
#include "kernels/pdl_launch.cuh"
#include "kernels/ptx/pdl.cuh"

namespace moe {
namespace {

__device__ __forceinline__ float bf16_lo(uint32_t v) {
  return __uint_as_float(v << 16);
}
__device__ __forceinline__ float bf16_hi(uint32_t v) {
  return __uint_as_float(v & 0xFFFF0000u);
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&b);
}

/* Slots whose rows one thread loads together: the K row loads of a token are independent, so
 * they are issued back to back and the sum then runs in slot order (one memory latency per
 * batch instead of one per slot, which decode pays right after GEMM2). */
constexpr int kSlotBatch = 8;

/* Permuted row and weight of slots k0 .. k0 + kSlotBatch - 1 of token t (row -1 past top_k). */
__device__ __forceinline__ void load_slots(const int32_t *__restrict__ e2p,
                                           const uint16_t *__restrict__ weights, int64_t t,
                                           int32_t top_k, int k0, int32_t (&row)[kSlotBatch],
                                           float (&w)[kSlotBatch]) {
#pragma unroll
  for (int j = 0; j < kSlotBatch; ++j) {
    const bool in = k0 + j < top_k;
    row[j] = in ? __ldg(e2p + t * top_k + k0 + j) : -1;
    w[j] = in ? __uint_as_float((uint32_t)__ldg(weights + t * top_k + k0 + j) << 16) : 0.0f;
  }
}

__global__ void __launch_bounds__(256)
    finalize_kernel(uint16_t *__restrict__ out, const uint16_t *__restrict__ gemm2_out,
                    const uint16_t *__restrict__ weights, const int32_t *__restrict__ e2p,
                    int64_t num_tokens, int32_t top_k, int64_t hidden) {
  const int64_t chunks = hidden / 8;
  const int64_t total = num_tokens * chunks;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  /* The routing tables are complete when this kernel starts: it launches after GEMM2 did, and
   * GEMM2 only after the run's first kernel (the permute pass or the gathering GEMM1) had
   * waited for routing and triggered its dependents (launch.cu; the assumption GEMM2's early
   * plan loads rest on too). So the first token's slots load before the wait; only GEMM2's rows
   * wait for it. */
  int32_t row[kSlotBatch];
  float w[kSlotBatch];
  if (idx < total) load_slots(e2p, weights, idx / chunks, top_k, 0, row, w);
  ptx::grid_dependency_wait();
  ptx::launch_dependents();
  for (; idx < total; idx += stride) {
    const int64_t t = idx / chunks;
    const int64_t c = idx - t * chunks;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
    for (int k0 = 0; k0 < top_k; k0 += kSlotBatch) {
      if (k0 > 0) load_slots(e2p, weights, t, top_k, k0, row, w);
      uint4 v[kSlotBatch];
#pragma unroll
      for (int j = 0; j < kSlotBatch; ++j) {
        if (row[j] >= 0)
          v[j] = __ldg(reinterpret_cast<const uint4 *>(gemm2_out + (int64_t)row[j] * hidden) + c);
      }
#pragma unroll
      for (int j = 0; j < kSlotBatch; ++j) {
        if (row[j] < 0) continue;
        const uint32_t u[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          acc[2 * i] = __fadd_rn(acc[2 * i], __fmul_rn(w[j], bf16_lo(u[i])));
          acc[2 * i + 1] = __fadd_rn(acc[2 * i + 1], __fmul_rn(w[j], bf16_hi(u[i])));
        }
      }
    }
    uint4 o;
    o.x = pack_bf16x2(acc[0], acc[1]);
    o.y = pack_bf16x2(acc[2], acc[3]);
    o.z = pack_bf16x2(acc[4], acc[5]);
    o.w = pack_bf16x2(acc[6], acc[7]);
    reinterpret_cast<uint4 *>(out + t * hidden)[c] = o;
    if (idx + stride < total) load_slots(e2p, weights, (idx + stride) / chunks, top_k, 0, row, w);
  }
}

}  // namespace

cudaError_t launch_finalize(uint16_t *out, const uint16_t *gemm2_out,
                            const uint16_t *expert_weights, const int32_t *expanded_to_permuted,
                            int64_t num_tokens, int32_t top_k, int64_t hidden, bool pdl,
                            cudaStream_t stream) {
  if (num_tokens <= 0 || hidden <= 0) return cudaSuccess;
  const int64_t total = num_tokens * (hidden / 8);
  int64_t blocks = (total + 255) / 256;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;
  return launch_pdl(finalize_kernel, blocks, 256, stream, pdl, out, gemm2_out, expert_weights,
                    expanded_to_permuted, num_tokens, top_k, hidden);
}

}  // namespace moe
