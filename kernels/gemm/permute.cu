/*
 * permute.cu - copies hidden rows into permuted (expert-grouped) order for the GEMM1 configs
 * that read their token rows by TMA (CTA tile >= 64 tokens): dst[r] = hidden[p2t[r]] for
 * r < permuted_size, zeros for padding rows (-1). 16-byte loads and stores.
 */
#include "../ptx/pdl.cuh"
#include "configs.cuh"

namespace moe {
namespace sm90 {
namespace {

__global__ void __launch_bounds__(256)
    permute_rows_kernel(uint4 *__restrict__ dst, const uint4 *__restrict__ hidden,
                        const int32_t *__restrict__ p2t, const int32_t *__restrict__ psize,
                        int64_t vec_per_row) {
  ptx::grid_dependency_wait();
  ptx::launch_dependents();
  const int64_t rows = *psize;
  const int64_t total = rows * vec_per_row;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / vec_per_row, v = i - r * vec_per_row;
    const int32_t t = __ldg(p2t + r);
    uint4 x = make_uint4(0u, 0u, 0u, 0u);
    if (t >= 0) x = __ldg(hidden + t * vec_per_row + v);
    dst[i] = x;
  }
}

}  // namespace

cudaError_t launch_permute(uint16_t *dst, const uint16_t *hidden, const int32_t *permuted_to_token,
                           const int32_t *permuted_size, int64_t max_rows, int64_t hidden_size,
                           bool pdl, cudaStream_t stream) {
  if (max_rows <= 0 || hidden_size <= 0) return cudaSuccess;
  const int64_t vec = hidden_size / 8;
  int64_t blocks = (max_rows * vec + 255) / 256;
  if (blocks > 132 * 16) blocks = 132 * 16; /* grid-stride; the row count is read on device */
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks), 1, 1);
  cfg.blockDim = dim3(256, 1, 1);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, permute_rows_kernel, reinterpret_cast<uint4 *>(dst),
                            reinterpret_cast<const uint4 *>(hidden), permuted_to_token,
                            permuted_size, vec);
}

}  // namespace sm90
}  // namespace moe
