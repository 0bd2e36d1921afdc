/*
 * configs_fp8_block.cu - the sm_90a block-scaled FP8 catalogue: one kernel pair per row of
 * MOE_SM90_FP8_BLOCK_CONFIGS (kernels/kernels.h), in catalogue order.
 */
#include "kernels/gemm/catalogue_rows.cuh"

namespace moe {
namespace sm90 {

#define MOE_CONFIG_CHECK_FP8_BLOCK(TILE, CL, BM1, BM2, BK, ST)                                  \
  static_assert((BK) == kBlockK<E4m3>, "e4m3 stages hold 128 elements of K (one scale group)"); \
  static_assert((TILE) % (8 * (CL)) == 0, "tile must be a multiple of 8 * cluster");
MOE_SM90_FP8_BLOCK_CONFIGS(MOE_CONFIG_CHECK_FP8_BLOCK)

#define MOE_CONFIG_ROW_Fp8BlockFormat(TILE, CL, BM1, BM2, BK, ST) \
  MOE_CONFIG_ENTRY_FMT(Fp8BlockFormat, TILE, CL, BM1, BM2, ST)
MOE_DEFINE_CATALOGUE(kFp8BlockCatalogue, Fp8BlockFormat, E4m3, MOE_SM90_FP8_BLOCK_CONFIGS)

}  // namespace sm90
}  // namespace moe
