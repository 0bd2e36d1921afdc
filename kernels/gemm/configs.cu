/*
 * configs.cu - the lookup of the sm_90a config catalogues by key (MOE_K_CATALOGUE_*); each
 * catalogue is defined in its own configs_<format>.cu.
 */
#include "kernels/gemm/configs.cuh"

#include "kernels/kernels.h"

namespace moe {
namespace sm90 {

extern const Catalogue kBf16Catalogue;
extern const Catalogue kFp8TensorCatalogue;
extern const Catalogue kFp8BlockCatalogue;
extern const Catalogue kMxfp4W4A16Catalogue;

const Catalogue *find_catalogue(int32_t key) {
  switch (key) {
    case MOE_K_CATALOGUE_SM90_BF16:
      return &kBf16Catalogue;
    case MOE_K_CATALOGUE_SM90_FP8_TENSOR:
      return &kFp8TensorCatalogue;
    case MOE_K_CATALOGUE_SM90_FP8_BLOCK:
      return &kFp8BlockCatalogue;
    case MOE_K_CATALOGUE_SM90_MXFP4_W4A16:
      return &kMxfp4W4A16Catalogue;
    default:
      return nullptr;
  }
}

}  // namespace sm90
}  // namespace moe
