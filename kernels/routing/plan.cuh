/*
 * plan.cuh - block-level pieces of the routing plan (DESIGN §4), shared by the single-CTA
 * kernels of every method family and by the multi-CTA kernels of plan.cu.
 *
 *   cgas_e = ceil(cnt_e / tile), segment start off_e = tile * sum_{e'<e} cgas_e',
 *   CTA offset ctaoff_e = C * sum_{e'<e} cgas_e', permuted_size = tile * sum cgas,
 *   num_ctas = C * sum cgas; CTA j of expert e: batch = e, mn_limit = min((j+1)*tile/C,
 *   off_e + cnt_e); padding rows of a segment are -1 in both permuted maps.
 *   Inside a segment, slots are in ascending expanded index.
 * Expert indices here are local (e - local_offset).
 */
#ifndef MOE_ROUTING_PLAN_CUH_
#define MOE_ROUTING_PLAN_CUH_

#include "kernels/routing/routing_common.cuh"

namespace moe {
namespace routing {

/*
 * Exclusive scan of cgas over the nl local experts (nl <= 512) by NT threads.
 * In: cnt[nl] (shared). Out: off[nl], ctaoff[nl] (shared); returns sum cgas to every thread.
 * tmp: shared scratch of NT/32 + 1 ints. Contains __syncthreads.
 */
template <int NT>
__device__ __forceinline__ int block_expert_scan(const int *cnt, int nl, int tile, int C, int *off,
                                                 int *ctaoff, int *tmp) {
  constexpr int kIpt = (kMaxExperts + NT - 1) / NT;
  constexpr int kNw = NT / 32;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  int c[kIpt];
  int sum = 0;
#pragma unroll
  for (int i = 0; i < kIpt; ++i) {
    const int e = tid * kIpt + i;
    c[i] = (e < nl) ? (cnt[e] + tile - 1) / tile : 0;
    sum += c[i];
  }
  int incl = sum;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int y = __shfl_up_sync(kFull, incl, d);
    if (lane >= d) incl += y;
  }
  if (lane == 31) tmp[w] = incl;
  __syncthreads();
  if (w == 0) {
    const int v = (lane < kNw) ? tmp[lane] : 0;
    int iv = v;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int y = __shfl_up_sync(kFull, iv, d);
      if (lane >= d) iv += y;
    }
    if (lane < kNw) tmp[lane] = iv - v; /* exclusive warp base */
    if (lane == 31) tmp[kNw] = iv;      /* total */
  }
  __syncthreads();
  int run = tmp[w] + incl - sum;
#pragma unroll
  for (int i = 0; i < kIpt; ++i) {
    const int e = tid * kIpt + i;
    if (e < nl) {
      off[e] = run * tile;
      ctaoff[e] = run * C;
    }
    run += c[i];
  }
  const int total = tmp[kNw];
  __syncthreads();
  return total;
}

/* The plan's scalars and expert_counts, written by one CTA of either path: num_ctas and
 * permuted_size from block_expert_scan's total, expert_counts[e] = the local count of global
 * expert e (0 outside the EP slice). */
template <int NT>
__device__ __forceinline__ void write_plan_totals(const Params &p, int total, const int *counts,
                                                  int tid) {
  if (tid == 0) {
    *p.num_ctas = total * p.cluster;
    *p.permuted_size = total * p.tile;
  }
  for (int e = tid; e < p.num_experts; e += NT) {
    const int le = e - p.local_offset;
    p.expert_counts[e] = ((unsigned)le < (unsigned)p.local_num) ? counts[le] : 0;
  }
}

/*
 * Rank and scatter the slots [x0, x1) (ids[x - x0] = global expert id) in ascending expanded
 * index: warp w takes a contiguous sub-range; pass 1 counts per (warp, expert) with
 * match.any; the counts are scanned over warps; pass 2 assigns positions
 * base[e] + warp prefix + rank among equal lanes. wcnt: shared [NW][nl] uint16 (the block has
 * at most 65535 slots). Contains __syncthreads.
 */
template <int NT>
__device__ __forceinline__ void block_rank_scatter(const int32_t *ids, int x0, int x1, int K,
                                                   int lo, int nl, unsigned short *wcnt,
                                                   const int *base, int32_t *e2p, int32_t *p2t,
                                                   int32_t *p2e) {
  constexpr int kNw = NT / 32;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  for (int i = tid; i < kNw * nl; i += NT) wcnt[i] = 0;
  __syncthreads();
  const int n = x1 - x0;
  const int per = (((n + kNw - 1) / kNw) + 31) & ~31;
  const int b = x0 + w * per;
  const int end = min(b + per, x1);
  unsigned short *my = wcnt + w * nl;
  for (int x = b + lane; x - lane < end; x += 32) {
    const bool valid = x < end;
    const int e = valid ? ids[x - x0] - lo : -1;
    const bool local = valid && (unsigned)e < (unsigned)nl;
    const unsigned m = __match_any_sync(kFull, local ? e : -1);
    if (local && lane == __ffs(m) - 1) my[e] += (unsigned short)__popc(m);
  }
  __syncthreads();
  for (int e = tid; e < nl; e += NT) {
    unsigned short run = 0;
    for (int v = 0; v < kNw; ++v) {
      const unsigned short c = wcnt[v * nl + e];
      wcnt[v * nl + e] = run;
      run += c;
    }
  }
  __syncthreads();
  for (int x = b + lane; x - lane < end; x += 32) {
    const bool valid = x < end;
    const int e = valid ? ids[x - x0] - lo : -1;
    const bool local = valid && (unsigned)e < (unsigned)nl;
    const unsigned m = __match_any_sync(kFull, local ? e : -1);
    if (local) {
      const int p = base[e] + my[e] + __popc(m & lanemask_lt());
      e2p[x] = p;
      p2t[p] = x / K;
      p2e[p] = x;
    } else if (valid) {
      e2p[x] = -1;
    }
    __syncwarp();
    if (local && lane == __ffs(m) - 1) my[e] += (unsigned short)__popc(m);
    __syncwarp();
  }
}

/* One warp: padding rows (-1) and CTA table entries of local expert e. */
__device__ __forceinline__ void warp_expert_tail(const Params &p, int e, int cnt, int off,
                                                 int ctaoff, int lane) {
  const int cg = (cnt + p.tile - 1) / p.tile;
  const int rows_end = off + cg * p.tile;
  for (int r = off + cnt + lane; r < rows_end; r += 32) {
    p.p2t[r] = -1;
    p.p2e[r] = -1;
  }
  const int ctas = cg * p.cluster;
  const int cta_tile = p.tile / p.cluster;
  const int lim = off + cnt;
  for (int i = lane; i < ctas; i += 32) {
    const int j = ctaoff + i;
    p.cta_batch[j] = e;
    p.cta_mn[j] = min((j + 1) * cta_tile, lim);
  }
}

}  // namespace routing
}  // namespace moe

#endif /* MOE_ROUTING_PLAN_CUH_ */
