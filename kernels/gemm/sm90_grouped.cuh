/*
 * sm90_grouped.cuh - the sm_90a grouped (per-expert) GEMM of the fused MoE with one fp32
 * accumulator over the whole K, swap-AB: the mainloop of BF16 x BF16, and of FP8 e4m3 x e4m3
 * with per-tensor scales (applied once in the epilogue: common/formats.cuh). Block-scaled FP8,
 * whose accumulator is promoted every 128 of K, runs its own mainloop and GEMM1 epilogue
 * (sm90_fp8_block_grouped.cuh) inside this kernel, and MXFP4 weights, expanded to bf16 in
 * registers, theirs (sm90_w4a16_mxfp4_grouped.cuh). The parts every format shares are in common/:
 * tile order and trimmed tiles (scheduler.cuh), the stage ring (pipeline.cuh), the token operand's
 * loads (token_rows.cuh), the wgmma step (mma.cuh), the epilogue (epilogue.cuh), the CTA shape
 * (traits.cuh) and the launch parameters (params.cuh).
 *
 * One CTA computes a BLOCK_M x N tile of D^T: BLOCK_M weight rows (output features, the wgmma M
 * operand A) of one expert times N = ctaTile permuted token rows (the wgmma N operand B), over
 * the full K (H for GEMM1, I for GEMM2) in stages of 128 bytes of K (64 bf16 or 128 e4m3
 * values, 128B swizzle).
 *
 *   grid.x = launch_ctas * m_tiles (1-D), cluster {C, 1, 1}; m_tiles = ceil(w_rows / BLOCK_M).
 *   Cluster id -> (token cluster tc, M tile) with M tiles fastest inside groups of group_m
 *   (tile_coords); token CTA j = tc*C + cluster rank.
 *   CTA j: expert = cta_to_batch[j], permuted rows [j*N, min((j+1)*N, cta_to_mn_limit[j])).
 *
 * Producer warpgroup: the weights as a 2-D TMA of BLOCK_M/C rows per cluster rank, multicast to
 * all C CTAs of the cluster (each CTA ends up with the full BLOCK_M-row stage); the token rows
 * gathered (GATHER: GEMM1 with N < 64, or while T*K < 256 E_l) or by TMA from contiguous rows
 * (GEMM2's gemm1_out; GEMM1 after the permute pass): token_rows.cuh.
 * Consumers: BLOCK_M/64 (or 2 for BLOCK_M 256) warpgroups issue wgmma (mma.cuh) and run the
 * epilogue (x the per-tensor scales, + bias, activation, bf16 or e4m3, transposed through
 * shared memory reusing the drained stage buffers, 16-byte stores of the rows < mn_limit only).
 * Partly filled tiles (an expert's last): while K <= kTrimMaxKBlocks k-blocks the main loop's
 * wgmma covers only the live rows rounded up to 32 (with_live_columns), the TMA token paths
 * load only those rows, and the epilogue skips the 32-column steps past them.
 * Exit: decided per cluster (cluster index * C >= *num_ctas); a CTA without valid rows inside a
 * live cluster stays in the pipeline and only skips its stores.
 * PDL: the gathering GEMM1 waits (griddepcontrol.wait) before it reads the plan; GEMM2 and the
 * permuted-copy GEMM1 read the plan and issue their first STAGES weight loads before the wait
 * (their predecessor let them launch only after it had waited for routing), and only their
 * token operand waits.
 */
#ifndef MOE_GEMM_SM90_GROUPED_CUH_
#define MOE_GEMM_SM90_GROUPED_CUH_

#include <cuda.h>
#include <stdint.h>

#include <type_traits>

#include "kernels/gemm/common/dtypes.cuh"
#include "kernels/gemm/common/epilogue.cuh"
#include "kernels/gemm/common/formats.cuh"
#include "kernels/gemm/common/mma.cuh"
#include "kernels/gemm/common/params.cuh"
#include "kernels/gemm/common/pipeline.cuh"
#include "kernels/gemm/common/scheduler.cuh"
#include "kernels/gemm/common/token_rows.cuh"
#include "kernels/gemm/common/traits.cuh"
#include "kernels/gemm/sm90_fp8_block_grouped.cuh"
#include "kernels/gemm/sm90_w4a16_mxfp4_grouped.cuh"
#include "kernels/ptx/cluster.cuh"
#include "kernels/ptx/mbarrier.cuh"
#include "kernels/ptx/pdl.cuh"
#include "kernels/ptx/tma.cuh"

namespace moe {
namespace sm90 {

template <class Fmt, int BLOCK_M, int N, int C, int STAGES, bool GEMM1, bool GATHER>
__global__ void __launch_bounds__(FormatTraits<Fmt, BLOCK_M, N, C, STAGES>::kThreads,
                                  FormatTraits<Fmt, BLOCK_M, N, C, STAGES>::kMinBlocks)
    sm90_grouped_gemm(const __grid_constant__ CUtensorMap tmap_w,
                      const __grid_constant__ CUtensorMap tmap_x,
                      const __grid_constant__ CUtensorMap tmap_xs, const GroupedGemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using T = FormatTraits<Fmt, BLOCK_M, N, C, STAGES>;
  using Op = typename Fmt::Op;
  constexpr int kBK = kBlockK<Op>;
  static_assert(GEMM1 || !GATHER, "only GEMM1 gathers token rows");
  /* Block-scaled FP8 (sm90_fp8_block_grouped.cuh): token rows from the permuted copy (its
   * transposed scales), 256-row tiles (a gated GEMM1 tile = one 128-feature output group), two
   * accumulator sets within one CTA's register budget, and the fp32 GEMM1 staging tile in the
   * drained stages. */
  static_assert(!Fmt::kBlockScaled || (!GATHER && BLOCK_M == 256 && N <= 64 && T::kMinBlocks == 1),
                "block-scaled FP8 tiles: permuted rows, BLOCK_M 256, N <= 64, one CTA per SM");
  static_assert(!Fmt::kBlockScaled || !GEMM1 || N * (BLOCK_M + 4) * 4 <= STAGES * T::kStageBytes,
                "the fp32 GEMM1 staging tile must fit the stages");
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t *smem = smem_raw + ((1024u - (ptx::smem_u32(smem_raw) & 1023u)) & 1023u);
  uint8_t *smem_a = smem;
  uint8_t *smem_b = smem + STAGES * T::kABytes;
  uint64_t *full = reinterpret_cast<uint64_t *>(smem + STAGES * T::kStageBytes);
  uint64_t *empty = full + STAGES;
  /* MXFP4: the tile's weight scales and their barrier, past the ring (kFormatSmemBytes) */
  uint8_t *const mx_region = smem + ((T::kRingBytes + 127) & ~127);
  uint64_t *const mx_bar = reinterpret_cast<uint64_t *>(mx_region);
  uint8_t *const mx_scales = mx_region + 128;
  static_assert(!Fmt::kMxWeights || (BLOCK_M == 64 || BLOCK_M == 128),
                "MXFP4 tiles: one m64 atom per consumer warpgroup");

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int wg = threadIdx.x / 128;
  const bool producer_warp = (warp == T::kConsumerWGs * 4);

  init_stage_ring<STAGES>(full, empty, GATHER ? 1 + 128 : 1, C * T::kConsumerWGs * 4);
  if constexpr (Fmt::kMxWeights) {
    if (threadIdx.x == 0) {
      ptx::mbar_init(mx_bar, 1);
      ptx::mbar_init_fence();
    }
  }
  if (producer_warp && lane == 0) prefetch_tensor_maps(&tmap_w, &tmap_x, &tmap_xs);
  __syncthreads();

  /* The gathering GEMM1 follows routing directly: it may read the plan only after the wait.
   * GEMM2 and the permuted-copy GEMM1 follow a kernel that itself waited for routing before it
   * let them launch, so the plan (and the weights, which no kernel of the forward writes) are
   * complete when they start: they issue their first STAGES weight loads before the wait, and
   * only the token operand (their predecessor's output) waits. In decode this overlaps GEMM2's
   * weight stream with GEMM1's tail on the SMs GEMM1 leaves free. */
  /* A grouped BF16 run's permuted-input GEMM1 that reads the caller's rows directly (p.x_rows)
   * follows the grouped plan kernel itself, which gives no such guarantee: it waits first. */
  constexpr bool kMayReadInPlace = GEMM1 && !GATHER && !Fmt::kBlockScaled && !Fmt::kMxWeights;
  const bool early_weights = !GATHER && (!kMayReadInPlace || p.x_rows == nullptr);
  if (!early_weights) ptx::grid_dependency_wait();
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
  /* Token rows the main loop reads (main_loop_columns); the TMA token paths load only these. */
  const int mma_cols = main_loop_columns<N>(live_rows, k_blocks);
  const uint32_t stage_tx = T::kABytes + static_cast<uint32_t>(mma_cols) * kStageRowBytes;

  /* Weights: a TMA of BLOCK_M/C rows per cluster rank, multicast to all C CTAs: 2-D over every
   * expert's rows, or for MXFP4 3-D {K/2 bytes, rows, expert} (the experts' sections hold their
   * scales between them). */
  const uint32_t rank = (C > 1) ? ptx::cluster_ctarank() : 0u;
  constexpr int kSlice = BLOCK_M / C;
  constexpr int kARow = kWeightRowBytes<Fmt>;
  const int w_row = expert * p.w_rows + m0 + static_cast<int>(rank) * kSlice;
  const int w_row_in_expert = m0 + static_cast<int>(rank) * kSlice;
  uint8_t *const a_dst = smem_a + rank * (kSlice * kARow);
  auto load_weights = [&](int kb, int s) {
    constexpr uint16_t kMask = static_cast<uint16_t>((1u << C) - 1u);
    if constexpr (Fmt::kMxWeights && C > 1) {
      ptx::tma_load_3d_multicast(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * kARow,
                                 w_row_in_expert, expert, kMask);
    } else if constexpr (Fmt::kMxWeights) {
      ptx::tma_load_3d(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * kARow, w_row_in_expert,
                       expert);
    } else if constexpr (C > 1) {
      ptx::tma_load_2d_multicast(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * kBK, w_row, kMask);
    } else {
      ptx::tma_load_2d(a_dst + s * T::kABytes, &tmap_w, &full[s], kb * kBK, w_row);
    }
  };
  /* MXFP4 scales: no kernel of the forward writes weights, so like the early weight loads they
   * may go out before the grid-dependency wait. */
  if constexpr (Fmt::kMxWeights) {
    if (threadIdx.x == T::kConsumerThreads)
      load_mx_scales<BLOCK_M>(p, expert, m0, mx_scales, mx_bar);
  }
  const int early_stages = early_weights ? min(STAGES, k_blocks) : 0;
  if (early_weights) {
    if (threadIdx.x == T::kConsumerThreads) {
      /* First lap: every empty[s] is free, so the producer's empty waits would pass at once. */
      for (int kb = 0; kb < early_stages; ++kb) {
        ptx::mbar_arrive_expect_tx(&full[kb], stage_tx);
        load_weights(kb, kb);
      }
    }
    ptx::grid_dependency_wait();
  }
  /* GEMM1 resets GEMM2's tile queue (sm90_grouped_gemm2_persistent.cuh). After the wait: every
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
    if constexpr (GATHER) {
      produce_gathered_rows<N, STAGES, T::kGatherLag, T::kABytes, T::kBBytes>(
          p, smem_b, full, empty, reinterpret_cast<int32_t *>(empty + STAGES), row0, mn_limit,
          k_blocks, ptid, load_weights);
    } else if (ptid == 0) {
      /* The tile's rows are consecutive in the permuted copy, and in a grouped run's own
       * hidden states too (each expert's rows in order): the input row of the first row. */
      const int x_row0 =
          kMayReadInPlace && p.x_rows != nullptr && live_rows > 0 ? __ldg(p.x_rows + row0) : row0;
      produce_contiguous_rows<N, kBK, STAGES, T::kBBytes>(smem_b, full, empty, &tmap_x, &tmap_xs,
                                                          x_row0, mma_cols, k_blocks, early_stages,
                                                          stage_tx, load_weights);
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

    const uint32_t a_base = ptx::smem_u32(smem_a) + wg * (T::kWGRows * kStageRowBytes);
    const uint32_t b_base = ptx::smem_u32(smem_b);
    /* The main loop over K, its wgmma N = the tile's live columns (with_live_columns): the
     * accumulator columns past them stay zero and are never stored. */
    auto main_loop = [&](auto live) {
      constexpr int NV = decltype(live)::value;
      int s = 0, prev_s = 0;
      uint32_t ph = 0;
      for (int kb = 0; kb < k_blocks; ++kb) {
        ptx::mbar_wait(&full[s], ph);
        mma_k_block<Wgmma<Op, Op, NV>>(d, a_base + s * T::kABytes, b_base + s * T::kBBytes,
                                       kb == 0);
        if (kb > 0) release_stage<C>(empty, prev_s, lane); /* its wgmmas are complete */
        prev_s = s;
        advance_stage<STAGES>(s, ph);
      }
      mma_drain(d);
      release_stage<C>(empty, prev_s, lane);
    };
    if constexpr (Fmt::kMxWeights) {
      ptx::mbar_wait(mx_bar, 0);
      const int wg_row0 = wg * T::kWGRows;
      auto mx_loop = [&](auto live) {
        constexpr int NV = decltype(live)::value;
        mx_main_loop<NV, kAtoms, N, STAGES, C, T::kABytes, T::kBBytes>(
            d, full, empty, smem_a + wg_row0 * kARow, b_base, mx_scales + wg_row0 * (2 * k_blocks),
            min(p.w_rows - m0, BLOCK_M) - wg_row0, k_blocks, warp % 4, lane);
      };
      with_live_columns<N>(mma_cols, mx_loop);
    } else if constexpr (Fmt::kBlockScaled) {
      const BlockWeightScales ws =
          block_weight_scales(p, expert, m0 + wg * T::kWGRows, GEMM1 && p.gated);
      auto block_loop = [&](auto live) {
        constexpr int NV = decltype(live)::value;
        block_scaled_main_loop<NV, kAtoms, N, STAGES, C, T::kABytes, T::kBBytes>(
            d, p, ws, full, empty, a_base, b_base, row0, lane);
      };
      with_live_columns<N>(mma_cols, block_loop);
    } else {
      with_live_columns<N>(mma_cols, main_loop);
    }

    /* ---------------- epilogue ---------------- */
    /* All consumer warpgroups finished reading the stages; reuse them for staging. */
    ptx::named_barrier_sync(1, T::kConsumerThreads);
    const float scale = tensor_scale<Fmt>(p, expert);
    int col0, out_w;
    tile_columns<BLOCK_M>(GEMM1 && p.gated, m0, &col0, &out_w);
    /* GEMM1 stores the format's GEMM1 element (bf16, or e4m3 for FP8), GEMM2 bf16; a staged
     * row is 16-byte aligned either way (pitch BLOCK_M + 16 bytes worth of elements / 2). */
    auto epilogue = [&](auto out) {
      using Elem = typename decltype(out)::Elem;
      constexpr int kPitch = sizeof(Elem) == 2 ? T::kStagePitch : BLOCK_M + 16;
      Elem *stage = reinterpret_cast<Elem *>(smem);
      epilogue_to_stage<BLOCK_M, kAtoms, N, kPitch, GEMM1, Fmt::kTensorScaled>(
          d, stage, p, expert, m0, wg * T::kWGRows, warp % 4, lane, live_rows, scale, out);
      ptx::named_barrier_sync(1, T::kConsumerThreads);
      store_stage<N, kPitch, BLOCK_M>(stage, p, col0, out_w, row0, live_rows, threadIdx.x,
                                      T::kConsumerThreads);
    };
    if constexpr (GEMM1 && Fmt::kBlockScaled) {
      block_gemm1_epilogue<BLOCK_M, kAtoms, N>(
          d, smem, p, expert, m0, wg * T::kWGRows, warp % 4, lane, live_rows, row0,
          T::kConsumerThreads, [] { ptx::named_barrier_sync(1, T::kConsumerThreads); });
    } else if constexpr (GEMM1) {
      epilogue(Fmt::gemm1_store(p));
    } else {
      epilogue(StoreBf16{});
    }
  }

  /* No CTA leaves while a peer may still multicast into it or arrive on its barriers. */
  if constexpr (C > 1) ptx::cluster_sync();
#elif defined(__CUDA_ARCH__)
  __trap(); /* built for an architecture without wgmma / TMA multicast: never compute silently */
#endif
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_SM90_GROUPED_CUH_
