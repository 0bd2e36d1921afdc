/*
 * weights_prepare_mxfp4.cu - checkpoint MXFP4 -> prepared weights on the GPU (docs/formats.md,
 * "MXFP4", prepared layout version 4; kernels/mxfp4_math.h). Produces the bytes of the CPU
 * backend's core/cpu/mxfp4_weights.c: per expert the packed e2m1 values [R, C/2] in the BF16
 * prepared row order, zero-padded to 128 bytes, then the ue8m0 scales [R, C/32] in the same row
 * order, zero-padded to 128 bytes; the values' bits reordered within each 32-value block
 * (moe_mx_pack_block). A relayout: every prepared byte is written by one thread from the source
 * bytes its bits come from (or 0 in a pad), so the pads need no separate pass and the result
 * does not depend on the launch. The scales are copied as they are: a 0xFF (NaN) scale, which the
 * CPU backend refuses, cannot be seen here without a synchronisation and decodes as NaN.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels.h"
#include "mxfp4_math.h"

namespace {

constexpr int kThreads = 256;

/* Source row (in the checkpoint tensor of one expert) of prepared row p. Gated W1: prepared row
 * p holds feature f = 8*(p/16) + p%8 of the up half if (p/8) is even, else of the gate half
 * (I % 8 == 0 since I % 32 == 0); the source is the library's order (up rows, then gate rows)
 * or gpt-oss's (row 2f = gate f, 2f + 1 = up f). */
__device__ __forceinline__ int64_t source_row(int gated_w1, int interleaved, int64_t rows,
                                              int64_t p) {
  if (!gated_w1) return p;
  const int64_t half = (p / 8) % 2, f = 8 * (p / 16) + p % 8;
  return interleaved ? 2 * f + (half == 0) : half * (rows / 2) + f;
}

__global__ void __launch_bounds__(kThreads)
    prepare_mx(const uint8_t *__restrict__ values, const uint8_t *__restrict__ scales,
               uint8_t *__restrict__ dst, int64_t experts, int64_t rows, int64_t cols, int gated_w1,
               int interleaved) {
  const int64_t vb = cols / 2, sb = cols / MOE_MX_BLOCK;
  const int64_t soff = moe_mx_scales_offset(rows, cols), stride = moe_mx_expert_bytes(rows, cols);
  const int64_t total = experts * stride;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e = i / stride, o = i - e * stride;
    uint8_t v = 0;
    if (o < soff) {
      const int64_t p = o / vb;
      if (p < rows) {
        /* byte i of word q of a 32-value block: from canonical bytes q + 4t of the block */
        const int64_t c = o % vb, blk = c - c % 16;
        const int q = static_cast<int>(c % 16) / 4, i = static_cast<int>(c % 4);
        const uint8_t *src = values + (e * rows + source_row(gated_w1, interleaved, rows, p)) * vb;
        const uint8_t b[4] = {src[blk + q], src[blk + q + 4], src[blk + q + 8], src[blk + q + 12]};
        v = static_cast<uint8_t>(moe_mx_pack_word(b) >> (8 * i));
      }
    } else {
      const int64_t q = o - soff, p = q / sb;
      if (p < rows)
        v = scales[(e * rows + source_row(gated_w1, interleaved, rows, p)) * sb + q % sb];
    }
    dst[i] = v;
  }
}

}  // namespace

extern "C" int moe_cuda_weights_prepare_mx(int32_t gated_w1, int32_t gate_up_interleaved,
                                           int64_t local_experts, int64_t rows, int64_t cols,
                                           const uint8_t *values, const uint8_t *scales,
                                           uint8_t *prepared, void *stream) {
  if (local_experts < 0 || rows < 0 || cols < 0 || cols % MOE_MX_BLOCK)
    return cudaErrorInvalidValue;
  const int64_t total = local_experts * moe_mx_expert_bytes(rows, cols);
  if (total == 0) return cudaSuccess;
  if (values == nullptr || scales == nullptr || prepared == nullptr) return cudaErrorInvalidValue;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  prepare_mx<<<(unsigned)blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      values, scales, prepared, local_experts, rows, cols, gated_w1, gate_up_interleaved);
  return (int)cudaGetLastError();
}
