/*
 * deepseek.cu - DeepSeekV3 (2), exactly as core/cpu/routing.c:
 *   s_i = sigmoid(l_i) (moe_sigmoidf), v'_i = s_i + b_i (NULL bias: + 0.0f).
 *   Grouped when n_group > 1 and topk_group < n_group: group g = experts [g*G, (g+1)*G),
 *   score_g = v'_a + v'_b (best and second best of g by (order key desc, index asc));
 *   the topk_group best groups by (order key of score desc, g asc) stay; every other
 *   expert's selection value is -inf (not removed: it still ranks above NaN).
 *   Top-K (K <= 22) by the selection value; ss = sum of the K sigmoids in slot order;
 *   w_k = bf16((s_k / (ss + 1e-20f)) * routed_scaling_factor).
 * One warp per token; group scores by 32/n_group lanes per group (n_group <= 32, validated
 * by core/), the group choice by a one-candidate-per-lane warp top-k.
 */
#include "kernels/routing/route_kernels.cuh"
#include "kernels/routing/topk.cuh"

namespace moe {
namespace routing {

/* moe_sigmoidf with the division 1/d as a correctly rounded reciprocal: the same IEEE result
 * (both round the exact 1/d to nearest even), fewer instructions. */
__device__ __forceinline__ float sigmoid_exact(float x) {
  return __frcp_rn(MOE_FADD(1.0f, moe_expf(-x)));
}

struct DeepSeekMethod {
  static constexpr bool kWarpSmem = true;

  template <int P, bool kBf16>
  static __device__ __forceinline__ int route(const Params &p, int t, int lane, float *wsm) {
    const int E = p.num_experts, K = p.top_k;
    float vb[P];
    load_logits<P, kBf16>(p, t, lane, vb);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int e = i * 32 + lane;
      const float b = (p.bias != nullptr && e < E) ? load_value_rt(p.bias, p.bias_bf16, e) : 0.0f;
      vb[i] = MOE_FADD(sigmoid_exact(vb[i]), b);
    }
    uint32_t key[P];
    const int ng = p.n_group, tg = p.topk_group;
    int id = 0;
    bool done = false;
    if (ng > 1 && tg < ng) {
      const int G = E / ng;
      const uint32_t gm = (uint32_t)p.group_mul; /* x / G == (x * gm) >> 21 for x < 4096 */
      __syncwarp();                              /* previous token's readers are done with wsm */
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int e = i * 32 + lane;
        if (e < E) wsm[pad_idx(e)] = vb[i];
      }
      __syncwarp();
      /* group scores: 2^lpg_log2 lanes per group, each walks a strided part of the group;
       * the parts' top-2 keys merge by butterfly. Equal keys are equal values, so the two
       * best values (hence the score) match the CPU's index-ordered top-2. */
      const int lg = p.lanes_per_group_log2, lpg = 1 << lg;
      const int g = lane >> lg, q = lane & (lpg - 1);
      uint32_t k1 = 0u, k2 = 0u;
      if (g < ng) {
#pragma unroll 4
        for (int j = q; j < G; j += lpg) {
          const uint32_t kk = topk_key(wsm[pad_idx(g * G + j)]);
          if (kk > k1) {
            k2 = k1;
            k1 = kk;
          } else if (kk > k2) {
            k2 = kk;
          }
        }
      }
      for (int d = 1; d < lpg; d <<= 1) {
        const uint32_t b1 = __shfl_xor_sync(kFull, k1, d), b2 = __shfl_xor_sync(kFull, k2, d);
        const uint32_t n2 = max(min(k1, b1), max(k2, b2));
        k1 = max(k1, b1);
        k2 = n2;
      }
      const uint32_t sk =
          k2 == 0u ? k1 : topk_key(MOE_FADD(topk_key_value(k1), topk_key_value(k2)));
      const uint32_t gsk = __shfl_sync(kFull, sk, (lane << lg) & 31);
      uint32_t gk[1] = {lane < ng ? gsk : 0u};
      int gid = 0;
      warp_topk<1>(gk, tg, lane, &gid);
      const uint32_t sel = __reduce_or_sync(kFull, lane < tg ? (1u << gid) : 0u);
      const uint32_t ninf = topk_key(__int_as_float(0xFF800000));
      if constexpr (P >= 2) {
        /* Fast path: top-K over the selected groups only, compacted in ascending expert order
         * (so index ties resolve the same), in P/2 slots per lane. Exact whenever at least K of
         * them rank above -inf (the value of every unselected expert); else the full path. */
        const int nc = tg * G;
        if (nc <= 16 * P) {
          constexpr int PC = P / 2;
          uint32_t *ck_s = reinterpret_cast<uint32_t *>(wsm);
          __syncwarp(); /* group scores have read wsm */
#pragma unroll
          for (int i = 0; i < P; ++i) {
            const uint32_t e = (uint32_t)(i * 32 + lane);
            const uint32_t ge = (e * gm) >> 21;
            if (e < (uint32_t)E && ((sel >> ge) & 1u)) {
              const uint32_t c = (uint32_t)__popc(sel & ((1u << ge) - 1u)) * G + (e - ge * G);
              ck_s[pad_idx((int)c)] = topk_key(vb[i]);
            }
          }
          __syncwarp();
          uint32_t ck[PC];
          int ok = 0;
#pragma unroll
          for (int i = 0; i < PC; ++i) {
            const int c = i * 32 + lane;
            ck[i] = c < nc ? ck_s[pad_idx(c)] : 0u;
            ok += ck[i] > ninf ? 1 : 0;
          }
          if ((int)__reduce_add_sync(kFull, (unsigned)ok) >= K) {
            int cid = 0;
            warp_topk<PC>(ck, K, lane, &cid);
            const int r = (int)(((uint32_t)cid * gm) >> 21); /* rank of its group in sel */
            uint32_t m = sel;
            for (int j = 0; j < r; ++j) m &= m - 1u;
            const int gg = __ffs(m) - 1;
            id = gg * G + (cid - r * G);
            done = true;
          }
        }
      }
      if (!done) {
#pragma unroll
        for (int i = 0; i < P; ++i) {
          const uint32_t e = (uint32_t)(i * 32 + lane);
          const uint32_t ge = (e * gm) >> 21;
          key[i] = (e < (uint32_t)E) ? (((sel >> ge) & 1u) ? topk_key(vb[i]) : ninf) : 0u;
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < P; ++i) key[i] = (i * 32 + lane < E) ? topk_key(vb[i]) : 0u;
    }
    if (!done) warp_topk<P>(key, K, lane, &id);
    const float sk = sigmoid_exact(load_value<kBf16>(p.logits, (int64_t)t * E + id));
    const float ss = warp_ordered_sum(sk, K);
    const float den = MOE_FADD(ss, 1e-20f);
    write_slot(p, t, lane, id, MOE_FMUL(MOE_FDIV(sk, den), p.scale));
    return id;
  }
};

cudaError_t launch_deepseek(const Params &p, bool single, cudaStream_t s, bool pdl) {
  return launch_family<DeepSeekMethod>(p, single, s, pdl);
}

}  // namespace routing
}  // namespace moe
