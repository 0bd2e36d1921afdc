/*
 * configs.cu - the sm_90a config catalogues: one (GEMM1, GEMM2) kernel pair per row of each
 * X-macro list of kernels/kernels.h (MOE_SM90_BF16_CONFIGS, ...), in catalogue order, and the
 * lookup by catalogue key.
 */
#include "kernels/gemm/configs.cuh"

#include "kernels/gemm/common/formats.cuh"
#include "kernels/gemm/sm90_grouped.cuh"
#include "kernels/gemm/sm90_grouped_gemm2_persistent.cuh"
#include "kernels/kernels.h"

namespace moe {
namespace sm90 {

/* Below this CTA tile GEMM1 always gathers its token rows itself (cp.async); from it on, each
 * config also has a GEMM1 that reads a permuted copy of hidden by TMA, which the launcher takes
 * when there are many tokens per expert (launch.cu, sm90_bf16_grouped.cuh). */
constexpr int kPermuteFromN = 64;

#define MOE_GEMM_KERNEL(FMT, BM, TILE, CL, ST, G1, GA)                                          \
  GemmKernel {                                                                                  \
    reinterpret_cast<const void *>(&sm90_grouped_gemm<FMT, BM, (TILE) / (CL), CL, ST, G1, GA>), \
        BM, GroupedGemmTraits<BM, (TILE) / (CL), CL, ST>::kThreads,                             \
        GroupedGemmTraits<BM, (TILE) / (CL), CL, ST>::kSmemBytes, (G1) && !(GA), 0              \
  }

/* GEMM2's persistent form (sm90_grouped_gemm2_persistent.cuh) for the configs with C = 1 and
 * one CTA per SM (two resident one-tile CTAs already overlap one's fill with the other's main
 * loop); func = NULL for the others. The launcher takes it for short K only (launch.cu). */
template <class Fmt, int BM, int N, int ST>
GemmKernel gemm2_persistent_c1() {
  if constexpr (GroupedGemmTraits<BM, N, 1, ST>::kMinBlocks == 1) {
    return GemmKernel{
        reinterpret_cast<const void *>(&sm90_grouped_gemm2_persistent<Fmt, BM, N, ST>),
        BM,
        GroupedGemmTraits<BM, N, 1, ST>::kThreads,
        PersistentTraits<BM, N, ST>::kSmemBytes,
        0,
        1};
  } else {
    return GemmKernel{nullptr, BM, 0, 0, 0, 0};
  }
}
template <class Fmt, int BM, int TILE, int CL, int ST>
GemmKernel gemm2_persistent_kernel() {
  if constexpr (CL == 1) {
    return gemm2_persistent_c1<Fmt, BM, TILE, ST>();
  } else {
    return GemmKernel{nullptr, BM, 0, 0, 0, 0};
  }
}

/* One row of a catalogue whose kernels run format FMT (common/formats.cuh). */
#define MOE_CONFIG_ENTRY_FMT(FMT, TILE, CL, BM1, BM2, ST)                                     \
  ConfigEntry{TILE,                                                                           \
              CL,                                                                             \
              MOE_GEMM_KERNEL(FMT, BM1, TILE, CL, ST, true, ((TILE) / (CL)) < kPermuteFromN), \
              MOE_GEMM_KERNEL(FMT, BM1, TILE, CL, ST, true, true),                            \
              MOE_GEMM_KERNEL(FMT, BM2, TILE, CL, ST, false, false),                          \
              gemm2_persistent_kernel<FMT, BM2, TILE, CL, ST>()},
#define MOE_CONFIG_ENTRY_BF16(TILE, CL, BM1, BM2, BK, ST) \
  MOE_CONFIG_ENTRY_FMT(Bf16Format, TILE, CL, BM1, BM2, ST)
#define MOE_CONFIG_ENTRY_FP8_TENSOR(TILE, CL, BM1, BM2, BK, ST) \
  MOE_CONFIG_ENTRY_FMT(Fp8TensorFormat, TILE, CL, BM1, BM2, ST)

#define MOE_CONFIG_CHECK_BF16(TILE, CL, BM1, BM2, BK, ST)                                   \
  static_assert((BK) == kBlockK<Bf16>, "bf16 stages hold 64 elements of K (128B swizzle)"); \
  static_assert((TILE) % (8 * (CL)) == 0, "tile must be a multiple of 8 * cluster");
MOE_SM90_BF16_CONFIGS(MOE_CONFIG_CHECK_BF16)
static_assert(MOE_SM90_FP8_BLOCK_K == kBlockK<E4m3>,
              "e4m3 stages hold 128 elements of K (128B swizzle)");

namespace {
const ConfigEntry kBf16Configs[] = {MOE_SM90_BF16_CONFIGS(MOE_CONFIG_ENTRY_BF16)};
const Catalogue kBf16Catalogue = {
    kBf16Configs, static_cast<int32_t>(sizeof(kBf16Configs) / sizeof(kBf16Configs[0])), 2};
const ConfigEntry kFp8TensorConfigs[] = {MOE_SM90_FP8_TENSOR_CONFIGS(MOE_CONFIG_ENTRY_FP8_TENSOR)};
const Catalogue kFp8TensorCatalogue = {
    kFp8TensorConfigs,
    static_cast<int32_t>(sizeof(kFp8TensorConfigs) / sizeof(kFp8TensorConfigs[0])), 1};
}  // namespace

const Catalogue *find_catalogue(int32_t key) {
  switch (key) {
    case MOE_K_CATALOGUE_SM90_BF16:
      return &kBf16Catalogue;
    case MOE_K_CATALOGUE_SM90_FP8_TENSOR:
      return &kFp8TensorCatalogue;
    default:
      return nullptr;
  }
}

}  // namespace sm90
}  // namespace moe
