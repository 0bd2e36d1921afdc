/*
 * topk.cuh - exact warp top-K over up to 32*P candidates.
 *
 * Layout: lane l holds candidate i*32 + l in register slot i (strided, so loads coalesce).
 * Order: key = moe_order_key(value) descending, then candidate index ascending
 * (kernels/moe_math.h). Internally a candidate's key is moe_order_key + 1 so that 0 can mean
 * "not a candidate / already taken" (below NaN, which moe_order_key maps to 0).
 *
 * Each round: every lane finds its best remaining candidate (pairwise tree, the lower slot
 * wins a tie, so the lowest index wins inside a lane), the warp takes the maximum key (redux.sync)
 * and, among lanes holding that key, the minimum candidate index (redux.sync); the owner drops it.
 * No candidate is ever lost or duplicated, for any K <= 32 and any P.
 */
#ifndef MOE_ROUTING_TOPK_CUH_
#define MOE_ROUTING_TOPK_CUH_

#include <stdint.h>

#include "kernels/moe_math.h"

namespace moe {
namespace routing {

/* Internal candidate key: moe_order_key + 1 (0 = not a candidate). */
__device__ __forceinline__ uint32_t topk_key(float v) {
  return moe_order_key(v) + 1u;
}

/*
 * Select the k best candidates (k <= 32, and at least k candidates with key != 0).
 * key[i]: candidate i*32 + lane. Destroys key. Lane j < k gets slot j's candidate index in
 * *out_idx; lanes >= k keep theirs. The caller fetches the slot's values by index (cheaper
 * than carrying them through every round).
 */
template <int P>
__device__ __forceinline__ void warp_topk(uint32_t (&key)[P], int k, int lane, int *out_idx) {
  for (int j = 0; j < k; ++j) {
    /* lane-local best by a pairwise tree (depth log2 P; the lower slot wins ties) */
    uint32_t tk[P];
    int ti[P];
#pragma unroll
    for (int i = 0; i < P; ++i) {
      tk[i] = key[i];
      ti[i] = i;
    }
#pragma unroll
    for (int st = 1; st < P; st *= 2) {
#pragma unroll
      for (int i = 0; i + st < P; i += 2 * st) {
        const bool r = tk[i + st] > tk[i];
        tk[i] = r ? tk[i + st] : tk[i];
        ti[i] = r ? ti[i + st] : ti[i];
      }
    }
    const uint32_t bk = tk[0];
    const int bi = ti[0];
    const uint32_t wmax = __reduce_max_sync(0xFFFFFFFFu, bk);
    const uint32_t cand = (bk == wmax) ? (uint32_t)(bi * 32 + lane) : 0xFFFFFFFFu;
    const uint32_t widx = __reduce_min_sync(0xFFFFFFFFu, cand);
    if (lane == (int)(widx & 31u)) {
      const int wi = (int)(widx >> 5);
#pragma unroll
      for (int i = 0; i < P; ++i) key[i] = (i == wi) ? 0u : key[i];
    }
    if (lane == j) *out_idx = (int)widx;
  }
}

/*
 * Same contract as warp_topk. Each lane first sorts its P candidates (odd-even transposition
 * network on (key desc, candidate index asc): a strict total order, so the network's result is
 * the unique sorted order); a round then only reads the lane's head, and the owner of the
 * warp's best pops it (its list shifts up, a 0 key enters at the end).
 */
template <int P>
__device__ __forceinline__ void warp_topk_sorted(uint32_t (&key)[P], int k, int lane,
                                                 int *out_idx) {
  uint32_t ci[P]; /* candidate index i*32 + lane */
#pragma unroll
  for (int i = 0; i < P; ++i) ci[i] = (uint32_t)(i * 32 + lane);
#pragma unroll
  for (int r = 0; r < P; ++r) {
#pragma unroll
    for (int i = r & 1; i + 1 < P; i += 2) {
      const bool sw = key[i + 1] > key[i] || (key[i + 1] == key[i] && ci[i + 1] < ci[i]);
      const uint32_t ka = key[i], kb = key[i + 1], ia = ci[i], ib = ci[i + 1];
      key[i] = sw ? kb : ka;
      key[i + 1] = sw ? ka : kb;
      ci[i] = sw ? ib : ia;
      ci[i + 1] = sw ? ia : ib;
    }
  }
  for (int j = 0; j < k; ++j) {
    const uint32_t wmax = __reduce_max_sync(0xFFFFFFFFu, key[0]);
    const uint32_t cand = (key[0] == wmax) ? ci[0] : 0xFFFFFFFFu;
    const uint32_t widx = __reduce_min_sync(0xFFFFFFFFu, cand);
    if (lane == (int)(widx & 31u)) {
#pragma unroll
      for (int i = 0; i + 1 < P; ++i) {
        key[i] = key[i + 1];
        ci[i] = ci[i + 1];
      }
      key[P - 1] = 0u;
    }
    if (lane == j) *out_idx = (int)widx;
  }
}

/* Inverse of topk_key for a nonzero key (a NaN key gives a NaN). */
__device__ __forceinline__ float topk_key_value(uint32_t kk) {
  const uint32_t k = kk - 1u;
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

}  // namespace routing
}  // namespace moe

#endif /* MOE_ROUTING_TOPK_CUH_ */
