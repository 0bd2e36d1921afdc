/*
 * pipeline.cuh - the mbarrier stage ring every grouped GEMM of the family runs on, and the
 * CTA prologue around it.
 *
 * full[s]: the producer's arrive.expect_tx (A + B bytes of the stage), plus one arrival per
 * gathering producer thread where the token rows come by cp.async; empty[s]: one arrival per
 * consumer warp of every CTA of the cluster, so a weight stage multicast to all C CTAs is
 * re-filled only after all of them released it.
 */
#ifndef MOE_GEMM_COMMON_PIPELINE_CUH_
#define MOE_GEMM_COMMON_PIPELINE_CUH_

#include <cuda.h>
#include <stdint.h>

#include "kernels/ptx/mbarrier.cuh"
#include "kernels/ptx/tma.cuh"

namespace moe {
namespace sm90 {

/* Thread 0 initialises the ring; the caller then synchronises the CTA (and the cluster before
 * any remote arrival). */
template <int STAGES>
__device__ __forceinline__ void init_stage_ring(uint64_t *full, uint64_t *empty,
                                                uint32_t full_count, uint32_t empty_count) {
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      ptx::mbar_init(&full[s], full_count);
      ptx::mbar_init(&empty[s], empty_count);
    }
    ptx::mbar_init_fence();
  }
}

/* One producer lane pulls the three tensor maps into the descriptor cache. */
__device__ __forceinline__ void prefetch_tensor_maps(const CUtensorMap *w, const CUtensorMap *x,
                                                     const CUtensorMap *xs) {
  ptx::tma_prefetch_desc(w);
  ptx::tma_prefetch_desc(x);
  ptx::tma_prefetch_desc(xs);
}

/* Next stage of the ring; the parity flips on every wrap. */
template <int STAGES>
__device__ __forceinline__ void advance_stage(int &s, uint32_t &ph) {
  if (++s == STAGES) {
    s = 0;
    ph ^= 1u;
  }
}

/* Frees stage `st` for the producers: one arrival per consumer warp on the barrier of every CTA
 * of the cluster (lane r signals rank r). */
template <int C>
__device__ __forceinline__ void release_stage(uint64_t *empty, int st, int lane) {
  if (lane < C) {
    if constexpr (C > 1) {
      ptx::mbar_arrive_cluster(&empty[st], static_cast<uint32_t>(lane));
    } else {
      ptx::mbar_arrive(&empty[st]);
    }
  }
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_PIPELINE_CUH_
