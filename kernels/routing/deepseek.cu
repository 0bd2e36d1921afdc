/*
 * deepseek.cu - DeepSeekV3 (2), exactly as core/cpu/routing.c:
 *   s_i = sigmoid(l_i) (moe_sigmoidf), v'_i = s_i + b_i (NULL bias: + 0.0f).
 *   Grouped when n_group > 1 and topk_group < n_group: group g = experts [g*G, (g+1)*G),
 *   score_g = v'_a + v'_b (best and second best of g by (order key desc, index asc));
 *   the topk_group best groups by (order key of score desc, g asc) stay; every other
 *   expert's selection value is -inf (not removed: it still ranks above NaN).
 *   Top-K (K <= 22) by the selection value; ss = sum of the K sigmoids in slot order;
 *   w_k = bf16((s_k / (ss + 1e-20f)) * routed_scaling_factor).
 * One warp per token; group scores: lane g walks its group in shared memory (n_group <= 32,
 * validated by core/).
 */
#include "kernels/routing/route_kernels.cuh"
#include "kernels/routing/topk.cuh"

namespace moe {
namespace routing {

struct DeepSeekMethod {
  static constexpr bool kWarpSmem = true;

  template <int P, bool kBf16>
  static __device__ __forceinline__ int route(const Params &p, int t, int lane, float *wsm) {
    const int E = p.num_experts, K = p.top_k;
    float sg[P], vb[P];
    load_logits<P, kBf16>(p, t, lane, sg);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int e = i * 32 + lane;
      const float b = (p.bias != nullptr && e < E) ? load_value_rt(p.bias, p.bias_bf16, e) : 0.0f;
      sg[i] = moe_sigmoidf(sg[i]);
      vb[i] = MOE_FADD(sg[i], b);
    }
    uint32_t key[P];
    const int ng = p.n_group, tg = p.topk_group;
    if (ng > 1 && tg < ng) {
      const int G = E / ng;
      __syncwarp(); /* previous token's readers are done with wsm */
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int e = i * 32 + lane;
        if (e < E) wsm[pad_idx(e)] = vb[i];
      }
      __syncwarp();
      uint32_t gk[1] = {0u};
      float ga[1] = {0.0f};
      if (lane < ng) {
        uint32_t k1 = 0, k2 = 0;
        int i1 = -1, i2 = -1;
        float v1 = 0.0f, v2 = 0.0f;
        for (int e = lane * G; e < lane * G + G; ++e) {
          const float v = wsm[pad_idx(e)];
          const uint32_t k = moe_order_key(v);
          if (i1 < 0 || moe_better(k, e, k1, i1)) {
            k2 = k1, i2 = i1, v2 = v1;
            k1 = k, i1 = e, v1 = v;
          } else if (i2 < 0 || moe_better(k, e, k2, i2)) {
            k2 = k, i2 = e, v2 = v;
          }
        }
        gk[0] = topk_key(i2 < 0 ? v1 : MOE_FADD(v1, v2));
      }
      int gid = 0;
      float gdummy = 0.0f;
      warp_topk<1>(gk, ga, tg, lane, &gid, &gdummy);
      const uint32_t sel = __reduce_or_sync(kFull, lane < tg ? (1u << gid) : 0u);
      const uint32_t ninf = topk_key(__int_as_float(0xFF800000));
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int e = i * 32 + lane;
        key[i] = (e < E) ? (((sel >> (e / G)) & 1u) ? topk_key(vb[i]) : ninf) : 0u;
      }
    } else {
#pragma unroll
      for (int i = 0; i < P; ++i) key[i] = (i * 32 + lane < E) ? topk_key(vb[i]) : 0u;
    }
    int id = 0;
    float sk = 0.0f;
    warp_topk<P>(key, sg, K, lane, &id, &sk);
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
