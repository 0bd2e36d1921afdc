/*
 * epilogue.cuh - the epilogue of the grouped GEMM family: bias, activation, rounding to the
 * output type, transpose through shared memory, 16-byte row stores. Shared by every mainloop
 * (sm90_*_grouped.cuh) once its accumulators hold fp32 results.
 *
 * Swap-AB: the accumulator tile is D^T (weight rows = output features x tokens). A consumer
 * warpgroup holds kAtoms m64 atoms of 64 feature rows each; thread (warp w, lane) holds rows
 * 16w + lane/4 (+8) of an atom and token columns 8j + 2(lane&3) (+1). The epilogue writes them
 * token-major into a staging buffer (row pitch kPitch elements of the output type), then whole
 * 16-byte chunks of each valid token row go to global memory.
 *
 * Gated GEMM1: prepared W1 rows are interleaved in 8-row blocks (docs/formats.md), so the up and
 * gate value of one feature sit in accumulator rows r and r+8 of the same thread.
 */
#ifndef MOE_GEMM_COMMON_EPILOGUE_CUH_
#define MOE_GEMM_COMMON_EPILOGUE_CUH_

#include <cuda_bf16.h>
#include <stdint.h>

#include "kernels/fp8_math.h"
#include "kernels/gemm/common/params.cuh"
#include "kernels/gemm/common/scheduler.cuh"
#include "moe_trtllm.h"

namespace moe {
namespace sm90 {

/*
 * Gated activations, in the operation order of the CPU reference (core/cpu/activation.h), with
 * one difference: SwiGLU's sigmoid uses the hardware exp2 and reciprocal approximations
 * (__expf, __fdividef: a few fp32 ulp) instead of moe_sigmoidf, the CPU's exactly rounded
 * portable form. The bf16 rounding of the output absorbs that except at rounding ties (a GPU
 * output may then differ from the CPU's by one bf16 ulp; the comparison bound is 1e-2).
 * moe_sigmoidf costs ~40 instructions and two branches per element, and with 64-96 elements per
 * thread the fully unrolled epilogue ran several times longer than the GEMM1 main loop of a
 * short-K tile (H100, ncu). Routing keeps moe_sigmoidf: its weights must match bit for bit.
 * No clamp is limit = +inf (both compares false: the same values, NaN passes through).
 * GeGLU uses CUDA's erff (the CPU uses its own series; they differ by about an ulp).
 */
__device__ __forceinline__ float act_swiglu(float x1, float x2, float alpha, float beta,
                                            float limit) {
  x1 = x1 < -limit ? -limit : (x1 > limit ? limit : x1);
  x2 = x2 > limit ? limit : x2;
  /* exp(-z) = +inf for z < -88 gives 1 / inf = 0, as the exact sigmoid does. */
  const float sg = __fdividef(1.0f, __fadd_rn(1.0f, __expf(-__fmul_rn(alpha, x2))));
  return __fmul_rn(__fmul_rn(x2, sg), __fadd_rn(x1, beta));
}

__device__ __forceinline__ float act_geglu(float x1, float x2) {
  const float e = erff(__fmul_rn(x2, 0.70710678118654752f));
  return __fmul_rn(x1, __fmul_rn(__fmul_rn(0.5f, x2), __fadd_rn(1.0f, e)));
}

__device__ __forceinline__ float act_plain(float x, int act) {
  if (act == MOE_ACTIVATION_RELU2) {
    if (x > 0.0f) return __fmul_rn(x, x);
    return x != x ? x : 0.0f;
  }
  return x;
}

__device__ __forceinline__ uint16_t f32_to_bf16_bits(float x) {
  __nv_bfloat16 b = __float2bfloat16_rn(x);
  return *reinterpret_cast<uint16_t *>(&b);
}

/*
 * Output element policies: how an fp32 result becomes a stored element. Elem is what the
 * staging buffer and the output hold; a 16-byte store chunk carries 16 / sizeof(Elem) of them.
 */
struct StoreBf16 {
  using Elem = uint16_t;
  __device__ __forceinline__ Elem operator()(float y) const { return f32_to_bf16_bits(y); }
};
/* e4m3 with a static scale (the per-tensor FP8 GEMM1 output): q = e4m3(y / s), the rule of
 * kernels/fp8_math.h that the CPU backend applies too. */
struct StoreE4m3Static {
  using Elem = uint8_t;
  float s;
  __device__ __forceinline__ Elem operator()(float y) const { return moe_fp8_quantize(y, s); }
};

/* The accumulator times the per-tensor dequantization scale where the format has one (FP8
 * per-tensor: s_in * s_w[expert]); the identity otherwise, at compile time. */
template <bool kScaled>
__device__ __forceinline__ float dequant(float acc, float scale) {
  if constexpr (kScaled) {
    return __fmul_rn(acc, scale);
  } else {
    return acc;
  }
}

/* Output columns of a tile of TILE_M weight rows at m0: gated tiles produce half as many. */
template <int TILE_M>
__device__ __forceinline__ void tile_columns(bool gated, int m0, int *col0, int *out_w) {
  *col0 = gated ? m0 / 2 : m0;
  *out_w = gated ? TILE_M / 2 : TILE_M;
}

/* f(a, j) for atom a and 8-column group j of every kLiveStep-column step that holds one of the
 * first `live` tokens (a and j are compile-time after unrolling: d[a][4j..] stay in registers). */
template <int kAtoms, int N, class F>
__device__ __forceinline__ void for_live_groups(int live, F f) {
#pragma unroll
  for (int c0 = 0; c0 < N; c0 += kLiveStep) {
    if (c0 >= live) break;
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
      for (int j = c0 / 8; j < (c0 + kLiveStep) / 8 && j < N / 8; ++j) f(a, j);
    }
  }
}

/*
 * Gated tile rows -> stage: per atom a, token column pair (j, q), the activation of the up value
 * (accumulator row r) and the gate value (row r + 8), each dequantized and + its bias, stored
 * by `out` at st[(8j + q) * kPitch + 32a]; steps of kLiveStep columns at or past `live` tokens
 * are skipped.
 */
template <int kAtoms, int N, int kPitch, bool kScaled, class Out, class Act>
__device__ __forceinline__ void stage_gated(float (&d)[kAtoms][N / 2], typename Out::Elem *st,
                                            const float (&b_up)[kAtoms],
                                            const float (&b_gate)[kAtoms], int live, float scale,
                                            Out out, Act act) {
  for_live_groups<kAtoms, N>(live, [&](int a, int j) {
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const float y = act(__fadd_rn(dequant<kScaled>(d[a][4 * j + q], scale), b_up[a]),
                          __fadd_rn(dequant<kScaled>(d[a][4 * j + 2 + q], scale), b_gate[a]));
      st[(8 * j + q) * kPitch + 32 * a] = out(y);
    }
  });
}

/*
 * One consumer warpgroup's part of the epilogue: accumulator rows [row_off, row_off + 64 kAtoms)
 * of a TILE_M-row tile at weight row m0 of `expert` -> x `scale` (kScaled: FP8 per-tensor),
 * + bias (canonical index), activation (GEMM1), `out` (bf16, or e4m3) ->
 * stage[token * kPitch + output column within the tile]. w = warp in the group.
 * Only the kLiveStep-column steps that hold one of the first `live` tokens are computed (the
 * SwiGLU's two MUFU operations per output bound this loop; the others are never stored).
 */
template <int TILE_M, int kAtoms, int N, int kPitch, bool GEMM1, bool kScaled = false,
          class Out = StoreBf16>
__device__ __forceinline__ void epilogue_to_stage(float (&d)[kAtoms][N / 2],
                                                  typename Out::Elem *stage,
                                                  const GroupedGemmParams &p, int expert, int m0,
                                                  int row_off, int w, int lane, int live,
                                                  float scale = 1.0f, Out out = Out{}) {
  /* tile rows rbase + 64 a and rbase + 64 a + 8 (atom a) */
  const int rbase = row_off + 16 * w + lane / 4;
  const int cbase = 2 * (lane & 3);
  const bool gated = GEMM1 && p.gated;
  const int act = GEMM1 ? p.activation : MOE_ACTIVATION_IDENTITY;
  if (gated) {
    /* Feature f = 8*(row/16) + row%8 of the tile's half; up at row, gate at row + 8. */
    const int f_local = row_off / 2 + 8 * w + lane / 4; /* + 32 a */
    const int col0 = m0 / 2;
    float b_up[kAtoms], b_gate[kAtoms];
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
      const int f = col0 + f_local + 32 * a;
      b_up[a] = 0.0f;
      b_gate[a] = 0.0f;
      if (p.bias != nullptr && f < p.out_cols) {
        const float *b = p.bias + static_cast<int64_t>(expert) * p.bias_stride;
        b_up[a] = __ldg(b + f);
        b_gate[a] = __ldg(b + p.out_cols + f);
      }
    }
    /* One loop per activation (not a switch per element): the unrolled loop is 64-96
     * elements per thread, and its code size matters as much as its arithmetic. */
    typename Out::Elem *const st = stage + cbase * kPitch + f_local;
    if (act == MOE_ACTIVATION_GEGLU) {
      stage_gated<kAtoms, N, kPitch, kScaled>(
          d, st, b_up, b_gate, live, scale, out,
          [](float up, float gate) { return act_geglu(up, gate); });
    } else {
      const float alpha = p.alpha ? __ldg(p.alpha + expert) : 1.0f;
      const float beta = p.beta ? __ldg(p.beta + expert) : 0.0f;
      const float limit =
          p.clamp_limit ? __ldg(p.clamp_limit + expert) : __int_as_float(0x7f800000);
      stage_gated<kAtoms, N, kPitch, kScaled>(
          d, st, b_up, b_gate, live, scale, out,
          [=](float up, float gate) { return act_swiglu(up, gate, alpha, beta, limit); });
    }
  } else {
    float bias_v[kAtoms][2];
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        bias_v[a][h] = 0.0f;
        const int f = m0 + rbase + 64 * a + 8 * h;
        if (p.bias != nullptr && f < p.out_cols) {
          bias_v[a][h] = __ldg(p.bias + static_cast<int64_t>(expert) * p.bias_stride + f);
        }
      }
    }
    for_live_groups<kAtoms, N>(live, [&](int a, int j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const float y = act_plain(
              __fadd_rn(dequant<kScaled>(d[a][4 * j + 2 * h + q], scale), bias_v[a][h]), act);
          stage[(8 * j + cbase + q) * kPitch + rbase + 64 * a + 8 * h] = out(y);
        }
      }
    });
  }
}

/* The row loop of store_stage, for `chunks` 16-byte chunks per token row (kChunks > 0: the
 * same number known at compile time, so the per-chunk division is a multiply). */
template <int N, int kPitch, int kChunks, class Elem>
__device__ __forceinline__ void store_rows(const Elem *stage, const GroupedGemmParams &p, int col0,
                                           int chunks, int row0, int live, int tid, int nthreads) {
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(Elem));
  if (kChunks > 0) chunks = kChunks;
  const int total = live * chunks;
  /* a tile's live rows are consecutive in the output (params.cuh, out_rows): one map load per
   * tile, not a dependent global load per stored chunk */
  const int32_t out_row0 = p.out_rows == nullptr || live == 0 ? row0 : __ldg(p.out_rows + row0);
  for (int idx = tid; idx < total; idx += nthreads) {
    const int tok = idx / chunks;
    const int c = idx - tok * chunks;
    const int32_t row = out_row0 + tok;
    const uint4 v = *reinterpret_cast<const uint4 *>(stage + tok * kPitch + c * kPerChunk);
    *reinterpret_cast<uint4 *>(static_cast<Elem *>(p.out) + static_cast<int64_t>(row) * p.out_ld +
                               col0 + c * kPerChunk) = v;
  }
}

/*
 * Staged tile -> global: 16-byte chunks of the first `live` token rows (row0 + tok < mn_limit;
 * live <= N), output columns [col0, col0 + min(out_w, out_cols - col0)); threads
 * tid = 0..nthreads-1 of the storing group.
 * out_w is kTileW (GEMM2, non-gated GEMM1) or kTileW / 2 (gated GEMM1); whole tiles take a
 * compile-time chunk count (a runtime integer division per chunk was ~20 instructions).
 */
template <int N, int kPitch, int kTileW, class Elem>
__device__ __forceinline__ void store_stage(const Elem *stage, const GroupedGemmParams &p, int col0,
                                            int out_w, int row0, int live, int tid, int nthreads) {
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(Elem));
  int valid = p.out_cols - col0;
  if (valid > out_w) valid = out_w;
  if (valid == kTileW) {
    store_rows<N, kPitch, kTileW / kPerChunk>(stage, p, col0, 0, row0, live, tid, nthreads);
  } else if (valid == kTileW / 2) {
    store_rows<N, kPitch, kTileW / (2 * kPerChunk)>(stage, p, col0, 0, row0, live, tid, nthreads);
  } else {
    store_rows<N, kPitch, 0>(stage, p, col0, valid / kPerChunk, row0, live, tid, nthreads);
  }
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_EPILOGUE_CUH_
