/*
 * ep.cu - the row kernels of moe_ep on CUDA (core/ep.c, docs/ep.md): gather rows through an
 * index map (pack, regroup, un-group) and the combine.
 *
 * Combine: per token and column, acc = 0, then for k = 0..K-1 in slot order
 * acc = __fadd_rn(acc, __fmul_rn(w, y)) (MOE_FADD / MOE_FMUL of kernels/moe_math.h: no FMA
 * contraction), one bf16 rounding: the finalize rule of docs/formats.md, the same bits as the
 * CPU backend (core/cpu/ep.c) and the single-device finalize.
 */
#include <cuda_runtime.h>

#include "kernels/kernels.h"

namespace moe {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;

/* One thread per (row, 8 columns) when rows are 16-byte vectors (H % 8 == 0), else per
 * (row, column). Grid-stride over the items. */
template <bool kVec>
__global__ void gather_rows(uint16_t *__restrict__ dst, const uint16_t *__restrict__ src,
                            const int32_t *__restrict__ map, int64_t n, int64_t H) {
  const int64_t per_row = kVec ? H / 8 : H;
  const int64_t items = n * per_row;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < items;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / per_row, c = i - row * per_row;
    const int64_t s = map[row];
    if (kVec)
      reinterpret_cast<uint4 *>(dst + row * H)[c] = reinterpret_cast<const uint4 *>(src + s * H)[c];
    else
      dst[row * H + c] = src[s * H + c];
  }
}

__global__ void combine(uint16_t *__restrict__ out, const uint16_t *__restrict__ rows,
                        const int32_t *__restrict__ pos, const uint16_t *__restrict__ w, int64_t T,
                        int32_t K, int64_t H) {
  const int64_t items = T * H;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < items;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = i / H, h = i - t * H;
    float acc = 0.0f;
    for (int32_t k = 0; k < K; ++k) {
      const int64_t x = t * K + k;
      const float y = moe_bf16_to_f32(rows[(int64_t)pos[x] * H + h]);
      acc = MOE_FADD(acc, MOE_FMUL(moe_bf16_to_f32(w[x]), y));
    }
    out[i] = moe_f32_to_bf16(acc);
  }
}

int blocks_for(int64_t items) {
  const int64_t b = (items + kThreads - 1) / kThreads;
  return (int)(b < kMaxBlocks ? b : kMaxBlocks);
}

}  // namespace
}  // namespace moe

extern "C" int moe_cuda_ep_gather_rows(uint16_t *dst, const uint16_t *src, const int32_t *map,
                                       int64_t n, int64_t H, void *stream) {
  if (n <= 0 || H <= 0) return 0;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool vec = H % 8 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(src) % 16 == 0;
  if (vec)
    moe::gather_rows<true>
        <<<moe::blocks_for(n * (H / 8)), moe::kThreads, 0, st>>>(dst, src, map, n, H);
  else
    moe::gather_rows<false><<<moe::blocks_for(n * H), moe::kThreads, 0, st>>>(dst, src, map, n, H);
  return (int)cudaGetLastError();
}

extern "C" int moe_cuda_ep_combine(uint16_t *out, const uint16_t *rows, const int32_t *pos,
                                   const uint16_t *w, int64_t T, int32_t K, int64_t H,
                                   void *stream) {
  if (T <= 0 || H <= 0) return 0;
  moe::combine<<<moe::blocks_for(T * H), moe::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      out, rows, pos, w, T, K, H);
  return (int)cudaGetLastError();
}
