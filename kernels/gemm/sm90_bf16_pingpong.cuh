/*
 * sm90_bf16_pingpong.cuh - the persistent "ping-pong" variant of the sm_90a BF16 grouped GEMM
 * (swap-AB, TMA-fed token rows: GEMM2, and GEMM1 after the permute kernel).
 *
 * Why: the one-tile-per-CTA kernel (sm90_bf16_grouped.cuh) leaves the tensor pipe idle while a
 * CTA fills its pipeline, drains it and runs its epilogue; in prefill that was 40-45% of the time
 * (Nsight Compute, H100, qwen3-30b T = 16384: tensor pipe 55% / 61% in GEMM1 / GEMM2, no eligible
 * warp in 71% of cycles, DRAM 24% / 37%). Here a CTA stays resident and walks tiles, and its two
 * consumer warpgroups take alternate tiles: while one runs its epilogue, the other's main loop
 * keeps the tensor pipe busy, and the producer fills the stage ring for the next tile without a
 * gap.
 *
 *   grid.x = min(resident clusters, live tiles) * C (the launcher sizes it), cluster {C, 1, 1}.
 *   Tiles: t = (token cluster tc, M tile m) over the live clusters ceil(*num_ctas / C) x m_tiles,
 *   M tiles fastest inside groups of group_m (L2-friendly, as the one-tile kernel). Cluster c
 *   walks t = c, c + G, c + 2G, ... (G clusters launched); its i-th tile goes to consumer
 *   warpgroup i % 2. Token CTA j = tc * C + cluster rank; expert = cta_to_batch[j], rows
 *   [j * N, cta_to_mn_limit[j]).
 *   Tile = 128 weight rows (two m64 wgmma atoms sharing every B descriptor) x N tokens.
 *
 * Roles: warpgroups 0 and 1 consume (wgmma + epilogue, 232 registers each after setmaxnreg);
 * warpgroup 2 produces (thread 0 issues all TMA loads, 40 registers).
 * Pipeline: one ring of STAGES (A: 128 x 64 weights, B: N x 64 tokens, 128B swizzle) shared by
 * both consumers in tile order; the producer's i-th load and a consumer's k-block kb of its
 * tile with local index lt both map to ring iteration it = lt * k_blocks + kb (stage it %
 * STAGES, phase (it / STAGES) & 1), so no consumer ever waits on the other's stages.
 * full[s]: the producer's arrive.expect_tx (A + B bytes). empty[s]: one arrival per warp of
 * the consuming warpgroup in every CTA of the cluster (4 C), so a multicast weight slice is
 * re-filled only after all C CTAs released it.
 * Order: a consumer starts waiting on the ring for its tile lt only after the other one passed
 * all its waits for tile lt - 1 (order[] barriers, one arrival per warp). Without it, a
 * consumer could wait on a stage's full barrier more than one phase ahead of it, where the
 * phase parity aliases (tile lt + 1's it0 on a barrier still at tile lt - 1's phase); with it,
 * the main loops also run one after the other, which is the ping-pong.
 * Epilogue: each consumer has its own staging buffer (the ring keeps streaming), bias +
 * activation + bf16 + transpose (epilogue.cuh), 16-byte stores of rows < mn_limit.
 * Exit: live tiles are counted after griddepcontrol.wait; a cluster without a tile leaves
 * together; otherwise all CTAs of a cluster walk the same tiles (same expert by construction of
 * the plan, so the weight multicast is valid).
 */
#ifndef MOE_GEMM_SM90_BF16_PINGPONG_CUH_
#define MOE_GEMM_SM90_BF16_PINGPONG_CUH_

#include <cuda.h>
#include <stdint.h>

#include "../ptx/cluster.cuh"
#include "../ptx/mbarrier.cuh"
#include "../ptx/pdl.cuh"
#include "../ptx/tma.cuh"
#include "../ptx/wgmma.cuh"
#include "epilogue.cuh"

namespace moe {
namespace sm90 {

template <int N, int C, int STAGES>
struct PingpongTraits {
  static_assert(N == 64 || N == 128, "ping-pong token tiles: 64 or 128 rows");
  static_assert(C == 1 || C == 2, "ping-pong cluster size: 1 or 2");
  static_assert(STAGES >= 2, "need at least two stages");
  static constexpr int kTileM = 128; /* weight rows per tile = one consumer warpgroup */
  static constexpr int kAtoms = kTileM / 64;
  static constexpr int kThreads = 3 * 128;
  static constexpr int kABytes = kTileM * 128;
  static constexpr int kBBytes = N * 128;
  static constexpr int kStageBytes = kABytes + kBBytes;
  /* Per-consumer staging of 64 output columns (epilogue.cuh, stage64_index): small, so the
   * ring gets the rest of shared memory (a deep ring is what keeps one warpgroup's main loop
   * fed: it holds ~2 stages itself while the others are in flight). */
  static constexpr int kStagingBytes = N * 64 * 2;
  /* ring, two staging buffers, full/empty and two order barriers, alignment slack */
  static constexpr int kSmemBytes =
      STAGES * kStageBytes + 2 * kStagingBytes + (2 * STAGES + 2) * 8 + 1024;
  static_assert(kSmemBytes <= 232448, "shared memory budget exceeded");
  /* 384 threads, one CTA per SM: entry cap 168; 128 x 40 + 256 x 232 = 64512 <= 65536. */
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
};

template <int N, int C, int STAGES, bool GEMM1>
__global__ void __launch_bounds__(PingpongTraits<N, C, STAGES>::kThreads, 1)
    sm90_bf16_pingpong_gemm(const __grid_constant__ CUtensorMap tmap_w,
                            const __grid_constant__ CUtensorMap tmap_x, const GroupedGemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using T = PingpongTraits<N, C, STAGES>;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t *smem = smem_raw + ((1024u - (ptx::smem_u32(smem_raw) & 1023u)) & 1023u);
  uint8_t *smem_a = smem;
  uint8_t *smem_b = smem + STAGES * T::kABytes;
  uint16_t *staging = reinterpret_cast<uint16_t *>(smem + STAGES * T::kStageBytes);
  uint64_t *full =
      reinterpret_cast<uint64_t *>(smem + STAGES * T::kStageBytes + 2 * T::kStagingBytes);
  uint64_t *empty = full + STAGES;
  uint64_t *order = empty + STAGES; /* order[w]: warpgroup w's main loop passed its last wait */

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      ptx::mbar_init(&full[s], 1);
      ptx::mbar_init(&empty[s], C * 4);
    }
    ptx::mbar_init(&order[0], 4);
    ptx::mbar_init(&order[1], 4);
    ptx::mbar_init_fence();
  }
  if (threadIdx.x == 256) {
    ptx::tma_prefetch_desc(&tmap_w);
    ptx::tma_prefetch_desc(&tmap_x);
  }
  __syncthreads();

  /* Everything below reads data of the routing / previous GEMM stage. */
  ptx::grid_dependency_wait();
  const int live_clusters = (*p.num_ctas + C - 1) / C;
  const int total_tiles = live_clusters * p.m_tiles;
  const int first = static_cast<int>(blockIdx.x) / C;
  const int stride = static_cast<int>(gridDim.x) / C;
  if (first >= total_tiles) return; /* the whole cluster leaves together */
  ptx::launch_dependents();
  if constexpr (C > 1) ptx::cluster_sync(); /* peers' barriers are initialised */

  /* Tile t -> token CTA and first weight row (rasterisation of the one-tile kernel). */
  const int group_size = p.group_m * live_clusters;
  auto tile_at = [&](int t, int *cta, int *m0) {
    const int group = t / group_size;
    const int within = t - group * group_size;
    const int m_first = group * p.group_m;
    const int gm = min(p.group_m, p.m_tiles - m_first);
    const int tc = within / gm;
    *cta = tc * C + static_cast<int>(blockIdx.x % C);
    *m0 = (m_first + (within - tc * gm)) * T::kTileM;
  };
  const int k_blocks = p.k_blocks;

  if (wg == 2) {
    /* ---------------- producer ---------------- */
    ptx::setmaxnreg_dec<T::kProducerRegs>();
    if (threadIdx.x == 256) {
      const uint32_t rank = (C > 1) ? ptx::cluster_ctarank() : 0u;
      constexpr int kSlice = T::kTileM / C;
      uint8_t *const a_dst = smem_a + rank * (kSlice * 128);
      int s = 0;
      uint32_t ph = 0;
      for (int t = first; t < total_tiles; t += stride) {
        int cta, m0;
        tile_at(t, &cta, &m0);
        const int w_row = __ldg(p.cta_to_batch + cta) * p.w_rows + m0 + rank * kSlice;
        const int row0 = cta * N;
        for (int kb = 0; kb < k_blocks; ++kb) {
          ptx::mbar_wait(&empty[s], ph ^ 1u);
          ptx::mbar_arrive_expect_tx(&full[s], T::kStageBytes);
          if constexpr (C > 1) {
            ptx::tma_load_2d_multicast(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * 64, w_row,
                                       static_cast<uint16_t>((1u << C) - 1u));
          } else {
            ptx::tma_load_2d(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * 64, w_row);
          }
          ptx::tma_load_2d(smem_b + s * T::kBBytes, &tmap_x, &full[s], kb * 64, row0);
          if (++s == STAGES) {
            s = 0;
            ph ^= 1u;
          }
        }
      }
    }
  } else {
    /* ---------------- consumers (warpgroup wg takes local tiles wg, wg + 2, ...) -------- */
    ptx::setmaxnreg_inc<T::kConsumerRegs>();
    using Mma = ptx::WgmmaBf16<N>;
    constexpr int kAtoms = T::kAtoms;
    uint16_t *const stage_buf = staging + wg * (T::kStagingBytes / 2);
    const uint32_t a_base = ptx::smem_u32(smem_a);
    const uint32_t b_base = ptx::smem_u32(smem_b);
    const int w = warp % 4;
    float d[kAtoms][N / 2];
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
#pragma unroll
      for (int i = 0; i < N / 2; ++i) d[a][i] = 0.0f;
    }
    int lt = wg;
    for (int t = first + wg * stride; t < total_tiles; t += 2 * stride, lt += 2) {
      int cta, m0;
      tile_at(t, &cta, &m0);
      /* The other consumer's tile lt - 1 is its ((lt - 2 + wg) / 2)-th. */
      if (lt > 0) ptx::mbar_wait(&order[1 - wg], static_cast<uint32_t>((lt - 2 + wg) / 2) & 1u);
      const uint32_t it0 = static_cast<uint32_t>(lt) * static_cast<uint32_t>(k_blocks);
      int s = static_cast<int>(it0 % STAGES), prev_s = s;
      uint32_t ph = (it0 / STAGES) & 1u;
      for (int kb = 0; kb < k_blocks; ++kb) {
        ptx::mbar_wait(&full[s], ph);
#pragma unroll
        for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
        ptx::wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint64_t db = ptx::wgmma_desc_sw128(b_base + s * T::kBBytes + k * 32);
#pragma unroll
          for (int a = 0; a < kAtoms; ++a) {
            const uint64_t da =
                ptx::wgmma_desc_sw128(a_base + s * T::kABytes + a * (64 * 128) + k * 32);
            Mma::mma(da, db, d[a], (kb > 0 || k > 0) ? 1 : 0);
          }
        }
        ptx::wgmma_commit();
#pragma unroll
        for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
        ptx::wgmma_wait<1>();
#pragma unroll
        for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
        if (kb > 0 && lane < C) {
          if constexpr (C > 1) {
            ptx::mbar_arrive_cluster(&empty[prev_s], lane);
          } else {
            ptx::mbar_arrive(&empty[prev_s]);
          }
        }
        prev_s = s;
        if (++s == STAGES) {
          s = 0;
          ph ^= 1u;
        }
      }
      __syncwarp();
      if (lane == 0) ptx::mbar_arrive(&order[wg]);
      ptx::wgmma_wait<0>();
#pragma unroll
      for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
      if (lane < C) {
        if constexpr (C > 1) {
          ptx::mbar_arrive_cluster(&empty[prev_s], lane);
        } else {
          ptx::mbar_arrive(&empty[prev_s]);
        }
      }

      /* Epilogue, in passes of 64 columns: the staging buffer is free again (barrier), stage,
       * barrier, store. The other consumer's main loop runs meanwhile. */
      const int expert = __ldg(p.cta_to_batch + cta);
      const int mn_limit = __ldg(p.cta_to_mn_limit + cta);
      const bool gated = GEMM1 && p.gated;
      int col0, out_w;
      tile_columns<T::kTileM>(gated, m0, &col0, &out_w);
      const int limit = min(p.out_cols, col0 + out_w);
      const int passes = stage64_passes<kAtoms>(gated);
#pragma unroll
      for (int pass = 0; pass < kAtoms; ++pass) {
        if (pass < passes) {
          ptx::named_barrier_sync(1 + wg, 128);
          epilogue_pass_to_stage64<kAtoms, N, GEMM1>(d, stage_buf, p, expert, m0, pass, w, lane);
          ptx::named_barrier_sync(1 + wg, 128);
          store_stage64<N>(stage_buf, p, col0 + 64 * pass, limit, cta * N, mn_limit,
                           threadIdx.x - wg * 128, 128);
        }
      }
    }
  }

  /* No CTA leaves while a peer may still multicast into it or arrive on its barriers. */
  if constexpr (C > 1) ptx::cluster_sync();
#endif
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_SM90_BF16_PINGPONG_CUH_
