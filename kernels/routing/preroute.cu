/*
 * preroute.cu - pre-routed input: topk_ids + topk_weights (bf16, or fp32 rounded to nearest
 * even) or the packed form (id << 16) | bf16 bits, id read as (uint32)v >> 16. The method's
 * math is skipped; ids and weights are copied into the plan and the same plan is built.
 * Ids outside [0, E) are simply not local.
 */
#include "kernels/routing/route_kernels.cuh"

namespace moe {
namespace routing {

struct PrerouteMethod {
  static constexpr bool kWarpSmem = false;
  template <int P, bool kBf16>
  static __device__ __forceinline__ int route(const Params &p, int t, int lane, float *) {
    int id = -1;
    if (lane < p.top_k) {
      const int64_t x = (int64_t)t * p.top_k + lane;
      uint16_t w;
      if (p.input_kind == MOE_K_INPUT_PACKED) {
        const uint32_t v = (uint32_t)__ldg(p.packed_in + x);
        id = (int)(v >> 16);
        w = (uint16_t)(v & 0xFFFFu);
      } else {
        id = __ldg(p.ids_in + x);
        w = p.w_in_bf16 ? __ldg(reinterpret_cast<const unsigned short *>(p.w_in) + x)
                        : moe_f32_to_bf16(__ldg(reinterpret_cast<const float *>(p.w_in) + x));
      }
      p.topk_ids[x] = id;
      p.weights[x] = w;
    }
    return id;
  }
};

cudaError_t launch_preroute(const Params &p, bool single, cudaStream_t s, bool pdl) {
  return launch_family_pb<PrerouteMethod, 1, false>(p, single, s, pdl);
}

}  // namespace routing
}  // namespace moe
