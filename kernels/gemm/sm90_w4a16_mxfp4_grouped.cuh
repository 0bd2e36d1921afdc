/*
 * sm90_w4a16_mxfp4_grouped.cuh - the mainloop of MXFP4 weights x BF16 token rows (W4A16,
 * Mxfp4W4A16Format, common/formats.cuh) for the grouped GEMM kernel of sm90_grouped.cuh, which
 * runs it in place of its shared-memory-A main loop; tile order, token rows, stage ring and
 * epilogue are the family's.
 *
 * Hopper has no FP4 tensor-core input, so the weights are the wgmma A operand from registers
 * (swap-AB puts them there): per stage of 64 K, TMA brings each weight row's 32 prepared bytes
 * (a quarter of BF16's bytes: decode streams 4.25 bits a weight), and every consumer thread
 * expands its fragment (mma.m16n8k16's A layout: rows g and g + 8 of its warp's 16, k pairs
 * 2q and 2q + 8 of each k16 step, g = lane / 4, q = lane % 4) to bf16 times the block's scale.
 * The prepared bit order (kernels/mxfp4_math.h, moe_mx_pack_block) puts a thread's eight codes
 * of a 32-value block in one word, where each code already sits at the bits of a bf16 (sign bit
 * 15, the exponent's low bits 8..7, the mantissa's top bit 6) up to a shift: a pair costs a mask,
 * at most two shifts, and one bf16x2 multiply by 2^(s - 1) (the code read as bf16 is its value
 * times 2^-126). The multiply is exact, as docs/formats.md shows for fp32 (every product has at
 * most 2 significant bits; the subnormal products of small scales are bf16 subnormals, which the
 * multiply keeps), so the wgmma sums exactly the CPU reference's dequantized weights (only the
 * summation order differs). The expansion of stage kb + 1 runs while stage kb's wgmma group is in
 * flight (two register sets for A): the tensor pipe waits only for the group's issue.
 *
 * Scales: a tile's rows x K/32 ue8m0 bytes, contiguous in the prepared layout, arrive once
 * per tile by one bulk copy into shared memory (the row pitch K/32 is no legal TMA stride);
 * rows past the expert's weight rows read scale 0 (their values are TMA's zero fill anyway).
 */
#ifndef MOE_GEMM_SM90_W4A16_MXFP4_GROUPED_CUH_
#define MOE_GEMM_SM90_W4A16_MXFP4_GROUPED_CUH_

#include <stdint.h>

#include <type_traits>

#include "kernels/gemm/common/dtypes.cuh"
#include "kernels/gemm/common/formats.cuh"
#include "kernels/gemm/common/params.cuh"
#include "kernels/gemm/common/pipeline.cuh"
#include "kernels/ptx/mbarrier.cuh"
#include "kernels/ptx/tma.cuh"
#include "kernels/ptx/wgmma.cuh"

namespace moe {
namespace sm90 {

/* K values per stage: the token operand's 128-byte row of bf16. */
constexpr int kMxStageK = kBlockK<Bf16>;
constexpr int kMxRowBytes = kWeightRowBytes<Mxfp4W4A16Format>;
static_assert(kMxRowBytes * 2 == kMxStageK, "a packed weight row per stage: two e2m1 per byte");
static_assert(kMxStageK % 32 == 0, "a stage must hold whole 32-value scale blocks");

/* bf16x2 of 2^(s - 1) twice, for ue8m0 s <= 128: the factor 2^126 * 2^(s - 127) that turns a
 * prepared code read as bf16 (its value times 2^-126) into the weight. */
__device__ __forceinline__ uint32_t mx_factor_bf16x2(uint32_t s) {
  return s * 0x00800080u + 126u * 0x00800080u;
}

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t r;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/*
 * The eight codes of a prepared word (kernels/mxfp4_math.h, moe_mx_pack_block: part t's two
 * codes as a bf16x2 in out[t]) times the scale: f1, and for kTwo a second factor f2 (scales past
 * 128, whose 2^(s - 1) is no bf16). Parts 0 and 1 are a bf16 pair's bits after a mask (part 1
 * after a shift); parts 2 and 3 are multiplied as magnitudes, then their sign bits XORed in
 * (exact: the product of a magnitude and a positive factor only changes sign).
 */
template <bool kTwo>
__device__ __forceinline__ void mx_expand_word(uint32_t w, uint32_t f1, uint32_t f2, uint32_t &o0,
                                               uint32_t &o1, uint32_t &o2, uint32_t &o3) {
  constexpr uint32_t kMagSign = 0x81C081C0u, kMag = 0x01C001C0u, kSign = 0x80008000u;
  auto scale = [&](uint32_t t) {
    const uint32_t r = bf16x2_mul(t, f1);
    return kTwo ? bf16x2_mul(r, f2) : r;
  };
  o0 = scale(w & kMagSign);
  o1 = scale((w << 3) & kMagSign);
  o2 = scale((w << 6) & kMag) ^ ((w << 2) & kSign);
  o3 = scale((w >> 3) & kMag) ^ ((w << 1) & kSign);
}

/*
 * Producer: the tile's scales (rows m0.. of `expert`, all of K) into `dst`, completing on
 * `bar`. rows past the expert's weight rows are not copied (the consumers read scale 0 there).
 * K % 64 == 0 and the prepared sections' 128-byte alignment make the source, the size and the
 * destination 16-byte multiples.
 */
template <int BLOCK_M>
__device__ __forceinline__ void load_mx_scales(const GroupedGemmParams &p, int expert, int m0,
                                               uint8_t *dst, uint64_t *bar) {
  const int scale_ld = 2 * p.k_blocks;
  const int rows = min(BLOCK_M, p.w_rows - m0);
  const uint32_t bytes = static_cast<uint32_t>(rows * scale_ld + 15) & ~15u;
  const uint8_t *src = p.w_mx + static_cast<int64_t>(expert) * p.w_expert_bytes +
                       p.w_scales_offset + static_cast<int64_t>(m0) * scale_ld;
  ptx::mbar_arrive_expect_tx(bar, bytes);
  ptx::bulk_load(dst, src, bytes, bar);
}

/*
 * A consumer warpgroup's main loop over K (the MXFP4 counterpart of sm90_grouped.cuh's): NV
 * live token columns (with_live_columns), accumulators d, the stage ring full / empty, the
 * warpgroup's weight rows at a_wg (stage s at + s * kABytes, 32 bytes a row) and their scales
 * at scales_wg (row pitch 2 * k_blocks), valid_rows of them (the rest read scale 0), the token
 * rows at b_base. The tile's scales have landed (the caller waited on their barrier).
 */
template <int NV, int kAtoms, int N, int STAGES, int C, int kABytes, int kBBytes>
__device__ __forceinline__ void mx_main_loop(float (&d)[kAtoms][N / 2], uint64_t *full,
                                             uint64_t *empty, const uint8_t *a_wg, uint32_t b_base,
                                             const uint8_t *scales_wg, int valid_rows, int k_blocks,
                                             int warp, int lane) {
  using Mma = ptx::WgmmaBf16Rs<NV>;
  constexpr int R = Mma::kRegs;
  const int scale_ld = 2 * k_blocks;
  const int q = lane & 3;
  const int row = 16 * warp + lane / 4; /* + 64 a + 8 h */

  /* Expands stage s (k-block kb) into dst[atom][k16 step][fragment register]: per row, word q of
   * each 32-value block is this thread's fragment of two k16 steps (part t = step 2b + t / 2,
   * register 2 (t % 2) + h). */
  auto expand = [&](uint32_t(&dst)[kAtoms][4][4], int s, int kb) {
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = row + 64 * a + 8 * h;
        const uint8_t *src = a_wg + s * kABytes + r * kMxRowBytes + 4 * q;
        const uint32_t w[2] = {*reinterpret_cast<const uint32_t *>(src),
                               *reinterpret_cast<const uint32_t *>(src + 16)};
        /* rows past the expert's read scale 0: their codes are TMA's zero fill */
        const uint32_t sc =
            r < valid_rows ? *reinterpret_cast<const uint16_t *>(scales_wg + r * scale_ld + 2 * kb)
                           : 0u;
        const uint32_t sb[2] = {sc & 0xFFu, sc >> 8};
        if (sb[0] <= 128u && sb[1] <= 128u) {
#pragma unroll
          for (int b = 0; b < 2; ++b)
            mx_expand_word<false>(w[b], mx_factor_bf16x2(sb[b]), 0u, dst[a][2 * b][h],
                                  dst[a][2 * b][2 + h], dst[a][2 * b + 1][h],
                                  dst[a][2 * b + 1][2 + h]);
        } else {
          /* 2^(s - 1) past bf16: 2^127, then 2^(s - 128) (0xFF: NaN, as the CPU decodes it) */
#pragma unroll
          for (int b = 0; b < 2; ++b) {
            const uint32_t lo = min(sb[b], 128u);
            const uint32_t f2 = sb[b] <= 128u    ? 0x3F803F80u
                                : sb[b] == 0xFFu ? 0x7FC07FC0u
                                                 : (sb[b] - 1u) * 0x00800080u;
            mx_expand_word<true>(w[b], mx_factor_bf16x2(lo), f2, dst[a][2 * b][h],
                                 dst[a][2 * b][2 + h], dst[a][2 * b + 1][h],
                                 dst[a][2 * b + 1][2 + h]);
          }
        }
      }
    }
  };

  uint32_t A[2][kAtoms][4][4];
  int s = 0;
  uint32_t ph = 0;
  ptx::mbar_wait(&full[0], 0);
  expand(A[0], 0, 0);
  /* One k-block with register set B: issue its wgmma group, expand the next stage into the
   * other set meanwhile, then wait for the group and release its stage. */
  auto step = [&](auto buf, int kb) {
    constexpr int B = decltype(buf)::value;
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
    ptx::wgmma_fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint64_t db = ptx::wgmma_desc_sw128(b_base + s * kBBytes + j * 32);
#pragma unroll
      for (int a = 0; a < kAtoms; ++a) {
        Mma::mma(A[B][a][j], db, reinterpret_cast<float(&)[R]>(d[a]), (kb > 0 || j > 0) ? 1 : 0);
      }
    }
    ptx::wgmma_commit();
    int s_next = s;
    uint32_t ph_next = ph;
    advance_stage<STAGES>(s_next, ph_next);
    if (kb + 1 < k_blocks) {
      ptx::mbar_wait(&full[s_next], ph_next);
      expand(A[B ^ 1], s_next, kb + 1);
    }
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
      ptx::wgmma_fence_operand(d[a]);
#pragma unroll
      for (int j = 0; j < 4; ++j) ptx::wgmma_fence_operand(A[B][a][j]);
    }
    release_stage<C>(empty, s, lane);
    s = s_next;
    ph = ph_next;
  };
  for (int kb = 0; kb < k_blocks; kb += 2) {
    step(std::integral_constant<int, 0>{}, kb);
    if (kb + 1 < k_blocks) step(std::integral_constant<int, 1>{}, kb + 1);
  }
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_SM90_W4A16_MXFP4_GROUPED_CUH_
