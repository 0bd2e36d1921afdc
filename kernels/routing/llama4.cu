/*
 * llama4.cu - Llama4 (3): K = 1, the argmax of the logits (lowest index on ties), weight
 * bf16(sigmoid(l)) with moe_sigmoidf (as core/cpu/routing.c). Every path applies the same
 * local-expert filtering (reference §9.11 not reproduced).
 */
#include "kernels/routing/route_kernels.cuh"
#include "kernels/routing/topk.cuh"

namespace moe {
namespace routing {

struct Llama4Method {
  static constexpr bool kWarpSmem = false;
  template <int P, bool kBf16>
  static __device__ __forceinline__ int route(const Params &p, int t, int lane, float *) {
    float v[P];
    load_logits<P, kBf16>(p, t, lane, v);
    uint32_t key[P];
#pragma unroll
    for (int i = 0; i < P; ++i) key[i] = (i * 32 + lane < p.num_experts) ? topk_key(v[i]) : 0u;
    int id = 0;
    warp_topk<P>(key, p.top_k, lane, &id);
    const float a = load_value<kBf16>(p.logits, (int64_t)t * p.num_experts + id);
    write_slot(p, t, lane, id, moe_sigmoidf(a));
    return id;
  }
};

cudaError_t launch_llama4(const Params &p, bool single, cudaStream_t s, bool pdl) {
  return launch_family<Llama4Method>(p, single, s, pdl);
}

}  // namespace routing
}  // namespace moe
