/*
 * tma.cuh - thin wrappers for the sm_90 asynchronous copies: TMA 2-D and 3-D tiled loads into
 * shared memory completing on an mbarrier (optionally multicast to CTAs of the cluster), the
 * 1-D bulk copy, descriptor prefetch, and the 16-byte cp.async used for row gathers.
 */
#ifndef MOE_PTX_TMA_CUH_
#define MOE_PTX_TMA_CUH_

#include <cuda.h>
#include <stdint.h>

#include "kernels/ptx/mbarrier.cuh"

namespace moe {
namespace ptx {

__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap *map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

/* Load box at {c0 (innermost), c1} into dst; complete_tx on this CTA's `bar`. */
__device__ __forceinline__ void tma_load_2d(void *dst, const CUtensorMap *map, uint64_t *bar,
                                            int32_t c0, int32_t c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}

/*
 * Multicast load: the box lands at the same CTA-relative offset in every CTA of `mask`, and each
 * destination's barrier at `bar`'s offset gets complete_tx for the bytes delivered to it.
 */
__device__ __forceinline__ void tma_load_2d_multicast(void *dst, const CUtensorMap *map,
                                                      uint64_t *bar, int32_t c0, int32_t c1,
                                                      uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "h"(mask)
      : "memory");
}

/* 3-D box at {c0 (innermost), c1, c2}; as tma_load_2d. */
__device__ __forceinline__ void tma_load_3d(void *dst, const CUtensorMap *map, uint64_t *bar,
                                            int32_t c0, int32_t c1, int32_t c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

/* 3-D box multicast to the CTAs of `mask`; as tma_load_2d_multicast. */
__device__ __forceinline__ void tma_load_3d_multicast(void *dst, const CUtensorMap *map,
                                                      uint64_t *bar, int32_t c0, int32_t c1,
                                                      int32_t c2, uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%3, %4, %5}], [%2], %6;\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2), "h"(mask)
      : "memory");
}

/*
 * 1-D bulk copy of `bytes` contiguous bytes global -> this CTA's shared memory, complete_tx on
 * `bar` (no tensor map: for arrays whose row pitch is not a legal TMA stride). dst and src
 * 16-byte aligned, bytes % 16 == 0.
 */
__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes,
                                          uint64_t *bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::
          "r"(smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(smem_u32(bar))
      : "memory");
}

/*
 * cp.async 16-byte global -> shared copy (LDGSTS, L1 bypass). src_bytes 0 zero-fills the 16
 * bytes without reading src. Generic proxy: before wgmma reads the data, the writing thread
 * does cp_async_wait<N>() + fence.proxy.async (cluster.cuh) and then arrives on the barrier.
 */
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace ptx
}  // namespace moe

#endif  // MOE_PTX_TMA_CUH_
