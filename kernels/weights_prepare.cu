/*
 * weights_prepare.cu - canonical -> prepared weights on the GPU (docs/formats.md, version 1).
 *
 * Gated W1 [E_l, 2I, H]: prepared rows [16b, 16b+8) = up rows [8b, 8b+8), prepared rows
 * [16b+8, 16b+16) = gate rows [I+8b, I+8b+8). Non-gated W1 and W2: a plain copy.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/kernels.h"

namespace {

__device__ __forceinline__ int64_t canonical_row(int64_t p, int64_t inter) {
  const int64_t b = p / 16, r = p % 16;
  return r < 8 ? 8 * b + r : inter + 8 * b + (r - 8);
}

/* One thread per 16 bytes; cols % 8 == 0 and both pointers 16-byte aligned. */
__global__ void interleave_w1_vec(const uint4 *__restrict__ src, uint4 *__restrict__ dst,
                                  int64_t total_rows, int64_t rows, int64_t inter,
                                  int64_t vec_per_row) {
  const int64_t total = total_rows * vec_per_row;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / vec_per_row, v = i - row * vec_per_row;
    const int64_t e = row / rows, p = row - e * rows;
    dst[i] = src[(e * rows + canonical_row(p, inter)) * vec_per_row + v];
  }
}

__global__ void interleave_w1_scalar(const uint16_t *__restrict__ src, uint16_t *__restrict__ dst,
                                     int64_t total_rows, int64_t rows, int64_t inter,
                                     int64_t cols) {
  const int64_t total = total_rows * cols;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / cols, c = i - row * cols;
    const int64_t e = row / rows, p = row - e * rows;
    dst[i] = src[(e * rows + canonical_row(p, inter)) * cols + c];
  }
}

}  // namespace

extern "C" int moe_cuda_weights_prepare(int32_t which, int32_t gated, int64_t local_experts,
                                        int64_t rows, int64_t cols, const uint16_t *canonical,
                                        uint16_t *prepared, void *stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (local_experts < 0 || rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t elems = local_experts * rows * cols;
  if (elems == 0) return cudaSuccess;
  if (canonical == nullptr || prepared == nullptr) return cudaErrorInvalidValue;
  if (which == 2 || !gated) {
    return cudaMemcpyAsync(prepared, canonical, (size_t)elems * 2, cudaMemcpyDeviceToDevice,
                           stream);
  }
  if (which != 1 || rows % 16 != 0) return cudaErrorInvalidValue;
  const int64_t inter = rows / 2;
  const int64_t total_rows = local_experts * rows;
  const bool vec = cols % 8 == 0 && (reinterpret_cast<uintptr_t>(canonical) & 15u) == 0 &&
                   (reinterpret_cast<uintptr_t>(prepared) & 15u) == 0;
  const int64_t work = vec ? total_rows * (cols / 8) : elems;
  int64_t blocks = (work + 255) / 256;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  if (vec) {
    interleave_w1_vec<<<(unsigned)blocks, 256, 0, stream>>>(
        reinterpret_cast<const uint4 *>(canonical), reinterpret_cast<uint4 *>(prepared), total_rows,
        rows, inter, cols / 8);
  } else {
    interleave_w1_scalar<<<(unsigned)blocks, 256, 0, stream>>>(canonical, prepared, total_rows,
                                                               rows, inter, cols);
  }
  return cudaGetLastError();
}
