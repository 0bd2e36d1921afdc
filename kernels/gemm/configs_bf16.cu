/*
 * configs_bf16.cu - the sm_90a BF16 x BF16 catalogue: one kernel pair per row of
 * MOE_SM90_BF16_CONFIGS (kernels/kernels.h), in catalogue order.
 */
#include "kernels/gemm/catalogue_rows.cuh"

namespace moe {
namespace sm90 {

#define MOE_CONFIG_CHECK_BF16(TILE, CL, BM1, BM2, BK, ST)                                   \
  static_assert((BK) == kBlockK<Bf16>, "bf16 stages hold 64 elements of K (128B swizzle)"); \
  static_assert((TILE) % (8 * (CL)) == 0, "tile must be a multiple of 8 * cluster");
MOE_SM90_BF16_CONFIGS(MOE_CONFIG_CHECK_BF16)

#define MOE_CONFIG_ROW_Bf16Format(TILE, CL, BM1, BM2, BK, ST) \
  MOE_CONFIG_ENTRY_FMT(Bf16Format, TILE, CL, BM1, BM2, ST)
MOE_DEFINE_CATALOGUE(kBf16Catalogue, Bf16Format, Bf16, MOE_SM90_BF16_CONFIGS)

}  // namespace sm90
}  // namespace moe
