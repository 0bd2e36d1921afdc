/*
 * sm90_fp8_block_grouped.cuh - the mainloop and GEMM1 epilogue of block-scaled FP8 e4m3 x e4m3
 * (Fp8BlockFormat, common/formats.cuh) for the grouped GEMM kernel of sm90_grouped.cuh, which
 * runs them in place of its one-accumulator main loop and its GEMM1 epilogue.
 *
 * Two-level accumulation: one k-block is 128 of K, exactly one scale group of both operands
 * (weights 128 x 128, token rows 1 x 128). Its wgmma k-steps accumulate into registers of their
 * own (the tensor core's fp32 accumulation of e4m3 products keeps fewer mantissa bits over a
 * long K), and after the group completes each element is promoted into the tile's accumulator:
 * acc += part * (w_scale * x_scale), one multiply and one fused multiply-add. The promotion
 * waits for the k-block's wgmma group (wait<0>): the two consumer warpgroups of a CTA
 * interleave, so one's promotion overlaps the other's wgmma.
 *
 * Scales, per consumer thread and k-block: the weight scale of its warpgroup's rows (a gated
 * GEMM1 tile interleaves up and gate rows in 8-row blocks, so accumulator row r (up) and r + 8
 * (gate) take the up and the gate block's scale), and the token scales of its N/4 columns, read
 * as float2 from the transposed scale array before the stage's full barrier is awaited.
 *
 * GEMM1 epilogue: bias and activation as every format (epilogue_to_stage) into an fp32 staging
 * tile; then one warp per (token row, 128 output features) takes the group's amax
 * (moe_fp8_amax_step), its scale (moe_fp8_scale) and the e4m3 codes (moe_fp8_quantize): the
 * quantization rule the CPU backend applies (kernels/fp8_math.h), on the GPU's fp32 values.
 *
 * Register budget: two accumulator sets, so a warpgroup's 128 rows (two m64 atoms) take N <= 64
 * (the catalogue's rows: kernels/kernels.h, MOE_SM90_FP8_BLOCK_CONFIGS).
 */
#ifndef MOE_GEMM_SM90_FP8_BLOCK_GROUPED_CUH_
#define MOE_GEMM_SM90_FP8_BLOCK_GROUPED_CUH_

#include <stdint.h>

#include "kernels/fp8_math.h"
#include "kernels/gemm/common/dtypes.cuh"
#include "kernels/gemm/common/epilogue.cuh"
#include "kernels/gemm/common/mma.cuh"
#include "kernels/gemm/common/params.cuh"
#include "kernels/gemm/common/pipeline.cuh"
#include "kernels/ptx/mbarrier.cuh"

namespace moe {
namespace sm90 {

/* Rows of one weight / token scale group. */
constexpr int kScaleGroup = MOE_FP8_BLOCK;
static_assert(kBlockK<E4m3> == kScaleGroup, "one e4m3 k-block must be one scale group of K");

/*
 * The weight-scale rows (each k_blocks floats, k-block kb at [kb]) of a consumer warpgroup
 * whose prepared weight rows start at r0 of `expert`: up (rows r of the interleaved 8-row
 * blocks, and every row of a tile that is not gated GEMM1) and gate (rows r + 8). A block past
 * the expert's rows (the last tile of a weight whose rows are not a multiple of the tile) reads
 * block 0: those rows are zero-filled by TMA and never stored.
 */
struct BlockWeightScales {
  const float *up;
  const float *gate;
};
__device__ __forceinline__ BlockWeightScales block_weight_scales(const GroupedGemmParams &p,
                                                                 int expert, int r0, bool gated) {
  int up = r0 / kScaleGroup, gate = up;
  if (gated) {
    const int f0 = r0 / 2; /* first feature of the warpgroup's rows */
    up = f0 / kScaleGroup;
    gate = (p.out_cols + f0) / kScaleGroup;
  }
  if (up >= p.w_scale_blocks) up = 0;
  if (gate >= p.w_scale_blocks) gate = 0;
  const float *base = p.w_scale + static_cast<int64_t>(expert) * p.w_scale_blocks * p.k_blocks;
  return {base + static_cast<int64_t>(up) * p.k_blocks,
          base + static_cast<int64_t>(gate) * p.k_blocks};
}

/*
 * A consumer warpgroup's main loop over K with per-k-block promotion (the block format's
 * counterpart of sm90_grouped.cuh's main loop): NV live token columns (with_live_columns),
 * accumulators d (zeroed by the caller), stage ring full / empty, the tile's first token row
 * row0 (its scales at x_scale[kb * scale_ld + row0 + column]).
 */
template <int NV, int kAtoms, int N, int STAGES, int C, int kABytes, int kBBytes>
__device__ __forceinline__ void block_scaled_main_loop(float (&d)[kAtoms][N / 2],
                                                       const GroupedGemmParams &p,
                                                       BlockWeightScales ws, uint64_t *full,
                                                       uint64_t *empty, uint32_t a_base,
                                                       uint32_t b_base, int row0, int lane) {
  static_assert(NV % 8 == 0 && NV <= N, "live columns are whole 8-column groups");
  float part[kAtoms][N / 2];
  const float *xs_col = p.x_scale + row0 + 2 * (lane & 3);
  int s = 0;
  uint32_t ph = 0;
  for (int kb = 0; kb < p.k_blocks; ++kb) {
    /* the scales first: their latency overlaps the wait for the stage */
    const float w_up = __ldg(ws.up + kb);
    const float w_gate = __ldg(ws.gate + kb);
    const float *xs = xs_col + static_cast<int64_t>(kb) * p.scale_ld;
    float2 x[NV / 8];
#pragma unroll
    for (int j = 0; j < NV / 8; ++j) x[j] = __ldg(reinterpret_cast<const float2 *>(xs + 8 * j));
    ptx::mbar_wait(&full[s], ph);
    mma_k_block<Wgmma<E4m3, E4m3, NV>>(part, a_base + s * kABytes, b_base + s * kBBytes, true);
    mma_drain(part);
    release_stage<C>(empty, s, lane);
#pragma unroll
    for (int j = 0; j < NV / 8; ++j) {
      const float su0 = __fmul_rn(w_up, x[j].x), su1 = __fmul_rn(w_up, x[j].y);
      const float sg0 = __fmul_rn(w_gate, x[j].x), sg1 = __fmul_rn(w_gate, x[j].y);
#pragma unroll
      for (int a = 0; a < kAtoms; ++a) {
        d[a][4 * j + 0] = __fmaf_rn(part[a][4 * j + 0], su0, d[a][4 * j + 0]);
        d[a][4 * j + 1] = __fmaf_rn(part[a][4 * j + 1], su1, d[a][4 * j + 1]);
        d[a][4 * j + 2] = __fmaf_rn(part[a][4 * j + 2], sg0, d[a][4 * j + 2]);
        d[a][4 * j + 3] = __fmaf_rn(part[a][4 * j + 3], sg1, d[a][4 * j + 3]);
      }
    }
    advance_stage<STAGES>(s, ph);
  }
}

/* fp32 staging element of the block GEMM1 epilogue (the activation's output, unrounded). */
struct StoreF32 {
  using Elem = float;
  __device__ __forceinline__ Elem operator()(float y) const { return y; }
};

/*
 * Block GEMM1 epilogue, second half: the staged fp32 tile (kPitch floats a token row, out_w
 * features from col0) -> e4m3 codes of the first `live` token rows at out[row0 + tok, col0 +
 * ...] and their scales at out_scale[(col0 + 128 g) / 128 * scale_ld + row0 + tok], one warp per
 * (token, 128-feature group g), 4 features a lane. Groups at or past out_cols are skipped
 * (out_cols is a multiple of 128: they are whole).
 */
template <int kPitch, int kTileW>
__device__ __forceinline__ void store_stage_block_quantized(const float *stage,
                                                            const GroupedGemmParams &p, int col0,
                                                            int out_w, int row0, int live, int warp,
                                                            int nwarps, int lane) {
  static_assert(kTileW % kScaleGroup == 0, "a tile holds whole 128-feature groups");
  int groups = (p.out_cols - col0) / kScaleGroup;
  if (groups > out_w / kScaleGroup) groups = out_w / kScaleGroup;
  if (groups <= 0) return;
  uint8_t *out = static_cast<uint8_t *>(p.out);
  for (int item = warp; item < live * groups; item += nwarps) {
    const int tok = item / groups;
    const int g = item - tok * groups;
    const float4 v =
        *reinterpret_cast<const float4 *>(stage + tok * kPitch + g * kScaleGroup + 4 * lane);
    float amax = 0.0f;
    amax = moe_fp8_amax_step(amax, v.x);
    amax = moe_fp8_amax_step(amax, v.y);
    amax = moe_fp8_amax_step(amax, v.z);
    amax = moe_fp8_amax_step(amax, v.w);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
    const float sc = moe_fp8_scale(amax);
    const uint32_t q = static_cast<uint32_t>(moe_fp8_quantize(v.x, sc)) |
                       static_cast<uint32_t>(moe_fp8_quantize(v.y, sc)) << 8 |
                       static_cast<uint32_t>(moe_fp8_quantize(v.z, sc)) << 16 |
                       static_cast<uint32_t>(moe_fp8_quantize(v.w, sc)) << 24;
    const int64_t row = row0 + tok;
    const int col = col0 + g * kScaleGroup;
    *reinterpret_cast<uint32_t *>(out + row * p.out_ld + col + 4 * lane) = q;
    if (lane == 0) p.out_scale[static_cast<int64_t>(col / kScaleGroup) * p.scale_ld + row] = sc;
  }
}

/*
 * The block format's GEMM1 epilogue for one consumer warpgroup (called by all consumer threads
 * of the CTA; `sync` is the consumers' named barrier): bias + activation into the fp32 stage at
 * smem, then the quantized store.
 */
template <int TILE_M, int kAtoms, int N, class Sync>
__device__ __forceinline__ void block_gemm1_epilogue(float (&d)[kAtoms][N / 2], uint8_t *smem,
                                                     const GroupedGemmParams &p, int expert, int m0,
                                                     int row_off, int w, int lane, int live,
                                                     int row0, int consumer_threads, Sync sync) {
  constexpr int kPitch = TILE_M + 4; /* floats: 16-byte aligned rows */
  float *stage = reinterpret_cast<float *>(smem);
  epilogue_to_stage<TILE_M, kAtoms, N, kPitch, true, false, StoreF32>(d, stage, p, expert, m0,
                                                                      row_off, w, lane, live);
  sync();
  int col0, out_w;
  tile_columns<TILE_M>(p.gated != 0, m0, &col0, &out_w);
  store_stage_block_quantized<kPitch, TILE_M>(stage, p, col0, out_w, row0, live,
                                              static_cast<int>(threadIdx.x) / 32,
                                              consumer_threads / 32, lane);
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_SM90_FP8_BLOCK_GROUPED_CUH_
