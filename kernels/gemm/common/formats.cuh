/*
 * formats.cuh - the number formats a mainloop of the family runs: operand dtype, where the
 * dequantization scales apply, and what GEMM1 stores. A format is a tag the kernels are
 * templated on; configs.cu pairs each catalogue with one.
 */
#ifndef MOE_GEMM_COMMON_FORMATS_CUH_
#define MOE_GEMM_COMMON_FORMATS_CUH_

#include "kernels/gemm/common/dtypes.cuh"
#include "kernels/gemm/common/epilogue.cuh"
#include "kernels/gemm/common/params.cuh"
#include "kernels/gemm/common/traits.cuh"
#include "kernels/kernels.h"

namespace moe {
namespace sm90 {

/* BF16 x BF16 -> fp32, no scales; both GEMMs store bf16. */
struct Bf16Format {
  using Op = Bf16;
  static constexpr bool kTensorScaled = false;
  static constexpr bool kBlockScaled = false;
  static constexpr bool kMxWeights = false;
  /* GEMM1's output policy and staging element (epilogue.cuh). */
  __device__ __forceinline__ static StoreBf16 gemm1_store(const GroupedGemmParams &) {
    return StoreBf16{};
  }
};

/*
 * FP8 e4m3 x e4m3 -> fp32 with per-tensor scales (Mixtral / Llama-4 FP8 checkpoints): the whole
 * K accumulates in fp32 and the product of the two scales (token operand x expert's weights)
 * applies once in the epilogue; GEMM1 stores e4m3 quantized with the static GEMM2 input scale,
 * GEMM2 stores bf16.
 */
struct Fp8TensorFormat {
  using Op = E4m3;
  static constexpr bool kTensorScaled = true;
  static constexpr bool kBlockScaled = false;
  static constexpr bool kMxWeights = false;
  __device__ __forceinline__ static StoreE4m3Static gemm1_store(const GroupedGemmParams &p) {
    return StoreE4m3Static{__ldg(p.out_scale)};
  }
};

/*
 * FP8 e4m3 x e4m3 -> fp32 with block scales (DeepSeek-V3 / Qwen3 / Kimi-K2 FP8 checkpoints):
 * weights one fp32 scale per 128 x 128 block, token rows one per row per 128 of K. Each k-block
 * (128 of K, one scale group of both operands) accumulates in its own fp32 registers and is
 * promoted into the tile's accumulator times the product of its two scales
 * (sm90_fp8_block_grouped.cuh); GEMM1 stores e4m3 with one dynamic scale per row per 128 output
 * features, GEMM2 bf16. The token operand is always the permuted copy, whose scales the
 * permute writes transposed ([K/128, rows]) so a thread's scales per k-block are float2 loads.
 */
struct Fp8BlockFormat {
  using Op = E4m3;
  static constexpr bool kTensorScaled = false;
  static constexpr bool kBlockScaled = true;
  static constexpr bool kMxWeights = false;
};

/*
 * MXFP4 weights x BF16 token rows -> fp32 (W4A16, gpt-oss): the weights arrive packed (e2m1
 * pairs, 32 bytes per row per stage of 64 K) with their ue8m0 scales, and the consumers expand
 * them to bf16 in registers, times the scale (exact), as the wgmma A operand
 * (sm90_w4a16_mxfp4_grouped.cuh); the token operand, both GEMMs' outputs and the epilogue are
 * BF16's.
 */
struct Mxfp4W4A16Format {
  using Op = Bf16; /* the token operand, and the expanded weights */
  static constexpr bool kTensorScaled = false;
  static constexpr bool kBlockScaled = false;
  static constexpr bool kMxWeights = true;
  __device__ __forceinline__ static StoreBf16 gemm1_store(const GroupedGemmParams &) {
    return StoreBf16{};
  }
};

/* GEMM1 may gather its token rows itself (cp.async); block-scaled FP8 reads only the permuted
 * copy, whose token scales the permute writes transposed. */
template <class Fmt>
constexpr bool kGathersTokenRows = !Fmt::kBlockScaled;

/* GEMM2 has a persistent form (sm90_grouped_gemm2_persistent.cuh): the one-accumulator
 * mainloop with the weights in shared memory (not block-scaled FP8's promotion, not MXFP4's
 * per-tile scales). */
template <class Fmt>
constexpr bool kHasPersistentGemm2 = !Fmt::kBlockScaled && !Fmt::kMxWeights;

/* Bytes of one weight row per stage: 128 (one swizzle row), or 32 for packed MXFP4 (64 e2m1). */
template <class Fmt>
constexpr int kWeightRowBytes = Fmt::kMxWeights ? kStageRowBytes / 4 : kStageRowBytes;

/* Longest K an MXFP4 tile's scales cover: a tile keeps all its rows' scales in shared memory
 * (the scale row pitch K/32, 90 bytes for gpt-oss, is no legal TMA stride, so they arrive as
 * one bulk copy per tile). */
constexpr int kMxMaxK = MOE_SM90_MX_MAX_K;

/* Shared memory past the stage ring a format needs: MXFP4's tile scales (BLOCK_M rows of
 * kMxMaxK / 32 bytes) behind their barrier and alignment. */
template <class Fmt, int BLOCK_M>
constexpr int kFormatSmemBytes = Fmt::kMxWeights ? kMxMaxK / 32 * BLOCK_M + 256 : 0;

/* The CTA shape of a format's kernel (traits.cuh with the format's weight rows and smem). */
template <class Fmt, int BLOCK_M, int N, int C, int STAGES>
using FormatTraits =
    GroupedGemmTraits<BLOCK_M, N, C, STAGES, kWeightRowBytes<Fmt>, kFormatSmemBytes<Fmt, BLOCK_M>>;

/* The dequantization scale of `expert`'s tile (formats with kTensorScaled), else 1. */
template <class Fmt>
__device__ __forceinline__ float tensor_scale(const GroupedGemmParams &p, int expert) {
  if constexpr (Fmt::kTensorScaled) {
    return __fmul_rn(__ldg(p.x_scale), __ldg(p.w_scale + expert));
  } else {
    return 1.0f;
  }
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_FORMATS_CUH_
