/*
 * sm90_w4a16_mxfp4_grouped.cuh - the mainloop of MXFP4 weights x BF16 token rows (W4A16,
 * Mxfp4W4A16Format, common/formats.cuh) for the grouped GEMM kernel of sm90_grouped.cuh, which
 * runs it in place of its shared-memory-A main loop; tile order, token rows, stage ring and
 * epilogue are the family's.
 *
 * Hopper has no FP4 tensor-core input, so the weights are the wgmma A operand from registers
 * (swap-AB puts them there): per stage of 64 K, TMA brings each weight row's 32 packed bytes
 * (a quarter of BF16's bytes: decode streams 4.25 bits a weight), and every consumer thread
 * expands its fragment (mma.m16n8k16's A layout: rows g and g + 8 of its warp's 16, k pairs
 * 2q and 2q + 8 of each k16 step, g = lane / 4, q = lane % 4) to bf16 times the block's scale:
 *   - e2m1 -> bf16 by table: a byte permute (PRMT) looks up each magnitude's high and low byte
 *     (0, 0.5, 1, 1.5, 2, 3, 4, 6 are all bf16 values), the sign bit moves to bit 15;
 *   - times 2^(s - 127), one bf16x2 multiply: exact, as docs/formats.md shows for fp32 (every
 *     product has at most 2 significant bits; the subnormal products of small scales are bf16
 *     subnormals, which the multiply keeps), so the wgmma sums exactly the CPU reference's
 *     dequantized weights (only the summation order differs).
 * The expansion of stage kb + 1 runs while stage kb's wgmma group is in flight (two register
 * sets for A): the tensor pipe waits only for the group's issue.
 *
 * Scales: a tile's rows x K/32 ue8m0 bytes, contiguous in the prepared layout (v3), arrive once
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

/* The bf16 bits of 2^(s - 127) twice (bf16x2); ue8m0 0 is the subnormal 2^-127 and 0xFF NaN. */
__device__ __forceinline__ uint32_t mx_scale_bf16x2(uint32_t s) {
  const uint32_t b = (s << 7) | ((s == 0u || s == 0xFFu) ? 0x40u : 0u);
  return b | (b << 16);
}

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t r;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/*
 * The four e2m1 codes in bits 0..15 of x (code i in bits 4i..4i+3) times the bf16x2 scale:
 * lo = {code 0, code 1}, hi = {code 2, code 3} as bf16x2 (the lower k in the low half).
 */
__device__ __forceinline__ void e2m1x4_to_bf16x2(uint32_t x, uint32_t scale2, uint32_t &lo,
                                                 uint32_t &hi) {
  /* bf16 of the magnitudes 0..7 (0, 0.5, 1, 1.5, 2, 3, 4, 6): high bytes, then low bytes,
   * indexed by a PRMT selector nibble (magnitude i = byte i of the pair of words) */
  constexpr uint32_t kHi03 = 0x3F3F3F00u, kHi47 = 0x40404040u;
  constexpr uint32_t kLo03 = 0xC0800000u, kLo47 = 0xC0804000u;
  const uint32_t sel = x & 0x7777u;
  const uint32_t h = __byte_perm(kHi03, kHi47, sel);
  const uint32_t l = __byte_perm(kLo03, kLo47, sel);
  uint32_t a = __byte_perm(l, h, 0x5140u); /* bytes l0 h0 l1 h1: codes 0, 1 */
  uint32_t b = __byte_perm(l, h, 0x7362u); /* codes 2, 3 */
  /* sign bits 3, 7 -> 15, 31 and 11, 15 -> 15, 31 (the products' other bits are masked off) */
  a |= ((x & 0x88u) * 0x01001000u) & 0x80008000u;
  b |= ((x & 0x8800u) * 0x00010010u) & 0x80008000u;
  lo = bf16x2_mul(a, scale2);
  hi = bf16x2_mul(b, scale2);
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
  const uint32_t q = static_cast<uint32_t>(lane & 3);
  const uint32_t pick = q | ((4u + q) << 4); /* byte q of two words */
  const int row = 16 * warp + lane / 4;      /* + 64 a + 8 h */

  /* Expands stage s (k-block kb) into dst[atom][k16 step][fragment register]. */
  auto expand = [&](uint32_t(&dst)[kAtoms][4][4], int s, int kb) {
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = row + 64 * a + 8 * h;
        const uint4 *src = reinterpret_cast<const uint4 *>(a_wg + s * kABytes + r * kMxRowBytes);
        const uint4 w0 = src[0], w1 = src[1];
        const uint32_t w[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
        const uint32_t sc =
            r < valid_rows ? *reinterpret_cast<const uint16_t *>(scales_wg + r * scale_ld + 2 * kb)
                           : 0u;
        const uint32_t s2[2] = {r < valid_rows ? mx_scale_bf16x2(sc & 0xFFu) : 0u,
                                r < valid_rows ? mx_scale_bf16x2(sc >> 8) : 0u};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          /* k16 step j: byte q of word 2j (k 16j + 2q, +1) and of word 2j + 1 (k + 8) */
          const uint32_t x = __byte_perm(w[2 * j], w[2 * j + 1], pick);
          e2m1x4_to_bf16x2(x, s2[j / 2], dst[a][j][h], dst[a][j][2 + h]);
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
