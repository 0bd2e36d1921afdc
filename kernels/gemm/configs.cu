/*
 * configs.cu - the sm_90a BF16 config catalogue: one (GEMM1, GEMM2) kernel pair per row of
 * MOE_SM90_BF16_CONFIGS (kernels/kernels.h), in catalogue order.
 */
#include "../kernels.h"
#include "configs.cuh"
#include "sm90_bf16_grouped.cuh"
#include "sm90_bf16_pingpong.cuh"

namespace moe {
namespace sm90 {

/* GEMM1 gathers token rows itself (cp.async) below this CTA tile; from it on, it reads a
 * permuted copy of hidden by TMA (see sm90_bf16_grouped.cuh). */
constexpr int kPermuteFromN = 64;

#define MOE_GEMM_KERNEL(BM, TILE, CL, ST, G1, GA, CM)                                  \
  GemmKernel {                                                                         \
    reinterpret_cast<const void *>(                                                    \
        &sm90_bf16_grouped_gemm<BM, (TILE) / (CL), CL, ST, G1, GA, CM>),               \
        BM, GroupedGemmTraits<BM, (TILE) / (CL), CL, ST>::kThreads,                    \
        GroupedGemmTraits<BM, (TILE) / (CL), CL, ST>::kSmemBytes, (G1) && !(GA), 0, CM \
  }

/* Ping-pong kernels always read TMA-fed token rows (GEMM1: the permuted copy of hidden). */
#define MOE_PINGPONG_KERNEL(BM, TILE, CL, ST, G1)                                            \
  GemmKernel {                                                                               \
    reinterpret_cast<const void *>(&sm90_bf16_pingpong_gemm<(TILE) / (CL), CL, ST, G1>), BM, \
        PingpongTraits<(TILE) / (CL), CL, ST>::kThreads,                                     \
        PingpongTraits<(TILE) / (CL), CL, ST>::kSmemBytes, G1, 1, 1                          \
  }

/* Kind (kernels/kernels.h): 0 one tile per CTA, 1 ping-pong, 2 one tile per CTA in M pairs. */
#define MOE_KIND_0(BM, TILE, CL, ST, G1, GA) MOE_GEMM_KERNEL(BM, TILE, CL, ST, G1, GA, 1)
#define MOE_KIND_1(BM, TILE, CL, ST, G1, GA) MOE_PINGPONG_KERNEL(BM, TILE, CL, ST, G1)
#define MOE_KIND_2(BM, TILE, CL, ST, G1, GA) MOE_GEMM_KERNEL(BM, TILE, CL, ST, G1, GA, 2)

#define MOE_CONFIG_ENTRY(TILE, CL, BM1, BM2, BK, ST, KIND)                               \
  ConfigEntry{TILE,                                                                      \
              CL,                                                                        \
              BK,                                                                        \
              ST,                                                                        \
              MOE_KIND_##KIND(BM1, TILE, CL, ST, true, ((TILE) / (CL)) < kPermuteFromN), \
              MOE_KIND_##KIND(BM2, TILE, CL, ST, false, false)},

#define MOE_CONFIG_CHECK(TILE, CL, BM1, BM2, BK, ST, KIND)                               \
  static_assert((BK) == 64, "sm90 bf16 kernels use 64-element K stages (128B swizzle)"); \
  static_assert((TILE) % (8 * (CL)) == 0, "tile must be a multiple of 8 * cluster");     \
  static_assert((KIND) != 1 || ((BM1) == 128 && (BM2) == 128), "ping-pong tiles: 128 rows");
MOE_SM90_BF16_CONFIGS(MOE_CONFIG_CHECK)

const ConfigEntry kBf16Configs[] = {MOE_SM90_BF16_CONFIGS(MOE_CONFIG_ENTRY)};
const int32_t kNumBf16Configs =
    static_cast<int32_t>(sizeof(kBf16Configs) / sizeof(kBf16Configs[0]));

}  // namespace sm90
}  // namespace moe
