/*
 * sm90_grouped_gemm2_persistent.cuh - GEMM2 of the single-accumulator formats (BF16, FP8
 * per-tensor: sm90_grouped.cuh) as a persistent kernel: each CTA walks several tiles,
 * and its producer loads the next tile's first k-blocks while the consumers run the current
 * tile's epilogue. Built for the configs with C = 1 and one CTA per SM, run while K = I is short
 * (configs.cu, launch.cu: kPersistentGemm2MaxKBlocks).
 *
 * Why only GEMM2: its tiles are short (K = I: 12-32 k-blocks on the presets), so a fresh CTA's
 * pipeline fill (~3 us: plan loads, then the first TMA from DRAM) is 10-20% of a tile. Nsight
 * Compute, H100, qwen3-235b / qwen3-30b T = 8192, config 19: a persistent build of both GEMMs
 * ran GEMM2 6-7% faster than the one-tile kernel, but GEMM1 (K = 2048-7168) 1-6% slower with
 * 20-30% more L2 traffic; this kernel's form for GEMM1, with the same tile queue, was 2.5-10.8%
 * slower per forward: on a long tile the two stages held through the epilogue cost more than
 * the hidden fill gains. GEMM1 stays one tile per CTA (sm90_grouped.cuh, whose header
 * describes the operands, the rasterisation and the trimmed tiles; this kernel reads the same
 * ones the same way).
 *
 *   grid.x = min(launch tiles, resident CTAs) over the num_ctas x m_tiles valid tiles (token
 *   CTAs >= *num_ctas are not in the walk), rasterised as in the one-tile kernel (M tiles
 *   fastest inside groups of group_m). CTA b starts with tile b, then takes the next tile from
 *   a queue (p.tile_counter, zeroed by GEMM1), so tiles start in order as CTAs free up, as the
 *   hardware launches one-tile CTAs. A static walk (b, b + gridDim.x, ...) lost 5-21% on the
 *   H100: with partly filled tiles shorter than full ones, the CTAs drift apart, and the token
 *   tiles that read one weight tile no longer run close enough to share it in L2.
 *   Shared memory: STAGES ring stages, each [BLOCK_M x 64 weights | N x 64 tokens] (one
 *   contiguous block, unlike the one-tile kernel's two arrays), so that a stage holds a
 *   warpgroup's staged output rows.
 * Epilogue: the consumers hold back the tile's last kConsumerWGs stages (their wgmma reads are
 * complete); each warpgroup stages its rows, token-major, in one of them and stores them, then
 * releases them. Meanwhile the producer fills the other STAGES - kConsumerWGs stages with the
 * next tile's k-blocks. The producer passes each tile's plan entries to the consumers in shared
 * memory, with the tile's first stage.
 */
#ifndef MOE_GEMM_SM90_GROUPED_GEMM2_PERSISTENT_CUH_
#define MOE_GEMM_SM90_GROUPED_GEMM2_PERSISTENT_CUH_

#include "kernels/gemm/sm90_grouped.cuh"

namespace moe {
namespace sm90 {

template <int BLOCK_M, int N, int STAGES>
struct PersistentTraits : GroupedGemmTraits<BLOCK_M, N, 1, STAGES> {
  using B = GroupedGemmTraits<BLOCK_M, N, 1, STAGES>;
  /* A warpgroup's staged rows: N tokens x kWGRows features (+8 pad: conflict-free stores). */
  static constexpr int kWGPitch = B::kWGRows + 8;
  static_assert(N * kWGPitch * 2 <= B::kStageBytes, "a warpgroup's staged rows must fit a stage");
  static_assert(STAGES > B::kConsumerWGs, "the producer needs a stage the epilogue does not hold");
  /* stages, full/empty barriers, one 16-byte tile slot a stage, alignment slack */
  static constexpr int kSmemBytes = STAGES * B::kStageBytes + 2 * STAGES * 8 + STAGES * 16 + 1024;
  static_assert(kSmemBytes <= B::kSmemBytes + STAGES * 16, "no more than the one-tile kernel");
};

template <class Fmt, int BLOCK_M, int N, int STAGES>
__global__ void __launch_bounds__(GroupedGemmTraits<BLOCK_M, N, 1, STAGES>::kThreads,
                                  GroupedGemmTraits<BLOCK_M, N, 1, STAGES>::kMinBlocks)
    sm90_grouped_gemm2_persistent(const __grid_constant__ CUtensorMap tmap_w,
                                  const __grid_constant__ CUtensorMap tmap_x,
                                  const __grid_constant__ CUtensorMap tmap_xs,
                                  const GroupedGemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using T = PersistentTraits<BLOCK_M, N, STAGES>;
  using Op = typename Fmt::Op;
  static_assert(!Fmt::kBlockScaled, "block-scaled FP8 has no persistent GEMM2 (catalogue_rows.cuh)");
  constexpr int kBK = kBlockK<Op>;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t *smem = smem_raw + ((1024u - (ptx::smem_u32(smem_raw) & 1023u)) & 1023u);
  uint64_t *full = reinterpret_cast<uint64_t *>(smem + STAGES * T::kStageBytes);
  uint64_t *empty = full + STAGES;
  /* The tile whose first k-block is in stage s, written by the producer before it arrives on
   * full[s]; row0 < 0 ends the walk. */
  struct Tile {
    int row0, m0, expert, live_rows;
  };
  static_assert(sizeof(Tile) == 16, "one 16-byte slot a stage");
  Tile *slot = reinterpret_cast<Tile *>(empty + STAGES);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int wg = threadIdx.x / 128;
  const bool producer_warp = (warp == T::kConsumerWGs * 4);

  init_stage_ring<STAGES>(full, empty, 1, T::kConsumerWGs * 4);
  if (producer_warp && lane == 0) prefetch_tensor_maps(&tmap_w, &tmap_x, &tmap_xs);
  __syncthreads();

  /* GEMM2 follows GEMM1, which let it launch only after GEMM1 had waited for routing: the plan
   * and the weights are complete here, only gemm1_out (the token operand) waits. */
  const int num_ctas = *p.num_ctas;
  const int num_tiles = num_ctas * p.m_tiles;
  const int first = static_cast<int>(blockIdx.x);
  const int stride = static_cast<int>(gridDim.x);
  const int k_blocks = p.k_blocks;
  /* Tile t -> its token CTA, weight rows and live token rows (as the one-tile kernel's
   * rasterisation, over the valid token CTAs only). */
  auto tile_at = [&](int t) {
    int cta, mt;
    tile_coords(t, p.group_m, p.m_tiles, num_ctas, &cta, &mt);
    Tile x;
    x.row0 = cta * N;
    x.m0 = mt * BLOCK_M;
    x.expert = p.cta_to_batch[cta];
    x.live_rows = max(0, min(N, p.cta_to_mn_limit[cta] - x.row0));
    return x;
  };
  auto stage_tx = [&](const Tile &x) {
    return static_cast<uint32_t>(T::kABytes +
                                 main_loop_columns<N>(x.live_rows, k_blocks) * kStageRowBytes);
  };
  auto load_weights = [&](const Tile &x, int kb, int s) {
    ptx::tma_load_2d(smem + s * T::kStageBytes, &tmap_w, &full[s], kb * kBK,
                     x.expert * p.w_rows + x.m0);
  };

  /* The first tile's first STAGES weight loads go out before the wait (as the one-tile GEMM2). */
  const int early_stages = min(STAGES, k_blocks);
  if (threadIdx.x == T::kConsumerThreads && first < num_tiles) {
    const Tile x = tile_at(first);
    slot[0] = x;
    for (int kb = 0; kb < early_stages; ++kb) {
      ptx::mbar_arrive_expect_tx(&full[kb], stage_tx(x));
      load_weights(x, kb, kb);
    }
  }
  ptx::grid_dependency_wait();
  ptx::launch_dependents();
  if (first >= num_tiles) return;

  if (wg == T::kConsumerWGs) {
    /* ---------------- producer (one thread) ---------------- */
    if constexpr (T::kConsumerWGs == 2) ptx::setmaxnreg_dec<T::kProducerRegs>();
    if (threadIdx.x != T::kConsumerThreads) return;
    int s = 0;
    uint32_t ph = 0;
    for (int t = first;;) {
      if (t >= num_tiles) { /* no tile left: tell the consumers in the next slot */
        ptx::mbar_wait(&empty[s], ph ^ 1u);
        slot[s].row0 = -1;
        ptx::mbar_arrive_expect_tx(&full[s], 0); /* as a tile's first stage (racecheck: below) */
        break;
      }
      const Tile x = tile_at(t);
      /* the next tile's index, in flight while this tile's loads are issued */
      const int t_next = atomicAdd(p.tile_counter, 1) + stride;
      const int cols = main_loop_columns<N>(x.live_rows, k_blocks);
      const int pre = t == first ? early_stages : 0;
      for (int kb = 0; kb < k_blocks; ++kb) {
        if (kb >= pre) {
          ptx::mbar_wait(&empty[s], ph ^ 1u);
          if (kb == 0) slot[s] = x; /* published by the arrive below */
          ptx::mbar_arrive_expect_tx(&full[s], stage_tx(x));
          load_weights(x, kb, s);
        }
        load_token_rows<N, kBK>(smem + s * T::kStageBytes + T::kABytes, &tmap_x, &tmap_xs, &full[s],
                                kb, x.row0, cols);
        advance_stage<STAGES>(s, ph);
      }
      t = t_next;
    }
  } else {
    /* ---------------- consumers ---------------- */
    if constexpr (T::kConsumerWGs == 2) ptx::setmaxnreg_inc<T::kConsumerRegs>();
    constexpr int kAtoms = T::kAtoms;
    constexpr bool kTwo = T::kConsumerWGs == 2;
    float d[kAtoms][N / 2];
    const uint32_t smem_base = ptx::smem_u32(smem);
    const uint32_t a_off = wg * (T::kWGRows * kStageRowBytes);
    auto release = [&](int st) {
      if (lane == 0) ptx::mbar_arrive(&empty[st]);
    };
    int s = 0;
    uint32_t ph = 0;
    int h_last = 0; /* stage of the tile's last k-block */
    /* The main loop (its wgmma N = the tile's live columns, as in the one-tile kernel); the
     * last kConsumerWGs stages stay held for the epilogue. The first wgmma of a tile overwrites
     * the accumulators (scale-d 0); columns past the live ones keep stale values and are never
     * stored. */
    auto main_loop = [&](auto live) {
      constexpr int NV = decltype(live)::value;
      int prev_s = 0;
      for (int kb = 0; kb < k_blocks; ++kb) {
        ptx::mbar_wait(&full[s], ph);
        const uint32_t st_base = smem_base + s * T::kStageBytes;
        mma_k_block<Wgmma<Op, Op, NV>>(d, st_base + a_off, st_base + T::kABytes, kb == 0);
        /* k-block kb - 1's wgmmas are complete: free its stage, unless it is held */
        if (kb > 0 && !(kTwo && kb == k_blocks - 1)) release(prev_s);
        prev_s = s;
        advance_stage<STAGES>(s, ph);
      }
      mma_drain(d);
      h_last = prev_s;
    };
    /* this warpgroup alone (immediate ids: a register id makes ptxas reserve all 16) */
    auto wg_barrier = [&]() {
      if (wg == 0) {
        ptx::named_barrier_sync(3, 128);
      } else {
        ptx::named_barrier_sync(4, 128);
      }
    };
    for (;;) {
      /* The tile's plan entries, from the slot of its first stage (the stage is held until
       * k-block 1 completes, so the slot cannot be rewritten before this read). */
      ptx::mbar_wait(&full[s], ph);
      /* Lane 0 reads the slot for its warp: a stage's release is lane 0's arrive, which orders
       * only lane 0's own reads before the producer rewrites the slot (with every lane reading,
       * the end-of-walk slot write would race with the other lanes' reads). */
      Tile x = {};
      if (lane == 0) x = slot[s];
      x.row0 = __shfl_sync(0xffffffffu, x.row0, 0);
      if (x.row0 < 0) break;
      x.m0 = __shfl_sync(0xffffffffu, x.m0, 0);
      x.expert = __shfl_sync(0xffffffffu, x.expert, 0);
      x.live_rows = __shfl_sync(0xffffffffu, x.live_rows, 0);
      with_live_columns<N>(main_loop_columns<N>(x.live_rows, k_blocks), main_loop);

      /* ---------------- epilogue ---------------- */
      /* Warpgroup 0 stages in the stage before the last (two warpgroups; with one k-block
       * there is only the last: warpgroup 1 then waits for warpgroup 0's stores). */
      const int h_prev = (h_last + STAGES - 1) % STAGES;
      const bool one_held = kTwo && k_blocks < 2;
      const int my_stage = (kTwo && !one_held && wg == 0) ? h_prev : h_last;
      ptx::named_barrier_sync(1, T::kConsumerThreads); /* all wgmma reads of the held stages done */
      if (one_held && wg == 1) ptx::named_barrier_sync(5, T::kConsumerThreads);
      uint16_t *stage = reinterpret_cast<uint16_t *>(smem + my_stage * T::kStageBytes);
      const int m0 = x.m0 + wg * T::kWGRows;
      epilogue_to_stage<T::kWGRows, kAtoms, N, T::kWGPitch, false, Fmt::kTensorScaled>(
          d, stage, p, x.expert, m0, 0, warp % 4, lane, x.live_rows,
          tensor_scale<Fmt>(p, x.expert));
      wg_barrier();
      store_stage<N, T::kWGPitch, T::kWGRows>(stage, p, m0, T::kWGRows, x.row0, x.live_rows,
                                              threadIdx.x % 128, 128);
      /* The staged rows are read; the producer's TMA (async proxy) will overwrite what this
       * warpgroup wrote and read (generic proxy): fence, then release the held stages. */
      ptx::fence_proxy_async_smem();
      wg_barrier();
      if (one_held && wg == 0) ptx::named_barrier_arrive(5, T::kConsumerThreads);
      release(h_last);
      if (kTwo && !one_held) release(h_prev);
    }
  }
#elif defined(__CUDA_ARCH__)
  __trap(); /* built for an architecture without wgmma / TMA: never compute silently */
#endif
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_SM90_GROUPED_GEMM2_PERSISTENT_CUH_
