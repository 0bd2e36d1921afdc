/*
 * renormalize.cu - the Renormalize family: Default (0), Renormalize (1), RenormalizeNaive (4)
 * and TopK (5). Arithmetic exactly as core/cpu/routing.c (the oracle), op for op:
 *
 *   softmax statistics (Default, Naive): m = max l (NaN ignored; exact, so any reduction
 *     order); sum = ((0 + exp(l_0 - m)) + exp(l_1 - m)) + ... ascending expert index, done
 *     sequentially by lane 0 from shared memory; p_i = exp(l_i - m) / sum.
 *   selection value: p (Default, Naive) or l (Renormalize, TopK); warp top-K (topk.cuh).
 *   Default: w = p.  Naive: q = sum_k p_k in slot order, w = p / q.
 *   Renormalize: m1 = l of slot 0, e_k = exp(l_k - m1), s = sum_k e_k in slot order,
 *     w = e_k / s.  TopK: w = l.
 * Weights are rounded to bf16 once (moe_f32_to_bf16).
 */
#include "kernels/routing/route_kernels.cuh"
#include "kernels/routing/topk.cuh"

namespace moe {
namespace routing {

template <int kMethod>
struct RenormalizeMethod {
  static constexpr bool kSoftmax =
      kMethod == MOE_ROUTING_DEFAULT || kMethod == MOE_ROUTING_RENORMALIZE_NAIVE;
  static constexpr bool kWarpSmem = kSoftmax;

  template <int P, bool kBf16>
  static __device__ __forceinline__ int route(const Params &p, int t, int lane, float *wsm) {
    const int E = p.num_experts, K = p.top_k;
    float v[P];
    load_logits<P, kBf16>(p, t, lane, v);
    float sum = 0.0f;
    if (kSoftmax) {
      float m = __int_as_float(0xFF800000); /* -inf */
#pragma unroll
      for (int i = 0; i < P; ++i)
        if (i * 32 + lane < E) m = fmaxf(m, v[i]);
#pragma unroll
      for (int d = 16; d > 0; d >>= 1) m = fmaxf(m, __shfl_xor_sync(kFull, m, d));
      __syncwarp(); /* previous token's readers are done with wsm */
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int e = i * 32 + lane;
        v[i] = moe_expf(MOE_FSUB(v[i], m));
        if (e < E) wsm[pad_idx(e)] = v[i];
      }
      __syncwarp();
      if (lane == 0) {
        for (int e = 0; e < E; ++e) sum = MOE_FADD(sum, wsm[pad_idx(e)]);
      }
      sum = __shfl_sync(kFull, sum, 0);
#pragma unroll
      for (int i = 0; i < P; ++i) v[i] = MOE_FDIV(v[i], sum);
    }
    uint32_t key[P];
#pragma unroll
    for (int i = 0; i < P; ++i) key[i] = (i * 32 + lane < E) ? topk_key(v[i]) : 0u;
    int id = 0;
    warp_topk<P>(key, K, lane, &id);
    /* the slot's selection value: p (same ops as above) or the logit */
    const float a = kSoftmax ? MOE_FDIV(wsm[pad_idx(id)], sum)
                             : load_value<kBf16>(p.logits, (int64_t)t * E + id);
    float w;
    if (kMethod == MOE_ROUTING_RENORMALIZE) {
      const float m1 = __shfl_sync(kFull, a, 0);
      const float ek = moe_expf(MOE_FSUB(a, m1));
      const float s = warp_ordered_sum(ek, K);
      w = MOE_FDIV(ek, s);
    } else if (kMethod == MOE_ROUTING_RENORMALIZE_NAIVE) {
      const float q = warp_ordered_sum(a, K);
      w = MOE_FDIV(a, q);
    } else { /* Default: p; TopK: the logit */
      w = a;
    }
    write_slot(p, t, lane, id, w);
    return id;
  }
};

cudaError_t launch_renormalize(const Params &p, bool single, cudaStream_t s, bool pdl) {
  switch (p.method) {
    case MOE_ROUTING_DEFAULT:
      return launch_family<RenormalizeMethod<MOE_ROUTING_DEFAULT>>(p, single, s, pdl);
    case MOE_ROUTING_RENORMALIZE_NAIVE:
      return launch_family<RenormalizeMethod<MOE_ROUTING_RENORMALIZE_NAIVE>>(p, single, s, pdl);
    case MOE_ROUTING_TOPK:
      return launch_family<RenormalizeMethod<MOE_ROUTING_TOPK>>(p, single, s, pdl);
    default:
      return launch_family<RenormalizeMethod<MOE_ROUTING_RENORMALIZE>>(p, single, s, pdl);
  }
}

}  // namespace routing
}  // namespace moe
