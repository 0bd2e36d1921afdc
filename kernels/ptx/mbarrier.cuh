/*
 * mbarrier.cuh - thin wrappers for shared-memory mbarriers (sm_90): init, arrive (local, remote
 * in the cluster, with expected transaction bytes) and parity waits.
 */
#ifndef MOE_PTX_MBARRIER_CUH_
#define MOE_PTX_MBARRIER_CUH_

#include <stdint.h>

namespace moe {
namespace ptx {

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count)
               : "memory");
}

/* Make barrier inits visible to the async proxy and to the other CTAs of the cluster. */
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

/*
 * Arrive on the barrier at the same smem offset in cluster CTA `cta`. Default semantics
 * (release at CTA scope), as CUTLASS's ClusterBarrier::arrive(cta_id): the pipeline's data moves
 * through the async proxy (TMA multicast, wgmma), so no cluster-scope memory fence is needed
 * here; the `.release.cluster` form costs a MEMBAR.ALL.GPU per arrival in SASS.
 */
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t *bar, uint32_t cta) {
  asm volatile(
      "{\n.reg .b32 rb;\n"
      "mapa.shared::cluster.u32 rb, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [rb];\n}\n" ::"r"(smem_u32(bar)),
      "r"(cta)
      : "memory");
}

__device__ __forceinline__ bool mbar_try_wait(uint64_t *bar, uint32_t parity) {
  uint32_t ok;
  asm volatile(
      "{\n.reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(smem_u32(bar)), "r"(parity)
      : "memory");
  return ok != 0;
}

__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}

}  // namespace ptx
}  // namespace moe

#endif  // MOE_PTX_MBARRIER_CUH_
