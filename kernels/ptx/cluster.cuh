/*
 * cluster.cuh - thin wrappers for thread-block clusters, named barriers, register reallocation
 * and generic->async proxy fences (sm_90).
 */
#ifndef MOE_PTX_CLUSTER_CUH_
#define MOE_PTX_CLUSTER_CUH_

#include <stdint.h>

namespace moe {
namespace ptx {

__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

/* Full cluster barrier (all non-exited threads of all CTAs), release/acquire. */
__device__ __forceinline__ void cluster_sync() {
  asm volatile(
      "barrier.cluster.arrive.release.aligned;\n"
      "barrier.cluster.wait.acquire.aligned;\n" ::
          : "memory");
}

/* Named barrier over `count` threads (a multiple of 32). */
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

/* Arrive on a named barrier without waiting (the waiting side uses named_barrier_sync). */
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

template <uint32_t N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <uint32_t N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* Order this thread's generic-proxy smem writes before later async-proxy reads. */
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

}  // namespace ptx
}  // namespace moe

#endif  // MOE_PTX_CLUSTER_CUH_
