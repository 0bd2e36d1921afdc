/*
 * configs.cuh - the instantiated config catalogues of the sm_90a grouped GEMMs, one per
 * (activation dtype, weight dtype, scaling) key of kernels/kernels.h (MOE_K_CATALOGUE_*), each
 * row a (GEMM1, GEMM2) kernel pair in the order of its X-macro list (internal to kernels/gemm:
 * configs.cu defines the tables, launch.cu uses them).
 */
#ifndef MOE_GEMM_CONFIGS_CUH_
#define MOE_GEMM_CONFIGS_CUH_

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/gemm/common/launch_gemm.cuh"

namespace moe {
namespace sm90 {

struct ConfigEntry {
  int32_t tile;
  int32_t cluster;
  GemmKernel gemm1;        /* permuted_input for CTA tiles >= kPermuteFromN (configs.cu) */
  GemmKernel gemm1_gather; /* GEMM1 gathering its token rows (cp.async); = gemm1 below it */
  GemmKernel gemm2;
  GemmKernel gemm2_persistent; /* func NULL where there is none (configs.cu) */
};

struct Catalogue {
  const ConfigEntry *rows;
  int32_t count;
  int32_t elem_bytes;           /* activation and weight element size of the kernels (bytes) */
  CUtensorMapDataType tma_type; /* their element type in the tensor maps */
};

/* The catalogue of a MOE_K_CATALOGUE_* key, or NULL where this build has none. */
const Catalogue *find_catalogue(int32_t key);

/*
 * dst[expanded_to_permuted[t*K + k], :] = hidden[t, :] for every local slot (-1: skipped),
 * dst rows of row_bytes bytes; padding rows are left as they are. quantize_scale NULL: a byte
 * copy; else hidden is bf16 and dst gets e4m3(x / *quantize_scale) (FP8 per-tensor). top_k <=
 * 32, row_bytes % 16 == 0, 16-byte aligned rows. Waits on the predecessor (PDL) before reading.
 * num_sms sizes the grid.
 */
cudaError_t launch_permute(void *dst, const void *hidden, const int32_t *expanded_to_permuted,
                           int64_t num_tokens, int32_t top_k, int64_t row_bytes,
                           const float *quantize_scale, int32_t num_sms, bool pdl,
                           cudaStream_t stream);

/*
 * The permute of block-scaled FP8: dst[e2p[t*K + k], :] = e4m3 row of token t, and its
 * 128-column groups' scales transposed at dst_scales[g * scale_ld + row]; from bf16 hidden
 * (hidden_scales NULL: quantized with one dynamic scale per group, kernels/fp8_math.h) or e4m3
 * hidden with hidden_scales [T, H/128]. H % 128 == 0, top_k <= 32, 16-byte aligned rows.
 * Waits on the predecessor (PDL) before reading. num_sms sizes the grid.
 */
cudaError_t launch_permute_block(void *dst, float *dst_scales, int64_t scale_ld, const void *hidden,
                                 const float *hidden_scales, const int32_t *expanded_to_permuted,
                                 int64_t num_tokens, int32_t top_k, int64_t H, int32_t num_sms,
                                 bool pdl, cudaStream_t stream);

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_CONFIGS_CUH_
