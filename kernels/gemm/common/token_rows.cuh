/*
 * token_rows.cuh - the producer side of the token operand (the wgmma B operand in swap-AB: N
 * token rows of 128 bytes of K per stage), for every dtype of the family:
 *   - contiguous rows (GEMM2's rows of gemm1_out; GEMM1 after the permute pass): one 2-D TMA
 *     box {kBlockK, N} per stage, or mma_cols / kLiveStep boxes of {kBlockK, kLiveStep} from a
 *     second tensor map in a trimmed tile (scheduler.cuh); rows past mn_limit only feed
 *     accumulator columns that are never stored;
 *   - gathered rows (GEMM1 with small CTA tiles or few tokens per expert): rows
 *     permuted_to_token[r] of hidden, 16-byte cp.async from all 128 producer threads, written in
 *     the 128B-swizzled layout (rows at or past mn_limit, and padding rows -1, are zero-filled
 *     without a read).
 *
 * The gather's hand-off to wgmma: each thread keeps kGatherLag stages of copies in flight, then
 * cp.async.wait_group + fence.proxy.async + mbarrier.arrive (full[s] counts 1 + 128 arrivals),
 * the documented-safe order for generic-proxy writes read by the async proxy. An asynchronous
 * arrival (cp.async.mbarrier.arrive.noinc with a consumer-side fence) was within +-2% where the
 * gather runs on an H100. Either way cp.async moves about 9 B/clk/SM of token rows against TMA's
 * 15, so with many tokens per expert the permute pass plus TMA wins (launch.cu). A per-row 2-D
 * TMA box {kBlockK, 1} was issue-bound (~64 cycles a box per SM, ~60 TFLOP/s).
 */
#ifndef MOE_GEMM_COMMON_TOKEN_ROWS_CUH_
#define MOE_GEMM_COMMON_TOKEN_ROWS_CUH_

#include <cuda.h>
#include <stdint.h>

#include "kernels/gemm/common/params.cuh"
#include "kernels/gemm/common/pipeline.cuh"
#include "kernels/gemm/common/scheduler.cuh"
#include "kernels/ptx/cluster.cuh"
#include "kernels/ptx/mbarrier.cuh"
#include "kernels/ptx/tma.cuh"

namespace moe {
namespace sm90 {

/* The token operand of one stage from rows row0.. of a contiguous [rows, K] tensor: one
 * {BLOCK_K, N} box (tmap_x), or cols / kLiveStep boxes of {BLOCK_K, kLiveStep} (tmap_xs) in a
 * trimmed tile. */
template <int N, int BLOCK_K>
__device__ __forceinline__ void load_token_rows(uint8_t *dst, const CUtensorMap *tmap_x,
                                                const CUtensorMap *tmap_xs, uint64_t *bar, int kb,
                                                int row0, int cols) {
  if (cols == N) {
    ptx::tma_load_2d(dst, tmap_x, bar, kb * BLOCK_K, row0);
  } else {
    for (int r = 0; r < cols; r += kLiveStep) {
      ptx::tma_load_2d(dst + r * kStageRowBytes, tmap_xs, bar, kb * BLOCK_K, row0 + r);
    }
  }
}

/*
 * Producer thread 0's loop for contiguous token rows: per k-block, wait for the stage, expect
 * stage_tx bytes, load the weights (load_weights(kb, s)) and the token rows. The first
 * early_stages stages' weights were issued before the grid-dependency wait (their expect_tx
 * too), so only their token rows go out here.
 */
template <int N, int BLOCK_K, int STAGES, int B_STAGE_BYTES, class LoadWeights>
__device__ __forceinline__ void produce_contiguous_rows(uint8_t *smem_b, uint64_t *full,
                                                        uint64_t *empty, const CUtensorMap *tmap_x,
                                                        const CUtensorMap *tmap_xs, int row0,
                                                        int cols, int k_blocks, int early_stages,
                                                        uint32_t stage_tx,
                                                        LoadWeights &load_weights) {
  int s = 0;
  uint32_t ph = 0;
  for (int kb = 0; kb < k_blocks; ++kb) {
    if (kb >= early_stages) {
      ptx::mbar_wait(&empty[s], ph ^ 1u);
      ptx::mbar_arrive_expect_tx(&full[s], stage_tx);
      load_weights(kb, s);
    }
    load_token_rows<N, BLOCK_K>(smem_b + s * B_STAGE_BYTES, tmap_x, tmap_xs, &full[s], kb, row0,
                                cols);
    advance_stage<STAGES>(s, ph);
  }
}

/*
 * All 128 producer threads (ptid 0..127) gather the CTA's token rows; thread 0 also issues
 * the weight loads (expecting a_bytes on full[s]). row_src: an N-entry shared table, filled
 * here with the source token of each row (-1: zero-fill).
 */
template <int N, int STAGES, int LAG, int A_BYTES, int B_STAGE_BYTES, class LoadWeights>
__device__ __forceinline__ void produce_gathered_rows(const GroupedGemmParams &p, uint8_t *smem_b,
                                                      uint64_t *full, uint64_t *empty,
                                                      int32_t *row_src, int row0, int mn_limit,
                                                      int k_blocks, int ptid,
                                                      LoadWeights &load_weights) {
  for (int r = ptid; r < N; r += 128) {
    const int grow = row0 + r;
    row_src[r] = grow < mn_limit ? __ldg(p.permuted_to_token + grow) : -1;
  }
  ptx::named_barrier_sync(2, 128);
  constexpr int kChunks = kStageRowBytes / 16; /* 16-byte chunks of a stage row */
  constexpr int kRowsPerPass = 128 / kChunks;
  constexpr int kPerThread = (N * kChunks + 127) / 128;
  const int chunk = ptid % kChunks;
  const int rsub = ptid / kChunks; /* rows rsub + kRowsPerPass i */
  const uint32_t swz = ((chunk ^ (rsub & 7)) << 4);
  const uint32_t b_base = ptx::smem_u32(smem_b);
  const uint8_t *src_base = p.gather_src + chunk * 16;
  const int64_t ld = p.gather_row_bytes;
  int s = 0;
  uint32_t ph = 0;
  for (int kb = 0; kb < k_blocks; ++kb) {
    ptx::mbar_wait(&empty[s], ph ^ 1u);
    if (ptid == 0) {
      ptx::mbar_arrive_expect_tx(&full[s], A_BYTES);
      load_weights(kb, s);
    }
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int r = rsub + kRowsPerPass * i;
      if (N % kRowsPerPass == 0 || r < N) {
        const int tok = row_src[r];
        const uint8_t *src = src_base + (tok >= 0 ? tok * ld + kb * kStageRowBytes : 0);
        ptx::cp_async_16(b_base + s * B_STAGE_BYTES + r * kStageRowBytes + swz, src,
                         tok >= 0 ? 16u : 0u);
      }
    }
    ptx::cp_async_commit();
    if (kb >= LAG) {
      ptx::cp_async_wait<LAG>();
      ptx::fence_proxy_async_smem();
      ptx::mbar_arrive(&full[(kb - LAG) % STAGES]);
    }
    advance_stage<STAGES>(s, ph);
  }
  ptx::cp_async_wait<0>();
  ptx::fence_proxy_async_smem();
  for (int kb = k_blocks > LAG ? k_blocks - LAG : 0; kb < k_blocks; ++kb) {
    ptx::mbar_arrive(&full[kb % STAGES]);
  }
}

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_TOKEN_ROWS_CUH_
