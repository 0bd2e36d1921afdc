/*
 * grouped_plan.cu - the GEMM plan of moe_runner_run_grouped, built on the device from the
 * device counts (docs/ep.md): no host synchronisation, so the call is CUDA-graph capturable.
 *
 * The plan is the one moe_routing_prepare writes for the same grouping (DESIGN §4, plan.cuh),
 * with the row map pointing into hidden_states instead of at tokens. With the clamped count
 * c_e of local expert e (below), in ascending e:
 *   cgas_e = ceil(c_e / tile), off_e = tile * sum_{e' < e} cgas_e'
 *   CTA j of expert e: cta_to_batch[j] = e, cta_to_mn_limit[j] = min((j + 1) * ctaTile,
 *   off_e + c_e); permuted_to_token[off_e + i] = src_e + i (i < c_e), -1 for padding rows;
 *   num_ctas = C * sum cgas, permuted_size = tile * sum cgas; gemm_tile_counter = 0.
 *   src_e = e * capacity (MASKED) or the sum of the clamped counts before e (CONTIGUOUS).
 * Optionally (row_to_permuted != NULL: GEMM1 reads a permuted copy of the rows, FP8 runs) also
 * the inverse row map, the plan's expanded_to_permuted with K = 1: for every input row i < N,
 * row_to_permuted[i] = off_e + (i - src_e) where 0 <= i - src_e < c_e for an expert e, else -1
 * (rows no clamped count covers: the permute skips them).
 * Counts are clamped, never followed past the buffers: c < 0 -> 0; MASKED: c > capacity ->
 * capacity; CONTIGUOUS: with q_e = max(c_e, 0) and P_e = sum_{e' < e} q_e',
 * c_e = min(P_e + q_e, N) - min(P_e, N) (the count crossing N ends at N, later ones are 0).
 * So sum c_e <= N in both layouts, hence sum cgas <= max_cgas(N, 1, E_l, tile): the tables fit
 * the workspace (core/grouped.c). Every violation sets a bit in *status (MOE_K_GROUPED_*).
 *
 * One kernel, grid ceil(max_rows / kRowsPerCta) (at most kMaxCtas) x kThreads: every CTA reads
 * the E_l counts and scans them into shared tables (thread t owns a run of consecutive
 * experts; a block scan over threads), then writes its grid-stride share of the row map and
 * the CTA tables (and the inverse row map), finding each entry's expert by binary search over
 * the segment starts (over the source rows for the inverse map of CONTIGUOUS; by division for
 * MASKED).
 * CTA 0 writes the scalars and the status word.
 */
#include "kernels/pdl_launch.cuh"
#include "kernels/ptx/pdl.cuh"
#include "kernels/routing/grouped_plan.cuh"

namespace moe {
namespace routing {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxLocal = MOE_K_GROUPED_MAX_LOCAL_EXPERTS;
constexpr int kExpertsPerThread = (kMaxLocal + kThreads - 1) / kThreads;
constexpr int64_t kRowsPerCta = 8 * kThreads;
constexpr int64_t kMaxCtas = 64;

struct GroupedPlanParams {
  const int32_t *counts;
  int32_t *status;
  int32_t *p2t;
  int32_t *row_to_permuted; /* [N] or NULL */
  int32_t *cta_batch;
  int32_t *cta_mn;
  int32_t *num_ctas;
  int32_t *permuted_size;
  int32_t *tile_counter;
  int64_t num_rows; /* N */
  int64_t capacity;
  int64_t max_rows;
  int64_t max_ctas;
  int32_t masked;
  int32_t local_num;
  int32_t tile;
  int32_t cluster;
};

/* Exclusive scan of one value per thread over the block; *total gets the sum. tmp: shared
 * [kWarps + 1]. Contains __syncthreads. */
__device__ __forceinline__ long long block_exclusive_scan(long long x, long long *tmp,
                                                          long long *total) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  long long incl = x;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const long long y = __shfl_up_sync(0xFFFFFFFFu, incl, d);
    if (lane >= d) incl += y;
  }
  if (lane == 31) tmp[w] = incl;
  __syncthreads();
  if (w == 0) {
    const long long v = lane < kWarps ? tmp[lane] : 0;
    long long iv = v;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const long long y = __shfl_up_sync(0xFFFFFFFFu, iv, d);
      if (lane >= d) iv += y;
    }
    if (lane < kWarps) tmp[lane] = iv - v;
    if (lane == 31) tmp[kWarps] = iv;
  }
  __syncthreads();
  const long long r = tmp[w] + incl - x;
  *total = tmp[kWarps];
  __syncthreads(); /* tmp is free again */
  return r;
}

/* The last expert e in [0, nl) whose segment starts at or before CGA g (seg[0] = 0 <= g):
 * experts without rows share their successor's start and are skipped. The same search finds
 * the expert of an input row over the source rows (src[0] = 0, non-decreasing). */
__device__ __forceinline__ int expert_of(const int *seg, int nl, int g) {
  int lo = 0, hi = nl - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (seg[mid] <= g) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads) grouped_plan_kernel(const GroupedPlanParams p) {
  __shared__ int seg[kMaxLocal]; /* first CGA of each expert */
  __shared__ int cnt[kMaxLocal]; /* clamped count */
  __shared__ int src[kMaxLocal]; /* input row of the expert's first row */
  __shared__ long long tmp[kWarps + 1];
  __shared__ int flags;
  const int tid = threadIdx.x;
  const int nl = p.local_num;
  const long long tile = p.tile, N = p.num_rows;

  ptx::grid_dependency_wait(); /* the counts come from the previous kernel (the dispatcher) */
  ptx::launch_dependents();    /* GEMM1 waits for this grid's completion before it reads */
  if (tid == 0) flags = 0;

  /* Pass 1: the non-negative (MASKED: and capped) counts, their prefix over experts. */
  const int e0 = min(tid * kExpertsPerThread, nl), e1 = min(e0 + kExpertsPerThread, nl);
  int q[kExpertsPerThread];
  int bad = 0;
  long long qsum = 0;
#pragma unroll
  for (int i = 0; i < kExpertsPerThread; ++i) {
    const int e = e0 + i;
    int c = e < e1 ? __ldg(p.counts + e) : 0;
    if (c < 0) {
      bad |= MOE_K_GROUPED_COUNT_NEGATIVE;
      c = 0;
    }
    if (p.masked && c > p.capacity) {
      bad |= MOE_K_GROUPED_COUNT_OVER_CAPACITY;
      c = static_cast<int>(p.capacity);
    }
    q[i] = c;
    qsum += c;
  }
  long long sum_q = 0;
  long long P = block_exclusive_scan(qsum, tmp, &sum_q);
  if (!p.masked && sum_q > N) bad |= MOE_K_GROUPED_SUM_OVER_ROWS;
  if (bad) atomicOr(&flags, bad);

  /* Pass 2: clamped counts, source rows, CGAs; then the CGA prefix (segment starts). */
  long long cgas = 0;
#pragma unroll
  for (int i = 0; i < kExpertsPerThread; ++i) {
    const int e = e0 + i;
    if (e < e1) {
      long long c, first;
      if (p.masked) {
        c = q[i];
        first = static_cast<long long>(e) * p.capacity;
      } else {
        first = min(P, N);
        c = min(P + q[i], N) - first;
        P += q[i];
      }
      cnt[e] = static_cast<int>(c);
      src[e] = static_cast<int>(first);
      cgas += (c + tile - 1) / tile;
    }
  }
  long long total = 0;
  long long g = block_exclusive_scan(cgas, tmp, &total);
  for (int e = e0; e < e1; ++e) {
    seg[e] = static_cast<int>(g);
    g += (cnt[e] + tile - 1) / tile;
  }
  /* sum cgas <= max_cgas (file comment); the bound is kept explicitly all the same */
  if (total * tile > p.max_rows) total = p.max_rows / tile;
  if (total * p.cluster > p.max_ctas) total = p.max_ctas / p.cluster;
  __syncthreads(); /* seg, cnt, src and flags complete */

  if (blockIdx.x == 0 && tid == 0) {
    *p.num_ctas = static_cast<int32_t>(total * p.cluster);
    *p.permuted_size = static_cast<int32_t>(total * tile);
    if (p.tile_counter != nullptr) *p.tile_counter = 0;
    if (p.status != nullptr) *p.status = flags;
  }
  if (nl <= 0) return;
  const long long stride = static_cast<long long>(gridDim.x) * kThreads;
  const long long rows = total * tile;
  for (long long r = blockIdx.x * static_cast<long long>(kThreads) + tid; r < rows; r += stride) {
    const int e = expert_of(seg, nl, static_cast<int>(r / tile));
    const long long i = r - static_cast<long long>(seg[e]) * tile;
    p.p2t[r] = i < cnt[e] ? static_cast<int32_t>(src[e] + i) : -1;
  }
  if (p.row_to_permuted != nullptr) {
    for (long long i = blockIdx.x * static_cast<long long>(kThreads) + tid; i < N; i += stride) {
      int e;
      long long j;
      if (p.masked) {
        const long long q = i / p.capacity; /* capacity >= 1: N = E_l * capacity > i */
        e = static_cast<int>(q < nl ? q : nl - 1);
        j = i - static_cast<long long>(e) * p.capacity;
      } else {
        e = expert_of(src, nl, static_cast<int>(i));
        j = i - src[e];
      }
      const long long r = static_cast<long long>(seg[e]) * tile + j;
      p.row_to_permuted[i] = j >= 0 && j < cnt[e] && r < rows ? static_cast<int32_t>(r) : -1;
    }
  }
  const long long ctas = total * p.cluster;
  const long long cta_tile = tile / p.cluster;
  for (long long j = blockIdx.x * static_cast<long long>(kThreads) + tid; j < ctas; j += stride) {
    const int e = expert_of(seg, nl, static_cast<int>(j / p.cluster));
    const long long end = static_cast<long long>(seg[e]) * tile + cnt[e];
    p.cta_batch[j] = e;
    p.cta_mn[j] = static_cast<int32_t>(min(min((j + 1) * cta_tile, end), rows));
  }
}

}  // namespace

cudaError_t launch_grouped_plan(const moe_k_grouped &g, const moe_k_plan &plan, int64_t num_rows,
                                int32_t local_num, int32_t tile, int32_t cluster,
                                int32_t *row_to_permuted, bool pdl, cudaStream_t stream) {
  if (g.counts == nullptr || local_num < 1 || local_num > kMaxLocal || tile < 1 || cluster < 1 ||
      tile % cluster != 0 || num_rows < 0 || num_rows > INT32_MAX || plan.max_rows < 0 ||
      plan.max_ctas < 0 || (g.masked && (g.capacity < 0 || g.capacity * local_num != num_rows))) {
    return cudaErrorInvalidValue;
  }
  GroupedPlanParams p = {};
  p.counts = g.counts;
  p.status = g.status;
  p.p2t = plan.permuted_to_token;
  p.row_to_permuted = row_to_permuted;
  p.cta_batch = plan.cta_to_batch;
  p.cta_mn = plan.cta_to_mn_limit;
  p.num_ctas = plan.num_ctas;
  p.permuted_size = plan.permuted_size;
  p.tile_counter = plan.gemm_tile_counter;
  p.num_rows = num_rows;
  p.capacity = g.masked ? g.capacity : 0;
  p.max_rows = plan.max_rows;
  p.max_ctas = plan.max_ctas;
  p.masked = g.masked ? 1 : 0;
  p.local_num = local_num;
  p.tile = tile;
  p.cluster = cluster;
  int64_t blocks = (plan.max_rows + kRowsPerCta - 1) / kRowsPerCta;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxCtas) blocks = kMaxCtas;
  return launch_pdl(grouped_plan_kernel, blocks, kThreads, stream, pdl, p);
}

}  // namespace routing
}  // namespace moe
