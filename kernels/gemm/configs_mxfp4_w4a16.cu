/*
 * configs_mxfp4_w4a16.cu - the sm_90a MXFP4 x BF16 (W4A16) catalogue: one kernel pair per row of
 * MOE_SM90_MXFP4_W4A16_CONFIGS (kernels/kernels.h), in catalogue order. Its tensor-map element
 * is the token operand's (bf16); the weights' map is launch.cu's own (uint8, 3-D).
 */
#include "kernels/gemm/catalogue_rows.cuh"

namespace moe {
namespace sm90 {

#define MOE_CONFIG_CHECK_MXFP4(TILE, CL, BM1, BM2, BK, ST)                                  \
  static_assert((BK) == kBlockK<Bf16>, "W4A16 stages hold 64 K (the bf16 token row)");      \
  static_assert((BM1) == (BM2) && ((BM1) == 64 || (BM1) == 128), "MXFP4 tiles: 64 or 128"); \
  static_assert((TILE) % (8 * (CL)) == 0, "tile must be a multiple of 8 * cluster");
MOE_SM90_MXFP4_W4A16_CONFIGS(MOE_CONFIG_CHECK_MXFP4)

#define MOE_CONFIG_ROW_Mxfp4W4A16Format(TILE, CL, BM1, BM2, BK, ST) \
  MOE_CONFIG_ENTRY_FMT(Mxfp4W4A16Format, TILE, CL, BM1, BM2, ST)
MOE_DEFINE_CATALOGUE(kMxfp4W4A16Catalogue, Mxfp4W4A16Format, Bf16, MOE_SM90_MXFP4_W4A16_CONFIGS)

}  // namespace sm90
}  // namespace moe
