/*
 * bench_read.cu - the read-only streaming kernel of moe-bench's bandwidth ceiling: every thread
 * reads 16-byte words of a large buffer (four loads in flight per thread) and folds them into
 * one word; each warp writes one atomic, so the kernel reads the buffer and writes almost
 * nothing, as a decode forward reads its weights. Built into moe-bench in CUDA builds only.
 */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads)
    read_kernel(const uint4 *__restrict__ p, size_t n, unsigned *out) {
  const size_t stride = (size_t)gridDim.x * kThreads;
  size_t i = (size_t)blockIdx.x * kThreads + threadIdx.x;
  unsigned acc = 0;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride),
                d = __ldcs(p + i + 3 * stride);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^
           d.w;
  }
  for (; i < n; i += stride) {
    const uint4 a = __ldcs(p + i);
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) atomicXor(out, acc);
}

}  // namespace

/* Launch one pass over @p bytes (a multiple of 16, 16-byte aligned) at @p p; nonzero on a launch
 * error. */
extern "C" int bench_read_launch(const void *p, size_t bytes, unsigned *out, int blocks,
                                 cudaStream_t stream) {
  read_kernel<<<blocks, kThreads, 0, stream>>>((const uint4 *)p, bytes / 16, out);
  return cudaGetLastError() != cudaSuccess;
}
