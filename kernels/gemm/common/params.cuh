/*
 * params.cuh - the per-launch parameters of every grouped GEMM of the family (passed by value
 * next to the tensor maps), shared by the launcher and the kernels.
 *
 * Pointers to element data are untyped: the kernel's dtype tags (dtypes.cuh) say what they
 * hold. Row pitches of byte-addressed operands are in bytes, those of the output in elements
 * of the output type.
 */
#ifndef MOE_GEMM_COMMON_PARAMS_CUH_
#define MOE_GEMM_COMMON_PARAMS_CUH_

#include <stdint.h>

namespace moe {
namespace sm90 {

struct GroupedGemmParams {
  void *out; /* [rows, out_ld] of the kernel's output type */
  /* NULL: tile row r is stored at out row r. Else a grouped run's GEMM2 stores each row at the
   * caller's position, so no copy pass follows it: the live rows of a tile starting at row0 are
   * one expert's consecutive rows, which both grouped layouts keep consecutive in the output
   * (contiguous s_e + i, masked e * capacity + i), so tile row r goes to out_rows[row0] + r -
   * row0 (the plan's permuted_to_token; its -1 entries are padding, never live). */
  const int32_t *out_rows;
  const float *bias;                /* [E_l, bias_stride] canonical order, or NULL */
  const float *alpha;               /* [E_l] SwiGLU, or NULL */
  const float *beta;                /* [E_l] SwiGLU, or NULL */
  const float *clamp_limit;         /* [E_l] SwiGLU, or NULL */
  const int32_t *permuted_to_token; /* GEMM1 gather map */
  /* NULL: a permuted-input GEMM1 reads tile row r at row r of its token map. Else (a grouped
   * BF16 run reading the caller's hidden states, no permuted copy) at row x_rows[row0] + (r -
   * row0) for the tile's first row row0: an expert's rows are consecutive there. */
  const int32_t *x_rows;
  const uint8_t *gather_src; /* GEMM1: hidden [T, H] */
  int64_t gather_row_bytes;  /* GEMM1: bytes per hidden row */
  const int32_t *cta_to_batch;
  const int32_t *cta_to_mn_limit;
  const int32_t *num_ctas;
  int32_t *tile_counter;  /* GEMM2's tile queue: GEMM1 zeroes it, persistent GEMM2 takes tiles */
  int32_t w_rows;         /* prepared weight rows per expert */
  int32_t k_blocks;       /* K / kBlockK (stages of 128 bytes of K) */
  int32_t out_ld;         /* output row pitch in elements (<= H or I: int32) */
  int32_t out_cols;       /* output features per expert (I for GEMM1, H for GEMM2) */
  int32_t bias_stride;    /* bias elements per expert */
  int32_t activation;     /* MOE_ACTIVATION_* (GEMM1); ignored by GEMM2 */
  int32_t gated;          /* GEMM1 with SwiGLU / GeGLU */
  int32_t m_tiles;        /* ceil(w_rows / BLOCK_M) */
  int32_t token_clusters; /* launch_ctas / C */
  int32_t group_m;        /* M tiles per rasterisation group (1..m_tiles) */
  /* FP8 scales (formats.cuh); NULL for BF16.
   * Per-tensor: w_scale [E_l] dequantization scale of each expert's weights; x_scale [1] the
   * token operand's (s1 for GEMM1, s2 for GEMM2); out_scale GEMM1: [1] the static scale its
   * e4m3 output is quantized with (s2).
   * Block: w_scale [E_l, w_scale_blocks, k_blocks] canonical weight-row blocks of 128 x 128;
   * x_scale [k_blocks, scale_ld] the token rows' (transposed: row r, k-block kb at
   * kb * scale_ld + r); out_scale GEMM1: [out_cols / 128, scale_ld] the scales of its e4m3
   * output, written transposed likewise. */
  const float *w_scale;
  const float *x_scale;
  float *out_scale;
  int64_t scale_ld;       /* block: row pitch of the transposed token-scale arrays */
  int32_t w_scale_blocks; /* block: 128-row scale blocks per expert (canonical rows / 128) */
  /* MXFP4 weights (kernels/mxfp4_math.h, prepared layout v4): expert e's section at w_mx +
   * e * w_expert_bytes, its ue8m0 scales [w_rows, K/32] at + w_scales_offset (the packed
   * values come by the weight tensor map). */
  const uint8_t *w_mx;
  int64_t w_expert_bytes;
  int64_t w_scales_offset;
};

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_PARAMS_CUH_
