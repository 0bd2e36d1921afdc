/*
 * configs.cuh - the instantiated sm_90a BF16 kernel pairs, one per MOE_SM90_BF16_CONFIGS row
 * (internal to kernels/gemm: configs.cu defines the table, launch.cu uses it).
 */
#ifndef MOE_GEMM_CONFIGS_CUH_
#define MOE_GEMM_CONFIGS_CUH_

#include <cuda_runtime.h>
#include <stdint.h>

namespace moe {
namespace sm90 {

struct GemmKernel {
  const void *func; /* __global__ sm90_bf16_grouped_gemm<...> */
  int32_t block_m;
  int32_t threads;
  int32_t smem_bytes;
  int32_t permuted_input; /* GEMM1 reads a permuted copy of hidden (permute kernel first) */
  int32_t persistent;     /* grid = min(tiles, resident CTAs), each CTA walks tiles */
};

struct ConfigEntry {
  int32_t tile;
  int32_t cluster;
  int32_t block_k;
  int32_t stages;
  GemmKernel gemm1;        /* permuted_input for CTA tiles >= kPermuteFromN (configs.cu) */
  GemmKernel gemm1_gather; /* GEMM1 gathering its token rows (cp.async); = gemm1 below it */
  GemmKernel gemm2;
  GemmKernel gemm2_persistent; /* func NULL where there is none (configs.cu) */
};

extern const ConfigEntry kBf16Configs[];
extern const int32_t kNumBf16Configs;

/*
 * dst[expanded_to_permuted[t*K + k], :] = hidden[t, :] for every local slot (-1: skipped);
 * padding rows are left as they are. top_k <= 32, H % 8 == 0, 16-byte aligned rows. Waits on
 * the predecessor (PDL) before reading.
 */
cudaError_t launch_permute(uint16_t *dst, const uint16_t *hidden,
                           const int32_t *expanded_to_permuted, int64_t num_tokens, int32_t top_k,
                           int64_t hidden_size, bool pdl, cudaStream_t stream);

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_CONFIGS_CUH_
