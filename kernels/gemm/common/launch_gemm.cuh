/*
 * launch_gemm.cuh - host side: one grouped GEMM kernel of a config as the launcher sees it,
 * its one-time attributes, and its launch (grid, cluster, PDL).
 */
#ifndef MOE_GEMM_COMMON_LAUNCH_GEMM_CUH_
#define MOE_GEMM_COMMON_LAUNCH_GEMM_CUH_

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/gemm/common/params.cuh"

namespace moe {
namespace sm90 {

struct GemmKernel {
  const void *func; /* __global__ kernel, NULL where a config has no such kernel */
  int32_t block_m;
  int32_t threads;
  int32_t smem_bytes;
  int32_t permuted_input; /* GEMM1 reads a permuted copy of hidden (permute kernel first) */
  int32_t persistent;     /* grid = min(tiles, resident CTAs), each CTA walks tiles */
  /* bytes of smem_bytes per 32 of K past a run's K: the MXFP4 tile's scales, sized for
   * MOE_SM90_MX_MAX_K at compile time (launch_gemm launches with the run's share only) */
  int32_t smem_per_k32;
};

/* Streaming multiprocessors of the current device when `num_sms` (the runner's) is not set. */
cudaError_t device_sms(int32_t num_sms, int32_t *out);

/*
 * Once per (device, kernel): the dynamic shared-memory attribute, and how many CTAs of the
 * kernel are resident at once (*resident: the grid of a persistent kernel).
 */
cudaError_t prepare_gemm_kernel(const GemmKernel &k, int32_t num_sms, int64_t *resident);

/*
 * Launches k over launch_ctas token CTAs x m_tiles weight tiles in clusters of `cluster` along
 * tokens (a persistent kernel: min(that, resident) CTAs), with p's m_tiles, token_clusters and
 * group_m filled in.
 */
cudaError_t launch_gemm(const GemmKernel &k, int32_t cluster, int64_t launch_ctas, int64_t m_tiles,
                        int64_t resident, const CUtensorMap &tw, const CUtensorMap &tx,
                        const CUtensorMap &txs, GroupedGemmParams p, bool pdl, cudaStream_t stream);

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_LAUNCH_GEMM_CUH_
