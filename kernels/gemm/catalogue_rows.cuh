/*
 * catalogue_rows.cuh - how one row of a config catalogue becomes its kernel pair: the GEMM1
 * (permuted-input and gathering), GEMM2 and persistent GEMM2 instantiations of a format
 * (common/formats.cuh). Included by the one .cu file per catalogue (configs_<format>.cu), so the
 * catalogues compile in parallel.
 */
#ifndef MOE_GEMM_CATALOGUE_ROWS_CUH_
#define MOE_GEMM_CATALOGUE_ROWS_CUH_

#include "kernels/gemm/common/formats.cuh"
#include "kernels/gemm/configs.cuh"
#include "kernels/gemm/sm90_grouped.cuh"
#include "kernels/gemm/sm90_grouped_gemm2_persistent.cuh"
#include "kernels/kernels.h"

namespace moe {
namespace sm90 {

/* Below this CTA tile GEMM1 always gathers its token rows itself (cp.async); from it on, each
 * config also has a GEMM1 that reads a permuted copy of hidden by TMA, which the launcher takes
 * when there are many tokens per expert (launch.cu, sm90_grouped.cuh). */
constexpr int kPermuteFromN = 64;

#define MOE_GEMM_KERNEL(FMT, BM, TILE, CL, ST, G1, GA)                                          \
  GemmKernel {                                                                                  \
    reinterpret_cast<const void *>(&sm90_grouped_gemm<FMT, BM, (TILE) / (CL), CL, ST, G1, GA>), \
        BM, FormatTraits<FMT, BM, (TILE) / (CL), CL, ST>::kThreads,                             \
        FormatTraits<FMT, BM, (TILE) / (CL), CL, ST>::kSmemBytes, (G1) && !(GA), 0,             \
        FMT::kMxWeights ? (BM) : 0                                                              \
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
        1,
        0};
  } else {
    return GemmKernel{nullptr, BM, 0, 0, 0, 0, 0};
  }
}
template <class Fmt, int BM, int TILE, int CL, int ST>
GemmKernel gemm2_persistent_kernel() {
  if constexpr (CL == 1 && kHasPersistentGemm2<Fmt>) {
    return gemm2_persistent_c1<Fmt, BM, TILE, ST>();
  } else {
    return GemmKernel{nullptr, BM, 0, 0, 0, 0, 0};
  }
}

/* One row of a catalogue whose kernels run format FMT (common/formats.cuh): GEMM1 reading the
 * permuted copy and GEMM1 gathering its rows (the same permuted-copy kernel where the format
 * never gathers, and below kPermuteFromN the gathering one in both places), GEMM2, and GEMM2's
 * persistent form where the format and the row have one. */
#define MOE_CONFIG_ENTRY_FMT(FMT, TILE, CL, BM1, BM2, ST)                                 \
  ConfigEntry{TILE,                                                                       \
              CL,                                                                         \
              MOE_GEMM_KERNEL(FMT, BM1, TILE, CL, ST, true,                               \
                              kGathersTokenRows<FMT> && ((TILE) / (CL)) < kPermuteFromN), \
              MOE_GEMM_KERNEL(FMT, BM1, TILE, CL, ST, true, kGathersTokenRows<FMT>),      \
              MOE_GEMM_KERNEL(FMT, BM2, TILE, CL, ST, false, false),                      \
              gemm2_persistent_kernel<FMT, BM2, TILE, CL, ST>()},

/* Defines `const Catalogue NAME` from the X-macro LIST with kernels of format FMT, whose
 * operands are DTYPE (one catalogue per .cu file). */
#define MOE_DEFINE_CATALOGUE(NAME, FMT, DTYPE, LIST)                                   \
  namespace {                                                                          \
  const ConfigEntry NAME##_rows[] = {LIST(MOE_CONFIG_ROW_##FMT)};                      \
  }                                                                                    \
  extern const Catalogue NAME = {                                                      \
      NAME##_rows, static_cast<int32_t>(sizeof(NAME##_rows) / sizeof(NAME##_rows[0])), \
      DTYPE::kBytes, DTYPE::kTmaType};

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_CATALOGUE_ROWS_CUH_
