/*
 * route_kernels.cuh - the two kernels every method family instantiates with its policy M:
 *
 *   cluster_kernel<M> (T <= kSingleMaxTokens): one cluster of 8 CTAs computes top-K + weights
 *                     (one warp per token), counts (shared atomics on integers: order-free),
 *                     exchanges the per-CTA counts through DSMEM, and builds the whole plan:
 *                     deterministic ranks, both permuted maps, padding rows, CTA tables and the
 *                     scalars. No scratch, no global atomics.
 *   topk_hist_kernel<M> (multi-CTA path, kernel 1): CTA b owns tokens [b*tpb, (b+1)*tpb);
 *                     one warp per token writes ids + weights; the CTA's local expert counts go
 *                     to scratch row b.
 *
 * Policy M provides:
 *   static constexpr bool kWarpSmem;   // needs a per-warp float[E] in shared memory
 *   template <int P, bool kBf16> static __device__ int route(const Params&, int t, int lane,
 *                                                            float *warp_smem);
 *     writes topk_ids / weights of token t; returns slot `lane`'s global expert id for
 *     lane < K (any value for lane >= K).
 *
 * PDL: every kernel waits (griddepcontrol.wait) before touching global memory (its
 * predecessor may be the previous forward's finalize reading this workspace) and triggers its
 * dependents once its main work is issued.
 */
#ifndef MOE_ROUTING_ROUTE_KERNELS_CUH_
#define MOE_ROUTING_ROUTE_KERNELS_CUH_

#include "kernels/ptx/cluster.cuh"
#include "kernels/ptx/dsmem.cuh"
#include "kernels/routing/plan.cuh"
#include "kernels/routing/routing_common.cuh"

namespace moe {
namespace routing {

/* Per-warp float scratch of a policy with kWarpSmem: expert e at pad_idx(e) (one pad word per
 * 32, so a lane walking a group of 32 does not conflict with the others). */
__host__ __device__ constexpr int warp_smem_floats(int E) {
  return E + (E >> 5) + 1;
}
__device__ __forceinline__ int pad_idx(int e) {
  return e + (e >> 5);
}

constexpr int kClusterIds = kClusterMaxTokensPerCta * kMaxTopK;
/* Fixed shared part of the cluster kernel: cnt, tot, base, off, ctaoff [512], tmp [40], ids. */
constexpr int kClusterFixedInts = 5 * kMaxExperts + 40 + kClusterIds;

template <class M, int P>
constexpr int cluster_threads() {
  return P >= 16 ? 512 : 1024;
}

/*
 * Small-T path: one cluster of kClusterCtas CTAs; CTA r owns tokens [r*tpc, (r+1)*tpc).
 * 1. one warp per token: ids + weights; the CTA's ids and local expert counts in shared memory.
 * 2. cluster barrier; each CTA reads every CTA's counts through DSMEM: totals and the prefix of
 *    the CTAs before it (so ranks stay in ascending expanded index); cluster barrier (no CTA
 *    leaves while others still read its shared memory).
 * 3. each CTA: expert scan, ranks + scatter of its own slots, and its share of padding rows and
 *    CTA table entries; CTA 0 writes the scalars and expert_counts.
 */
template <class M, int P, bool kBf16, int NT>
__global__ void __launch_bounds__(NT, 1) cluster_kernel(Params p) {
  extern __shared__ __align__(16) int smem_i[];
  int *cnt = smem_i;
  int *tot = cnt + kMaxExperts;
  int *base = tot + kMaxExperts;
  int *off = base + kMaxExperts;
  int *ctaoff = off + kMaxExperts;
  int *tmp = ctaoff + kMaxExperts;
  int *ids = tmp + 40;
  unsigned char *uni = reinterpret_cast<unsigned char *>(ids + kClusterIds);
  float *wsm_all = reinterpret_cast<float *>(uni);
  unsigned short *wcnt = reinterpret_cast<unsigned short *>(uni);

  constexpr int kNw = NT / 32;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int T = p.num_tokens, K = p.top_k, lo = p.local_offset, nl = p.local_num;
  const int rank = (int)ptx::cluster_ctarank();
  const int tpc = (T + kClusterCtas - 1) / kClusterCtas;
  const int t0 = min(rank * tpc, T), t1 = min(t0 + tpc, T);

  ptx::grid_dependency_wait();
  for (int e = tid; e < nl; e += NT) cnt[e] = 0;
  __syncthreads();

  float *wsm = M::kWarpSmem ? wsm_all + (size_t)w * warp_smem_floats(p.num_experts) : nullptr;
  for (int t = t0 + w; t < t1; t += kNw) {
    const int id = M::template route<P, kBf16>(p, t, lane, wsm);
    if (lane < K) {
      ids[(t - t0) * K + lane] = id;
      const int e = id - lo;
      if ((unsigned)e < (unsigned)nl) atomicAdd(&cnt[e], 1);
    }
  }
  ptx::cluster_sync();
  ptx::launch_dependents();
  const uint32_t cnt_addr = (uint32_t)__cvta_generic_to_shared(cnt);
  for (int e = tid; e < nl; e += NT) {
    int sum = 0, pre = 0;
#pragma unroll
    for (int c = 0; c < kClusterCtas; ++c) {
      const int v = ptx::ld_shared_cluster_s32(ptx::map_shared_rank(cnt_addr + 4u * e, c));
      pre += c < rank ? v : 0;
      sum += v;
    }
    tot[e] = sum;
    base[e] = pre;
  }
  ptx::cluster_sync();

  const int total = block_expert_scan<NT>(tot, nl, p.tile, p.cluster, off, ctaoff, tmp);
  if (rank == 0) write_plan_totals<NT>(p, total, tot, tid);
  for (int e = tid; e < nl; e += NT) base[e] += off[e];
  /* block_rank_scatter starts with __syncthreads (after zeroing its counters). */
  block_rank_scatter<NT>(ids, t0 * K, t1 * K, K, lo, nl, wcnt, base, p.e2p, p.p2t, p.p2e);
  for (int e = rank * kNw + w; e < nl; e += kClusterCtas * kNw)
    warp_expert_tail(p, e, tot[e], off[e], ctaoff[e], lane);
}

template <class M, int P, bool kBf16>
__global__ void __launch_bounds__(kHistThreads, P >= 16 ? 2 : 5) topk_hist_kernel(Params p) {
  extern __shared__ __align__(16) float hist_wsm[];
  __shared__ int cnt[kMaxExperts];
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int T = p.num_tokens, K = p.top_k, lo = p.local_offset, nl = p.local_num;
  const int tpw = p.tokens_per_warp;

  ptx::grid_dependency_wait();
  for (int e = tid; e < nl; e += kHistThreads) cnt[e] = 0;
  __syncthreads();

  float *wsm = M::kWarpSmem ? hist_wsm + (size_t)w * warp_smem_floats(p.num_experts) : nullptr;
  const int t0 = blockIdx.x * kHistWarps * tpw + w * tpw;
  const int t1 = min(t0 + tpw, T);
  for (int t = t0; t < t1; ++t) {
    const int id = M::template route<P, kBf16>(p, t, lane, wsm);
    if (lane < K) {
      const int e = id - lo;
      if ((unsigned)e < (unsigned)nl) atomicAdd(&cnt[e], 1);
    }
  }
  __syncthreads();
  ptx::launch_dependents();
  int32_t *row = p.blk_counts + (size_t)blockIdx.x * nl;
  for (int e = tid; e < nl; e += kHistThreads) row[e] = cnt[e];
}

template <class M, int P, bool kBf16>
cudaError_t launch_family_pb(const Params &p, bool single, cudaStream_t s, bool pdl) {
  if (single) {
    constexpr int NT = cluster_threads<M, P>();
    size_t uni = (size_t)(NT / 32) * p.local_num * sizeof(unsigned short);
    if constexpr (M::kWarpSmem) {
      const size_t uni_wsm = (size_t)warp_smem_floats(p.num_experts) * sizeof(float) * (NT / 32);
      if (uni_wsm > uni) uni = uni_wsm;
    }
    const size_t smem = kClusterFixedInts * sizeof(int) + uni;
    auto kern = cluster_kernel<M, P, kBf16, NT>;
    if (smem > 48 * 1024) {
      cudaError_t e =
          cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
      if (e != cudaSuccess) return e;
    }
    return launch_kernel(kern, dim3(kClusterCtas), dim3(NT), smem, s, pdl, p, kClusterCtas);
  }
  size_t smem = 0;
  if constexpr (M::kWarpSmem)
    smem = (size_t)warp_smem_floats(p.num_experts) * sizeof(float) * kHistWarps;
  auto kern = topk_hist_kernel<M, P, kBf16>;
  return launch_kernel(kern, dim3(p.num_blocks), dim3(kHistThreads), smem, s, pdl, p);
}

template <class M, bool kBf16>
cudaError_t launch_family_b(const Params &p, bool single, cudaStream_t s, bool pdl) {
  switch (values_per_lane(p.num_experts)) {
    case 1:
      return launch_family_pb<M, 1, kBf16>(p, single, s, pdl);
    case 2:
      return launch_family_pb<M, 2, kBf16>(p, single, s, pdl);
    case 4:
      return launch_family_pb<M, 4, kBf16>(p, single, s, pdl);
    case 8:
      return launch_family_pb<M, 8, kBf16>(p, single, s, pdl);
    default:
      return launch_family_pb<M, 16, kBf16>(p, single, s, pdl);
  }
}

template <class M>
cudaError_t launch_family(const Params &p, bool single, cudaStream_t s, bool pdl) {
  return p.logits_bf16 ? launch_family_b<M, true>(p, single, s, pdl)
                       : launch_family_b<M, false>(p, single, s, pdl);
}

/* Load the P strided logits of token t (expert i*32 + lane; 0 past E). */
template <int P, bool kBf16>
__device__ __forceinline__ void load_logits(const Params &p, int t, int lane, float (&v)[P]) {
  const int64_t row = (int64_t)t * p.num_experts;
#pragma unroll
  for (int i = 0; i < P; ++i) {
    const int e = i * 32 + lane;
    v[i] = (e < p.num_experts) ? load_value<kBf16>(p.logits, row + e) : 0.0f;
  }
}

/* Sum of x over lanes 0..n-1 in lane order (every lane gets it). Unrolled so the shuffles
 * issue ahead of the (sequential, order-fixed) additions. */
__device__ __forceinline__ float warp_ordered_sum(float x, int n) {
  float s = 0.0f;
#pragma unroll 8
  for (int k = 0; k < n; ++k) s = MOE_FADD(s, __shfl_sync(kFull, x, k));
  return s;
}

/* Write slot `lane` (< K) of token t. */
__device__ __forceinline__ void write_slot(const Params &p, int t, int lane, int id, float w) {
  if (lane < p.top_k) {
    const int64_t x = (int64_t)t * p.top_k + lane;
    p.topk_ids[x] = id;
    p.weights[x] = moe_f32_to_bf16(w);
  }
}

}  // namespace routing
}  // namespace moe

#endif /* MOE_ROUTING_ROUTE_KERNELS_CUH_ */
