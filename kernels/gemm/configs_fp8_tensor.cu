/*
 * configs_fp8_tensor.cu - the sm_90a FP8 per-tensor catalogue: one kernel pair per row of
 * MOE_SM90_FP8_TENSOR_CONFIGS (kernels/kernels.h: BF16's rows, 128-element K stages).
 */
#include "kernels/gemm/catalogue_rows.cuh"

namespace moe {
namespace sm90 {

static_assert(MOE_SM90_FP8_BLOCK_K == kBlockK<E4m3>,
              "e4m3 stages hold 128 elements of K (128B swizzle)");

#define MOE_CONFIG_ROW_Fp8TensorFormat(TILE, CL, BM1, BM2, BK, ST) \
  MOE_CONFIG_ENTRY_FMT(Fp8TensorFormat, TILE, CL, BM1, BM2, ST)
MOE_DEFINE_CATALOGUE(kFp8TensorCatalogue, Fp8TensorFormat, E4m3, MOE_SM90_FP8_TENSOR_CONFIGS)

}  // namespace sm90
}  // namespace moe
