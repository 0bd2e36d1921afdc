/*
 * permute.cu - copies hidden rows into permuted (expert-grouped) order for the GEMM1 configs
 * that read their token rows by TMA (CTA tile >= 64 tokens): dst[e2p[t*K + k]] = hidden[t] for
 * every local slot. Padding rows are not written: they only feed accumulator columns that the
 * GEMMs never store (rows at or past the CTA's mn_limit).
 *
 * Token order, one warp per token: each hidden row is read once and written K times. The
 * permuted-order form (dst[r] = hidden[p2t[r]]) read every token row K times, far apart in time,
 * so with the T*K*H-byte write stream in between they came from DRAM each time: H100 ncu, qwen3-30b
 * T = 8192, DRAM at 81% for 268 MB of useful writes.
 * Rows are moved as 16-byte vectors, so the kernel serves every element type.
 */
#include "kernels/fp8_math.h"
#include "kernels/gemm/configs.cuh"
#include "kernels/pdl_launch.cuh"
#include "kernels/ptx/pdl.cuh"

namespace moe {
namespace sm90 {
namespace {

constexpr int kWarps = 8;      /* tokens per CTA per step */
constexpr int kUnroll = 4;     /* 16-byte loads in flight per lane */
constexpr int kCtasPerSm = 16; /* grid-stride over tokens: enough warps to cover DRAM latency */

__global__ void __launch_bounds__(32 * kWarps)
    permute_tokens_kernel(uint4 *__restrict__ dst, const uint4 *__restrict__ hidden,
                          const int32_t *__restrict__ e2p, int64_t num_tokens, int32_t top_k,
                          int64_t vec_per_row) {
  ptx::grid_dependency_wait();
  ptx::launch_dependents();
  const int lane = threadIdx.x % 32;
  for (int64_t t = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32; t < num_tokens;
       t += (int64_t)gridDim.x * kWarps) {
    /* slot k's permuted row (or -1: not local) sits in lane k; top_k <= 32 (launcher). */
    const int32_t my_p = lane < top_k ? __ldg(e2p + t * top_k + lane) : -1;
    const uint4 *src = hidden + t * vec_per_row;
    for (int64_t v0 = lane; v0 < vec_per_row; v0 += 32 * kUnroll) {
      uint4 x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t v = v0 + 32 * u;
        if (v < vec_per_row) x[u] = __ldg(src + v);
      }
      for (int k = 0; k < top_k; ++k) {
        const int32_t p = __shfl_sync(0xFFFFFFFFu, my_p, k);
        if (p < 0) continue;
        uint4 *row = dst + (int64_t)p * vec_per_row;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + 32 * u;
          if (v < vec_per_row) row[v] = x[u];
        }
      }
    }
  }
}

/* 16 bf16 (two 16-byte vectors) -> 16 e4m3 codes (one vector), q = e4m3(x / s). */
__device__ __forceinline__ uint4 quantize16(uint4 lo, uint4 hi, float s) {
  const uint32_t w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  uint32_t o[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint32_t packed = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t pair = w[2 * i + j / 2];
      const uint32_t bits = (j % 2 == 0 ? pair << 16 : pair & 0xFFFF0000u);
      packed |= static_cast<uint32_t>(moe_fp8_quantize(__uint_as_float(bits), s)) << (8 * j);
    }
    o[i] = packed;
  }
  return make_uint4(o[0], o[1], o[2], o[3]);
}

/*
 * The permute of FP8 per-tensor runs on bf16 hidden states, quantizing on the way (no separate
 * pass over hidden): dst rows are e4m3 [H] (vec_per_row 16-byte vectors of 16 codes), hidden
 * rows bf16 [H], q = e4m3(x / *scale) with the rule of kernels/fp8_math.h.
 */
__global__ void __launch_bounds__(32 * kWarps)
    permute_quantize_kernel(uint4 *__restrict__ dst, const uint4 *__restrict__ hidden,
                            const int32_t *__restrict__ e2p, int64_t num_tokens, int32_t top_k,
                            int64_t vec_per_row, const float *__restrict__ scale) {
  ptx::grid_dependency_wait();
  ptx::launch_dependents();
  const int lane = threadIdx.x % 32;
  const float s = __ldg(scale);
  for (int64_t t = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32; t < num_tokens;
       t += (int64_t)gridDim.x * kWarps) {
    const int32_t my_p = lane < top_k ? __ldg(e2p + t * top_k + lane) : -1;
    const uint4 *src = hidden + t * 2 * vec_per_row;
    for (int64_t v = lane; v < vec_per_row; v += 32) {
      const uint4 q = quantize16(__ldg(src + 2 * v), __ldg(src + 2 * v + 1), s);
      for (int k = 0; k < top_k; ++k) {
        const int32_t p = __shfl_sync(0xFFFFFFFFu, my_p, k);
        if (p >= 0) dst[(int64_t)p * vec_per_row + v] = q;
      }
    }
  }
}

/*
 * The permute of block-scaled FP8 (launch_permute_block): dst rows e4m3 [H] (vec_per_row
 * 16-byte vectors of 16 codes) and the rows' scales transposed, dst_scales[g * scale_ld + p]
 * for 128-column group g of permuted row p. From bf16 hidden states (hidden_scales NULL) each
 * token's groups are quantized on the way: the 8 lanes holding a group's 8 vectors reduce its
 * amax (moe_fp8_amax_step), s = moe_fp8_scale(amax), q = e4m3(x / s) (kernels/fp8_math.h, as
 * the CPU backend); from e4m3 hidden states the codes are copied and hidden_scales [T, H/128]
 * transposed. Lane l of a warp step holds vector v0 + l, group (v0 + l) / 8 (vec_per_row is a
 * multiple of 8: groups never straddle a step, and every lane runs every step for the
 * shuffles).
 */
__global__ void __launch_bounds__(32 * kWarps)
    permute_block_kernel(uint4 *__restrict__ dst, float *__restrict__ dst_scales, int64_t scale_ld,
                         const uint4 *__restrict__ hidden, const float *__restrict__ hidden_scales,
                         const int32_t *__restrict__ e2p, int64_t num_tokens, int32_t top_k,
                         int64_t vec_per_row) {
  ptx::grid_dependency_wait();
  ptx::launch_dependents();
  const int lane = threadIdx.x % 32;
  const int64_t groups = vec_per_row / 8;
  for (int64_t t = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32; t < num_tokens;
       t += (int64_t)gridDim.x * kWarps) {
    const int32_t my_p = lane < top_k ? __ldg(e2p + t * top_k + lane) : -1;
    for (int64_t v0 = 0; v0 < vec_per_row; v0 += 32) {
      const int64_t v = v0 + lane;
      const bool active = v < vec_per_row;
      const int64_t g = v / 8;
      uint4 q = make_uint4(0, 0, 0, 0);
      float sc = 1.0f;
      if (hidden_scales != nullptr) {
        if (active) {
          q = __ldg(hidden + t * vec_per_row + v);
          sc = __ldg(hidden_scales + t * groups + g);
        }
      } else {
        uint4 lo = make_uint4(0, 0, 0, 0), hi = lo;
        if (active) {
          lo = __ldg(hidden + (t * vec_per_row + v) * 2);
          hi = __ldg(hidden + (t * vec_per_row + v) * 2 + 1);
        }
        const uint32_t w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        float amax = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          amax = moe_fp8_amax_step(amax, __uint_as_float(w[i] << 16));
          amax = moe_fp8_amax_step(amax, __uint_as_float(w[i] & 0xFFFF0000u));
        }
#pragma unroll
        for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
        sc = moe_fp8_scale(amax);
        q = quantize16(lo, hi, sc);
      }
      for (int k = 0; k < top_k; ++k) {
        const int32_t p = __shfl_sync(0xFFFFFFFFu, my_p, k);
        if (p < 0 || !active) continue;
        dst[(int64_t)p * vec_per_row + v] = q;
        if ((lane & 7) == 0) dst_scales[g * scale_ld + p] = sc;
      }
    }
  }
}

}  // namespace

cudaError_t launch_permute_block(void *dst, float *dst_scales, int64_t scale_ld, const void *hidden,
                                 const float *hidden_scales, const int32_t *expanded_to_permuted,
                                 int64_t num_tokens, int32_t top_k, int64_t H, int32_t num_sms,
                                 bool pdl, cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  if (top_k < 1 || top_k > 32 || H <= 0 || H % 128 != 0 || num_sms <= 0 || scale_ld <= 0) {
    return cudaErrorInvalidValue;
  }
  int64_t blocks = (num_tokens + kWarps - 1) / kWarps;
  if (blocks > static_cast<int64_t>(num_sms) * kCtasPerSm) {
    blocks = static_cast<int64_t>(num_sms) * kCtasPerSm;
  }
  return launch_pdl(permute_block_kernel, blocks, 32 * kWarps, stream, pdl,
                    static_cast<uint4 *>(dst), dst_scales, scale_ld,
                    static_cast<const uint4 *>(hidden), hidden_scales, expanded_to_permuted,
                    num_tokens, top_k, H / 16);
}

cudaError_t launch_permute(void *dst, const void *hidden, const int32_t *expanded_to_permuted,
                           int64_t num_tokens, int32_t top_k, int64_t row_bytes,
                           const float *quantize_scale, int32_t num_sms, bool pdl,
                           cudaStream_t stream) {
  if (num_tokens <= 0 || row_bytes <= 0) return cudaSuccess;
  if (top_k < 1 || top_k > 32 || row_bytes % 16 != 0 || num_sms <= 0) return cudaErrorInvalidValue;
  int64_t blocks = (num_tokens + kWarps - 1) / kWarps;
  if (blocks > static_cast<int64_t>(num_sms) * kCtasPerSm) {
    blocks = static_cast<int64_t>(num_sms) * kCtasPerSm;
  }
  if (quantize_scale != nullptr) {
    /* row_bytes: the e4m3 output row; the bf16 input rows are twice as long */
    return launch_pdl(permute_quantize_kernel, blocks, 32 * kWarps, stream, pdl,
                      static_cast<uint4 *>(dst), static_cast<const uint4 *>(hidden),
                      expanded_to_permuted, num_tokens, top_k, row_bytes / 16, quantize_scale);
  }
  return launch_pdl(permute_tokens_kernel, blocks, 32 * kWarps, stream, pdl,
                    static_cast<uint4 *>(dst), static_cast<const uint4 *>(hidden),
                    expanded_to_permuted, num_tokens, top_k, row_bytes / 16);
}

}  // namespace sm90
}  // namespace moe
