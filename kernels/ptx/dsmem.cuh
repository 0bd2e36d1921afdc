/*
 * dsmem.cuh - distributed shared memory (sm_90 clusters): map a local shared-memory address
 * to the same offset in another CTA of the cluster, and read it.
 * Order remote reads against the owner's writes with a cluster barrier (cluster.cuh).
 */
#ifndef MOE_PTX_DSMEM_CUH_
#define MOE_PTX_DSMEM_CUH_

#include <stdint.h>

namespace moe {
namespace ptx {

/* Shared::cluster address of `local_smem_addr` (a shared::cta address) in CTA `rank`. */
__device__ __forceinline__ uint32_t map_shared_rank(uint32_t local_smem_addr, uint32_t rank) {
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n"
               : "=r"(r)
               : "r"(local_smem_addr), "r"(rank));
  return r;
}

__device__ __forceinline__ int32_t ld_shared_cluster_s32(uint32_t cluster_addr) {
  int32_t v;
  asm volatile("ld.shared::cluster.s32 %0, [%1];\n" : "=r"(v) : "r"(cluster_addr) : "memory");
  return v;
}

}  // namespace ptx
}  // namespace moe

#endif /* MOE_PTX_DSMEM_CUH_ */
