/*
 * plan.cu - kernels 2 and 3 of the multi-CTA routing path (routing_common.cuh).
 *
 *   block_scan_kernel: grid ceil(E_l/32) x 1024 threads. Lane = expert, warp = a contiguous
 *     band of scratch rows (CTAs of kernel 1). Rewrites the per-CTA counts in place as
 *     per-expert exclusive prefixes over CTAs and writes the per-expert totals.
 *   scatter_kernel: same CTA partition as kernel 1. Every CTA rebuilds the expert offsets from
 *     the totals (a 512-entry block scan), ranks its own slots in ascending expanded index
 *     (plan.cuh), and writes e2p / p2t / p2e. Padding rows and CTA table entries are written
 *     by warps spread over the grid (expert e by global warp e mod (grid * 8)); CTA 0 writes
 *     num_ctas, permuted_size and expert_counts.
 */
#include "kernels/routing/plan.cuh"
#include "kernels/routing/routing_common.cuh"

namespace moe {
namespace routing {

__global__ void __launch_bounds__(kScanThreads) block_scan_kernel(Params p) {
  __shared__ int part[32][33];
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int nl = p.local_num, B = p.num_blocks;
  const int e = blockIdx.x * 32 + lane;
  const bool valid = e < nl;
  const int per = (B + 31) / 32;
  const int r0 = w * per, r1 = min(r0 + per, B);

  ptx::grid_dependency_wait();
  int sum = 0;
  if (valid) {
#pragma unroll 8
    for (int r = r0; r < r1; ++r) sum += p.blk_counts[(size_t)r * nl + e];
  }
  part[w][lane] = sum;
  __syncthreads();
  if (w == 0) {
    int run = 0;
    for (int v = 0; v < 32; ++v) {
      const int c = part[v][lane];
      part[v][lane] = run;
      run += c;
    }
    if (valid) p.totals[e] = run;
  }
  __syncthreads();
  ptx::launch_dependents();
  if (valid) {
    int run = part[w][lane];
#pragma unroll 8
    for (int r = r0; r < r1; ++r) {
      int32_t *q = p.blk_counts + (size_t)r * nl + e;
      const int c = *q;
      *q = run;
      run += c;
    }
  }
}

__global__ void __launch_bounds__(kHistThreads) scatter_kernel(Params p) {
  __shared__ int cnt[kMaxExperts];
  __shared__ int off[kMaxExperts];
  __shared__ int ctaoff[kMaxExperts];
  __shared__ int base[kMaxExperts];
  __shared__ int tmp[kHistWarps + 1];
  __shared__ unsigned short wcnt[kHistWarps * kMaxExperts];
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int T = p.num_tokens, K = p.top_k, nl = p.local_num, lo = p.local_offset;
  const int b = blockIdx.x;

  ptx::grid_dependency_wait();
  for (int e = tid; e < nl; e += kHistThreads) cnt[e] = p.totals[e];
  __syncthreads();
  const int total = block_expert_scan<kHistThreads>(cnt, nl, p.tile, p.cluster, off, ctaoff, tmp);
  if (b == 0) write_plan_totals<kHistThreads>(p, total, cnt, tid);
  const int32_t *row = p.blk_counts + (size_t)b * nl;
  for (int e = tid; e < nl; e += kHistThreads) base[e] = off[e] + row[e];
  /* block_rank_scatter starts with __syncthreads (after zeroing its counters). */
  const int tpb = kHistWarps * p.tokens_per_warp;
  const int t0 = b * tpb, t1 = min(t0 + tpb, T);
  const int x0 = t0 * K, x1 = t1 * K;
  block_rank_scatter<kHistThreads>(p.topk_ids + x0, x0, x1, K, lo, nl, wcnt, base, p.e2p, p.p2t,
                                   p.p2e);
  ptx::launch_dependents();
  const int gw = b * kHistWarps + w, nw = p.num_blocks * kHistWarps;
  for (int e = gw; e < nl; e += nw) warp_expert_tail(p, e, cnt[e], off[e], ctaoff[e], lane);
}

cudaError_t launch_plan_multi(const Params &p, cudaStream_t s, bool pdl) {
  cudaError_t e = launch_kernel(block_scan_kernel, dim3((p.local_num + 31) / 32),
                                dim3(kScanThreads), 0, s, pdl, p);
  if (e != cudaSuccess) return e;
  return launch_kernel(scatter_kernel, dim3(p.num_blocks), dim3(kHistThreads), 0, s, pdl, p);
}

}  // namespace routing
}  // namespace moe
