/*
 * routing_common.cuh - parameters, constants and launch helpers shared by the routing kernels
 * (kernels/routing/*.cu). Internal to kernels/routing/.
 *
 * Paths (docs/routing.md):
 *  - small: T <= kSingleMaxTokens. One 8-CTA cluster does everything (top-K per token,
 *    counts exchanged through DSMEM, scan, ranks, tables); no global atomics, no scratch.
 *  - multi: three kernels, chained with PDL when enabled:
 *      1. topk_hist  (per family): one warp per token -> ids + weights; per-CTA expert counts
 *                    into scratch row b (CTA b owns tokens [b*tpb, (b+1)*tpb)).
 *      2. block_scan (plan.cu): per expert, exclusive scan of the counts over CTAs -> bases;
 *                    per-expert totals.
 *      3. scatter    (plan.cu): every CTA rebuilds offsets from the totals, ranks its slots in
 *                    ascending expanded index (per-warp counts + scan, no order-dependent
 *                    atomics) and writes both permuted maps; padding rows and CTA tables are
 *                    spread over the grid.
 *  Results never depend on the number of SMs: the CTA partition depends on T only.
 */
#ifndef MOE_ROUTING_COMMON_CUH_
#define MOE_ROUTING_COMMON_CUH_

#include <cuda_runtime.h>
#include <stdint.h>

#include "moe_trtllm.h"
#include "kernels/kernels.h"
#include "kernels/moe_math.h"
#include "kernels/ptx/pdl.cuh"

namespace moe {
namespace routing {

constexpr int kWarp = 32;
constexpr unsigned kFull = 0xFFFFFFFFu;
constexpr int kMaxExperts = 512;
constexpr int kMaxTopK = 22;    /* core/ limits (DeepSeekV3); one slot per lane */
constexpr int kClusterCtas = 8; /* small-T path: one cluster of 8 CTAs */
constexpr int kClusterMaxTokensPerCta = 32;
constexpr int kSingleMaxTokens = kClusterCtas * kClusterMaxTokensPerCta; /* small path: T <= */
constexpr int kHistWarps = 8; /* warps per CTA of topk_hist and scatter */
constexpr int kHistThreads = kHistWarps * kWarp;
constexpr int kScanThreads = 1024;   /* block_scan: 32 experts x 32 warps */
constexpr int kSoftMaxBlocks = 1024; /* tokens per warp grows until the grid fits this */
constexpr int kMaxTokensPerWarp = 32;

/* Method ids inside the routing kernels (MOE_ROUTING_* plus the pre-routed kinds). */
struct Params {
  /* inputs */
  int32_t method;     /* MOE_ROUTING_* */
  int32_t input_kind; /* MOE_K_INPUT_* */
  const void *logits;
  const void *bias;
  const int32_t *ids_in;
  const void *w_in;
  const int32_t *packed_in;
  int32_t logits_bf16;
  int32_t bias_bf16;
  int32_t w_in_bf16;
  int32_t num_tokens;
  int32_t num_experts;
  int32_t top_k;
  int32_t n_group;
  int32_t topk_group;
  int32_t group_size;           /* G = E / n_group (>= 1) */
  int32_t group_mul;            /* ceil(2^21 / G), G = E / n_group: e / G = (e * mul) >> 21 */
  int32_t lanes_per_group_log2; /* log2 of the largest power of two <= 32 / n_group */
  int32_t v3_fast; /* DeepSeekV3 with DeepSeek-V3's shape: the fast path may run (deepseek.cu) */
  float scale;
  int32_t local_offset;
  int32_t local_num;
  int32_t tile;
  int32_t cluster;
  /* plan */
  int32_t *topk_ids;
  uint16_t *weights;
  int32_t *e2p;
  int32_t *p2t;
  int32_t *p2e;
  int32_t *cta_batch;
  int32_t *cta_mn;
  int32_t *num_ctas;
  int32_t *permuted_size;
  int32_t *expert_counts;
  /* multi-CTA path */
  int32_t *blk_counts; /* scratch [num_blocks][local_num] */
  int32_t *totals;     /* scratch [local_num] */
  int32_t tokens_per_warp;
  int32_t num_blocks;
};

/* ---- multi-CTA partition (depends on T only) ---- */
__host__ __device__ inline int tokens_per_warp_for(int64_t T) {
  int tpw = 1;
  while (tpw < kMaxTokensPerWarp &&
         (T + (int64_t)kHistWarps * tpw - 1) / ((int64_t)kHistWarps * tpw) > kSoftMaxBlocks)
    tpw *= 2;
  return tpw;
}
__host__ __device__ inline int64_t num_blocks_for(int64_t T) {
  const int64_t tpb = (int64_t)kHistWarps * tokens_per_warp_for(T);
  return (T + tpb - 1) / tpb;
}

/* ---- loads ---- */
template <bool kBf16>
__device__ __forceinline__ float load_value(const void *p, int64_t i) {
  if (kBf16) return moe_bf16_to_f32(__ldg(reinterpret_cast<const unsigned short *>(p) + i));
  return __ldg(reinterpret_cast<const float *>(p) + i);
}
__device__ __forceinline__ float load_value_rt(const void *p, int bf16, int64_t i) {
  return bf16 ? load_value<true>(p, i) : load_value<false>(p, i);
}

__device__ __forceinline__ unsigned lanemask_lt() {
  unsigned m;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
  return m;
}

/* ---- launch with optional PDL (and a cluster along x) ---- */
template <typename... KArgs>
inline cudaError_t launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                 cudaStream_t stream, bool pdl, const Params &p,
                                 unsigned cluster_x = 1) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  if (cluster_x > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster_x;
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  return cudaLaunchKernelEx(&cfg, kernel, p);
}

/* Values per lane for E experts (expert i*32 + lane): 1, 2, 4, 8 or 16. */
inline int values_per_lane(int E) {
  int p = 1;
  while (p * kWarp < E) p *= 2;
  return p;
}

/* Per-family launchers (one .cu each). single: the one-CTA path; else the topk_hist kernel of
 * the multi-CTA path. */
cudaError_t launch_renormalize(const Params &p, bool single, cudaStream_t s, bool pdl);
cudaError_t launch_deepseek(const Params &p, bool single, cudaStream_t s, bool pdl);
cudaError_t launch_llama4(const Params &p, bool single, cudaStream_t s, bool pdl);
cudaError_t launch_preroute(const Params &p, bool single, cudaStream_t s, bool pdl);
/* plan.cu: kernels 2 and 3 of the multi-CTA path. */
cudaError_t launch_plan_multi(const Params &p, cudaStream_t s, bool pdl);

}  // namespace routing
}  // namespace moe

#endif /* MOE_ROUTING_COMMON_CUH_ */
