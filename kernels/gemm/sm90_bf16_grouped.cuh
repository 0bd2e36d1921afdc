/*
 * sm90_bf16_grouped.cuh - the sm_90a BF16 grouped (per-expert) GEMM of the fused MoE, swap-AB.
 *
 * One CTA computes a BLOCK_M x N tile of D^T: BLOCK_M weight rows (output features, the wgmma M
 * operand A) of one expert times N = ctaTile permuted token rows (the wgmma N operand B), over
 * the full K (H for GEMM1, I for GEMM2) in 64-element stages with 128-byte swizzle.
 *
 *   grid.x = launch_ctas * m_tiles (1-D), cluster {C, 1, 1}; m_tiles = ceil(w_rows / BLOCK_M).
 *   Cluster id -> (token cluster tc, M tile) with M tiles fastest inside groups of group_m
 *   (L2-friendly order); token CTA j = tc*C + cluster rank.
 *   CTA j: expert = cta_to_batch[j], permuted rows [j*N, min((j+1)*N, cta_to_mn_limit[j])).
 *
 * Roles (warp-specialised): consumer warpgroups issue wgmma and run the epilogue: BLOCK_M/64 of
 * them with 64 weight rows each (BLOCK_M 64, 128), or for BLOCK_M 256 two with 128 rows each (two
 * m64 wgmma atoms sharing every B descriptor: a 256 x 128 tile halves the L2 bytes per FLOP of the
 * token operand against 128 x 128; measured 8-16% faster in prefill on an H100). One producer
 * warpgroup (its thread 0 issues the TMA loads; all 128 threads gather token rows in the GATHER
 * variant):
 *   - weights: a 2-D TMA of BLOCK_M/C rows per cluster rank, multicast to all C CTAs of the
 *     cluster (each CTA ends up with the full BLOCK_M x 64 tile);
 *   - tokens, GEMM1: gathered rows permuted_to_token[r] of hidden [T, H] by 16-byte cp.async
 *     from all 128 producer threads, written in the 128B-swizzled layout (rows at or past
 *     mn_limit, and padding rows -1, are zero-filled without a read). Each thread keeps
 *     kGatherLag stages of copies in flight, then cp.async.wait_group + fence.proxy.async +
 *     mbarrier.arrive (full[s] counts 1 + 128 arrivals; the documented-safe hand-off to wgmma).
 *     cp.async.mbarrier.arrive.noinc with a consumer-side proxy fence (no lag coupling) was
 *     mixed where the gather runs (H100: DeepSeek-V3 T = 2048 -2%, qwen3 T = 2048 +0.5-0.7%;
 *     docs/performance.md, state L), and either way the cp.async path moves ~9 B/clk/SM of
 *     token rows against TMA's ~15, so it cannot replace the permute pass at large T.
 *     A per-row 2-D TMA box {64, 1} was the first version: correct, but TMA issue-bound
 *     (~64 cycles a box per SM, ~60 TFLOP/s cap).
 *     (GATHER = true: every config with N < 64, and the others while T*K < 256 E_l.)
 *   - tokens, GEMM1 with GATHER = false (configs with N >= 64, from T*K >= 256 E_l: launch.cu):
 *     a permute kernel first copies the rows into permuted order (into the GEMM2 output buffer,
 *     which GEMM2 overwrites later); then, as in GEMM2, the CTA's rows are contiguous: one 2-D
 *     TMA box {64, N} per stage. cp.async fed ~40% of the tensor pipe at N = 256 (ncu, H200),
 *     the TMA path > 90%; with many tokens per expert that outweighs the permute pass (H100:
 *     the gather was 6-17% slower per forward at 256-512 tokens per expert, 3-7% faster at
 *     <= 128).
 *   - tokens, GEMM2: the CTA's rows of gemm1_out are contiguous: one 2-D TMA box {64, N} per
 *     stage; rows past mn_limit feed only accumulator columns that are never stored.
 *   - both TMA token paths, in a trimmed tile (below): only the main loop's rows, as {64, 32}
 *     boxes from a second tensor map (tmap_xs); the stage then expects kABytes + rows * 128.
 * Pipeline: mbarrier ring of STAGES; full[s] = own producer's arrive.expect_tx(A + B bytes);
 * empty[s] counts one arrival per consumer warp of every CTA in the cluster, so a weight stage
 * is re-filled (multicast) only after all C CTAs released it.
 * Partly filled tiles (an expert's last): while K <= kTrimMaxKBlocks k-blocks the main loop's
 * wgmma covers only the live rows rounded up to 32 (with_live_columns), the TMA token paths
 * load only those rows ({64, 32} boxes, tmap_xs), and the epilogue skips the 32-column steps
 * past them.
 * Exit: decided per cluster (cluster index * C >= *num_ctas); a CTA without valid rows inside a
 * live cluster stays in the pipeline and only skips its stores.
 * PDL: the gathering GEMM1 waits (griddepcontrol.wait) before it reads the plan; GEMM2 and the
 * permuted-copy GEMM1 read the plan and issue their first STAGES weight loads before the wait
 * (their predecessor let them launch only after it had waited for routing), and only their
 * token operand waits.
 * Epilogue: + bias (canonical index), activation (GEMM1), bf16, transposed through shared memory
 * (reusing the drained stage buffers), 16-byte stores of the rows < mn_limit only.
 * (Parameters and the epilogue arithmetic: epilogue.cuh.)
 */
#ifndef MOE_GEMM_SM90_BF16_GROUPED_CUH_
#define MOE_GEMM_SM90_BF16_GROUPED_CUH_

#include <cuda.h>
#include <stdint.h>

#include <type_traits>

#include "epilogue.cuh"
#include "../ptx/cluster.cuh"
#include "../ptx/mbarrier.cuh"
#include "../ptx/pdl.cuh"
#include "../ptx/tma.cuh"
#include "../ptx/wgmma.cuh"

namespace moe {
namespace sm90 {

template <int BLOCK_M, int N, int C, int STAGES>
struct GroupedGemmTraits {
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256,
                "BLOCK_M must be 64, 128 or 256");
  static_assert(N >= 8 && N <= 256 && N % 8 == 0, "ctaTile must be a multiple of 8 in [8, 256]");
  static_assert(C == 1 || C == 2 || C == 4, "cluster size must be 1, 2 or 4");
  static_assert((BLOCK_M / C) % 8 == 0, "multicast slices must be whole swizzle atoms");
  static_assert(STAGES >= 2, "need at least two stages");
  /* Weight rows per consumer warpgroup: 64 (one m64 wgmma atom), or 128 (two atoms sharing each
   * B descriptor) for BLOCK_M 256, so the CTA stays at two consumer warpgroups. */
  static constexpr int kWGRows = BLOCK_M == 256 ? 128 : 64;
  static constexpr int kAtoms = kWGRows / 64;
  static constexpr int kConsumerWGs = BLOCK_M / kWGRows;
  static constexpr int kConsumerThreads = 128 * kConsumerWGs;
  static constexpr int kThreads = kConsumerThreads + 128;
  static constexpr int kABytes = BLOCK_M * 128;
  static constexpr int kBBytes = N * 128;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kStagePitch = BLOCK_M + 8; /* epilogue staging row, elements */
  static_assert(N * kStagePitch * 2 <= STAGES * kStageBytes, "epilogue staging must fit");
  /* stages, full/empty barriers, GEMM1 gather row table, alignment slack */
  static constexpr int kSmemBytes = STAGES * kStageBytes + 2 * STAGES * 8 + N * 4 + 1024;
  /* cp.async groups a gathering thread keeps in flight before it arrives on a stage. */
  static constexpr int kGatherLag = STAGES > 2 ? STAGES - 2 : 1;
  static_assert(kSmemBytes <= 232448, "shared memory budget exceeded");
  /*
   * CTAs per SM the kernel is built for: 2 when two fit in shared memory (233472 B per SM,
   * 1 KB reserved per CTA) and the accumulators fit the halved register budget (N <= 64;
   * at N = 128 ptxas cannot allocate the wgmma under the 85-register entry cap):
   * one CTA's prologue and epilogue then overlap the other's main loop. BLOCK_M 64 with a small
   * N (decode) also runs 2 per SM.
   */
  static constexpr int kMinBlocks =
      ((2 * (kSmemBytes + 1024) <= 233472 && N <= 64) || (BLOCK_M == 64 && N <= 32)) ? 2 : 1;
  /*
   * setmaxnreg split of the per-CTA register pool. ptxas gives every thread the entry cap
   * floor(65536 / (threads * min blocks) / 8) * 8 (168 for 384 threads, 1 CTA/SM; 80 for 2);
   * the producer WG gives registers back, the consumers take at most what is free (an inc the
   * pool cannot serve would block forever).
   */
  static constexpr int kEntryRegs = (65536 / (kThreads * kMinBlocks)) / 8 * 8 > 255
                                        ? 248
                                        : (65536 / (kThreads * kMinBlocks)) / 8 * 8;
  static constexpr int kProducerRegs = kMinBlocks == 1 ? 56 : 40;
  static constexpr int kConsumerRegsRaw =
      ((kThreads * kEntryRegs - 128 * kProducerRegs) / kConsumerThreads) / 8 * 8;
  static constexpr int kConsumerRegs = kConsumerRegsRaw > 232 ? 232 : kConsumerRegsRaw;
  static_assert(kConsumerWGs != 2 || kConsumerRegs >= kEntryRegs, "setmaxnreg.inc must grow");
};

/* Longest K (in 64-element k-blocks) whose partly filled tiles run a trimmed main loop. */
constexpr int kTrimMaxKBlocks = 64;

/* The main loop's columns for a tile with `live_rows` token rows: live_rows rounded up to
 * kLiveStep (at least one step) while K is short, else N. Producer and consumers agree on it:
 * the producer loads exactly these token rows. */
template <int N>
__device__ __forceinline__ int main_loop_columns(int live_rows, int k_blocks) {
  if (k_blocks > kTrimMaxKBlocks) return N;
  const int steps = live_rows > kLiveStep ? (live_rows + kLiveStep - 1) / kLiveStep : 1;
  return steps * kLiveStep < N ? steps * kLiveStep : N;
}

/*
 * Calls f(std::integral_constant<int, NV>{}) with NV the smallest multiple of kLiveStep (32) not
 * below `live` (main_loop_columns: the tile's token rows before mn_limit, rounded), or N. Each
 * expert's last tile is partly filled (with 256 rows an expert and a 192-token tile, the second
 * tile holds 64): its main loop then issues wgmma of width NV instead of N, so the padding costs no
 * tensor-core time (while K is short: kTrimMaxKBlocks). Steps of 32, not 8: one main-loop copy per
 * step, and below 32 columns an m64nNk16 with A in shared memory reads more shared-memory bytes per
 * FLOP than the tensor core consumes.
 */
template <int N, int NV = kLiveStep, class F>
__device__ __forceinline__ void with_live_columns(int live, F &f) {
  if constexpr (NV >= N) {
    f(std::integral_constant<int, N>{});
  } else {
    if (live <= NV) {
      f(std::integral_constant<int, NV>{});
    } else {
      with_live_columns<N, NV + kLiveStep>(live, f);
    }
  }
}

/*
 * Rasterisation: launch index i (a cluster id, or a persistent kernel's tile number) -> token
 * cluster *tc and M tile *mt, M tiles fastest inside groups of group_m, so the CTAs resident at
 * once share both weight tiles and token rows in L2. token_clusters: the token clusters the
 * walk covers.
 */
__device__ __forceinline__ void tile_coords(int i, int group_m, int m_tiles, int token_clusters,
                                            int *tc, int *mt) {
  const int group_size = group_m * token_clusters;
  const int group = i / group_size;
  const int within = i - group * group_size;
  const int m_first = group * group_m;
  const int gm = min(group_m, m_tiles - m_first);
  *tc = within / gm;
  *mt = m_first + (within - *tc * gm);
}

/* The token operand of one stage from rows row0.. of a contiguous [rows, K] tensor: one {64, N}
 * box (tmap_x), or cols / kLiveStep boxes of {64, kLiveStep} (tmap_xs) in a trimmed tile. */
template <int N>
__device__ __forceinline__ void load_token_rows(uint8_t *dst, const CUtensorMap *tmap_x,
                                                const CUtensorMap *tmap_xs, uint64_t *bar, int kb,
                                                int row0, int cols) {
  if (cols == N) {
    ptx::tma_load_2d(dst, tmap_x, bar, kb * 64, row0);
  } else {
    for (int r = 0; r < cols; r += kLiveStep) {
      ptx::tma_load_2d(dst + r * 128, tmap_xs, bar, kb * 64, row0 + r);
    }
  }
}

/*
 * One k-block of a consumer warpgroup's main loop: 4 k-steps of m64nNVk16 wgmma over its kAtoms
 * atoms (A: the warpgroup's weight rows at a_stage, atom a at + a * 8 KB; B: the stage's token
 * rows at b_stage; both 128B-swizzled, 64 elements a row), committed as one group; returns once
 * the previous k-block's group has completed (wait<1>), so its stage may be released. The
 * first k-block overwrites the accumulators (scale-d 0).
 */
template <int NV, int kAtoms, int NACC>
__device__ __forceinline__ void mma_k_block(float (&d)[kAtoms][NACC], uint32_t a_stage,
                                            uint32_t b_stage, int kb) {
  using Mma = ptx::WgmmaBf16<NV>;
#pragma unroll
  for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint64_t db = ptx::wgmma_desc_sw128(b_stage + k * 32);
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
      const uint64_t da = ptx::wgmma_desc_sw128(a_stage + a * (64 * 128) + k * 32);
      Mma::mma(da, db, reinterpret_cast<float(&)[NV / 2]>(d[a]), (kb > 0 || k > 0) ? 1 : 0);
    }
  }
  ptx::wgmma_commit();
#pragma unroll
  for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
  ptx::wgmma_wait<1>();
#pragma unroll
  for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
}

/* After the main loop: the last k-block's wgmma group has completed. */
template <int kAtoms, int NACC>
__device__ __forceinline__ void mma_drain(float (&d)[kAtoms][NACC]) {
  ptx::wgmma_wait<0>();
#pragma unroll
  for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
}

template <int BLOCK_M, int N, int C, int STAGES, bool GEMM1, bool GATHER>
__global__ void __launch_bounds__(GroupedGemmTraits<BLOCK_M, N, C, STAGES>::kThreads,
                                  GroupedGemmTraits<BLOCK_M, N, C, STAGES>::kMinBlocks)
    sm90_bf16_grouped_gemm(const __grid_constant__ CUtensorMap tmap_w,
                           const __grid_constant__ CUtensorMap tmap_x,
                           const __grid_constant__ CUtensorMap tmap_xs, const GroupedGemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using T = GroupedGemmTraits<BLOCK_M, N, C, STAGES>;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t *smem = smem_raw + ((1024u - (ptx::smem_u32(smem_raw) & 1023u)) & 1023u);
  uint8_t *smem_a = smem;
  uint8_t *smem_b = smem + STAGES * T::kABytes;
  uint64_t *full = reinterpret_cast<uint64_t *>(smem + STAGES * T::kStageBytes);
  uint64_t *empty = full + STAGES;

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int wg = threadIdx.x / 128;
  const bool producer_warp = (warp == T::kConsumerWGs * 4);

  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      ptx::mbar_init(&full[s], GATHER ? 1 + 128 : 1);
      ptx::mbar_init(&empty[s], C * T::kConsumerWGs * 4);
    }
    ptx::mbar_init_fence();
  }
  if (producer_warp && lane == 0) {
    ptx::tma_prefetch_desc(&tmap_w);
    ptx::tma_prefetch_desc(&tmap_x);
    ptx::tma_prefetch_desc(&tmap_xs);
  }
  __syncthreads();

  /* The gathering GEMM1 follows routing directly: it may read the plan only after the wait.
   * GEMM2 and the permuted-copy GEMM1 follow a kernel that itself waited for routing before it
   * let them launch, so the plan (and the weights, which no kernel of the forward writes) are
   * complete when they start: they issue their first STAGES weight loads before the wait, and
   * only the token operand (their predecessor's output) waits. In decode this overlaps GEMM2's
   * weight stream with GEMM1's tail on the SMs GEMM1 leaves free. */
  constexpr bool kEarlyWeights = !GATHER;
  if constexpr (!kEarlyWeights) ptx::grid_dependency_wait();
  int tc, mt;
  tile_coords(static_cast<int>(blockIdx.x / C), p.group_m, p.m_tiles, p.token_clusters, &tc, &mt);
  const int cta = tc * C + static_cast<int>(blockIdx.x % C);
  const int m0 = mt * BLOCK_M;
  /* The three plan loads are issued together (one memory latency before the first TMA, not
   * two): cta < launch_ctas <= the tables' capacity, so the entries of CTAs that leave are
   * in bounds too. */
  const int num_ctas = *p.num_ctas;
  const int expert = p.cta_to_batch[cta];
  const int mn_limit = p.cta_to_mn_limit[cta];
  if (tc * C >= num_ctas) return;           /* the whole cluster leaves together */
  if constexpr (C > 1) ptx::cluster_sync(); /* peers' barriers are initialised */

  const int row0 = cta * N;
  const int k_blocks = p.k_blocks;
  const int live_rows = max(0, min(N, mn_limit - row0));
  /* Token rows the main loop reads (main_loop_columns); the TMA token paths load only these:
   * one {64, N} box (tmap_x) for a full-width tile, else {64, kLiveStep} boxes (tmap_xs). */
  const int mma_cols = main_loop_columns<N>(live_rows, k_blocks);
  const uint32_t stage_tx = T::kABytes + static_cast<uint32_t>(mma_cols) * 128u; /* TMA paths */

  /* Weights: a 2-D TMA of BLOCK_M/C rows per cluster rank, multicast to all C CTAs. */
  const uint32_t rank = (C > 1) ? ptx::cluster_ctarank() : 0u;
  constexpr int kSlice = BLOCK_M / C;
  const int w_row = expert * p.w_rows + m0 + static_cast<int>(rank) * kSlice;
  uint8_t *const a_dst = smem_a + rank * (kSlice * 128);
  auto load_weights = [&](int kb, int s) {
    if constexpr (C > 1) {
      ptx::tma_load_2d_multicast(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * 64, w_row,
                                 static_cast<uint16_t>((1u << C) - 1u));
    } else {
      ptx::tma_load_2d(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * 64, w_row);
    }
  };
  const int early_stages = kEarlyWeights ? min(STAGES, k_blocks) : 0;
  if constexpr (kEarlyWeights) {
    if (threadIdx.x == T::kConsumerThreads) {
      /* First lap: every empty[s] is free, so the producer's empty waits would pass at once. */
      for (int kb = 0; kb < early_stages; ++kb) {
        ptx::mbar_arrive_expect_tx(&full[kb], stage_tx);
        load_weights(kb, kb);
      }
    }
    ptx::grid_dependency_wait();
  }
  /* GEMM1 resets GEMM2's tile queue (sm90_bf16_gemm2_persistent.cuh). After the wait: every
   * earlier kernel of the stream, the previous forward's GEMM2 among them, has completed; GEMM2
   * takes tiles only after its own wait, i.e. after this grid completed. CTA 0 is live whenever
   * any tile is (num_ctas > 0). */
  if (GEMM1 && blockIdx.x == 0 && threadIdx.x == 0 && p.tile_counter != nullptr) {
    *p.tile_counter = 0;
  }
  ptx::launch_dependents();

  if (wg == T::kConsumerWGs) {
    /* ---------------- producer ---------------- */
    if constexpr (T::kConsumerWGs == 2) ptx::setmaxnreg_dec<T::kProducerRegs>();
    const int ptid = threadIdx.x - T::kConsumerThreads; /* 0..127 */
    static_assert(GEMM1 || !GATHER, "only GEMM1 gathers token rows");
    if constexpr (GATHER) {
      /* Token rows gathered with 16-byte cp.async by all 128 producer threads. */
      int32_t *row_src = reinterpret_cast<int32_t *>(empty + STAGES);
      for (int r = ptid; r < N; r += 128) {
        const int grow = row0 + r;
        row_src[r] = grow < mn_limit ? __ldg(p.permuted_to_token + grow) : -1;
      }
      ptx::named_barrier_sync(2, 128);
      constexpr int kPerThread = (N * 8 + 127) / 128;
      constexpr int kLag = T::kGatherLag;
      const int chunk = ptid & 7; /* 16-byte chunk of the 128-byte row */
      const int rsub = ptid >> 3; /* rows rsub + 16 i */
      const uint32_t swz = ((chunk ^ (rsub & 7)) << 4);
      const uint32_t b_base = ptx::smem_u32(smem_b);
      const uint16_t *src_base = p.gather_src + chunk * 8;
      const int64_t ld = p.gather_ld;
      int s = 0;
      uint32_t ph = 0;
      for (int kb = 0; kb < k_blocks; ++kb) {
        ptx::mbar_wait(&empty[s], ph ^ 1u);
        if (ptid == 0) {
          ptx::mbar_arrive_expect_tx(&full[s], T::kABytes);
          load_weights(kb, s);
        }
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
          const int r = rsub + 16 * i;
          if (N % 16 == 0 || r < N) {
            const int tok = row_src[r];
            const uint16_t *src = src_base + (tok >= 0 ? tok * ld + kb * 64 : 0);
            ptx::cp_async_16(b_base + s * T::kBBytes + r * 128 + swz, src, tok >= 0 ? 16u : 0u);
          }
        }
        ptx::cp_async_commit();
        /* Documented-safe hand-off of generic-proxy writes to wgmma: the writer waits for its
         * copies of stage kb - kLag, fences the proxies, then arrives. */
        if (kb >= kLag) {
          ptx::cp_async_wait<kLag>();
          ptx::fence_proxy_async_smem();
          ptx::mbar_arrive(&full[(kb - kLag) % STAGES]);
        }
        if (++s == STAGES) {
          s = 0;
          ph ^= 1u;
        }
      }
      ptx::cp_async_wait<0>();
      ptx::fence_proxy_async_smem();
      for (int kb = k_blocks > kLag ? k_blocks - kLag : 0; kb < k_blocks; ++kb) {
        ptx::mbar_arrive(&full[kb % STAGES]);
      }
    } else {
      /* The CTA's rows are contiguous (GEMM2: gemm1_out; GEMM1 without GATHER: the permuted
       * copy of hidden): one {64, N} box per stage, or mma_cols / 32 boxes of {64, 32} in a
       * trimmed tile. Rows past mn_limit only feed accumulator columns that are never stored. */
      if (ptid == 0) {
        int s = 0;
        uint32_t ph = 0;
        for (int kb = 0; kb < k_blocks; ++kb) {
          if (kb >= early_stages) { /* the first stages' weights were issued before the wait */
            ptx::mbar_wait(&empty[s], ph ^ 1u);
            ptx::mbar_arrive_expect_tx(&full[s], stage_tx);
            load_weights(kb, s);
          }
          load_token_rows<N>(smem_b + s * T::kBBytes, &tmap_x, &tmap_xs, &full[s], kb, row0,
                             mma_cols);
          if (++s == STAGES) {
            s = 0;
            ph ^= 1u;
          }
        }
      }
    }
  } else {
    /* ---------------- consumers ---------------- */
    if constexpr (T::kConsumerWGs == 2) ptx::setmaxnreg_inc<T::kConsumerRegs>();
    constexpr int kAtoms = T::kAtoms;
    float d[kAtoms][N / 2];
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
      for (int i = 0; i < N / 2; ++i) d[a][i] = 0.0f;
    }

    const uint32_t a_base = ptx::smem_u32(smem_a) + wg * (T::kWGRows * 128);
    const uint32_t b_base = ptx::smem_u32(smem_b);
    /* Frees stage `st` for the producers: one arrival per consumer warp on the barrier of
     * every CTA of the cluster (lane r signals rank r). */
    auto release_stage = [&](int st) {
      if (lane < C) {
        if constexpr (C > 1) {
          ptx::mbar_arrive_cluster(&empty[st], lane);
        } else {
          ptx::mbar_arrive(&empty[st]);
        }
      }
    };
    /* The main loop over K, its wgmma N = the tile's live columns (with_live_columns): the
     * accumulator columns past them stay zero and are never stored. */
    auto main_loop = [&](auto live) {
      constexpr int NV = decltype(live)::value;
      int s = 0, prev_s = 0;
      uint32_t ph = 0;
      for (int kb = 0; kb < k_blocks; ++kb) {
        ptx::mbar_wait(&full[s], ph);
        mma_k_block<NV>(d, a_base + s * T::kABytes, b_base + s * T::kBBytes, kb);
        if (kb > 0) release_stage(prev_s); /* its wgmmas are complete (wait<1> above) */
        prev_s = s;
        if (++s == STAGES) {
          s = 0;
          ph ^= 1u;
        }
      }
      mma_drain(d);
      release_stage(prev_s);
    };
    /* Trimmed tiles only while K is short (main_loop_columns): a trimmed tile ends early, so
     * the CTAs launched after it start out of step with the earlier ones, and the CTAs that read
     * one weight tile (an expert's token tiles, launched group_m apart) share it in L2 only
     * while they run within L2's residency time of each other; the longer a tile, the further
     * they drift. H100, DeepSeek-V3 T = 8192 with every tile trimmed: GEMM1 (112 k-blocks) read
     * 15.8 GB from DRAM instead of 9.5 and the forward took 8% longer, while the presets whose
     * GEMMs have <= 64 k-blocks ran 3-6% faster (docs/performance.md, state H). */
    with_live_columns<N>(mma_cols, main_loop);

    /* ---------------- epilogue ---------------- */
    /* All consumer warpgroups finished reading the stages; reuse them for staging. */
    ptx::named_barrier_sync(1, T::kConsumerThreads);
    uint16_t *stage = reinterpret_cast<uint16_t *>(smem);
    epilogue_to_stage<BLOCK_M, kAtoms, N, T::kStagePitch, GEMM1>(
        d, stage, p, expert, m0, wg * T::kWGRows, warp % 4, lane, live_rows);
    ptx::named_barrier_sync(1, T::kConsumerThreads);
    int col0, out_w;
    tile_columns<BLOCK_M>(GEMM1 && p.gated, m0, &col0, &out_w);
    store_stage<N, T::kStagePitch, BLOCK_M>(stage, p, col0, out_w, row0, live_rows, threadIdx.x,
                                            T::kConsumerThreads);
  }

  /* No CTA leaves while a peer may still multicast into it or arrive on its barriers. */
  if constexpr (C > 1) ptx::cluster_sync();
#endif
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_SM90_BF16_GROUPED_CUH_
