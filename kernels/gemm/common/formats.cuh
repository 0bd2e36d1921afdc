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

namespace moe {
namespace sm90 {

/* BF16 x BF16 -> fp32, no scales; both GEMMs store bf16. */
struct Bf16Format {
  using Op = Bf16;
  static constexpr bool kTensorScaled = false;
  static constexpr bool kBlockScaled = false;
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
};

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
