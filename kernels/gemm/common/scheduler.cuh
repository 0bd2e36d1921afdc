/*
 * scheduler.cuh - which tile a CTA computes and how much of it: the rasterisation of launch
 * indices into (token cluster, weight tile), and the trimmed main loop of partly filled tiles.
 * Shared by the one-tile and the persistent kernels of every dtype.
 */
#ifndef MOE_GEMM_COMMON_SCHEDULER_CUH_
#define MOE_GEMM_COMMON_SCHEDULER_CUH_

#include <type_traits>

namespace moe {
namespace sm90 {

/* Token columns per step of a trimmed main loop and of the epilogue's live-column check. Steps
 * of 32, not 8: one main-loop copy per step, and below 32 columns an m64nNk16 with A in shared
 * memory reads more shared-memory bytes per FLOP than the tensor core consumes. */
constexpr int kLiveStep = 32;

/*
 * Longest K (in k-blocks) whose partly filled tiles run a trimmed main loop. A trimmed tile
 * ends early, so the CTAs launched after it start out of step with the earlier ones, and the
 * CTAs that read one weight tile (an expert's token tiles, launched group_m apart) share it in
 * L2 only while they run within L2's residency time of each other; the longer a tile, the
 * further they drift. H100, DeepSeek-V3 T = 8192 with every tile trimmed: GEMM1 (112 k-blocks)
 * read 15.8 GB from DRAM instead of 9.5 and the forward took 8% longer, while the presets whose
 * GEMMs have <= 64 k-blocks ran 3-6% faster.
 */
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
 * Calls f(std::integral_constant<int, NV>{}) with NV the smallest multiple of kLiveStep not
 * below `live` (main_loop_columns: the tile's token rows before mn_limit, rounded), or N. Each
 * expert's last tile is partly filled (with 256 rows an expert and a 192-token tile, the second
 * tile holds 64): its main loop then issues wgmma of width NV instead of N, so the padding costs
 * no tensor-core time (while K is short: kTrimMaxKBlocks).
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

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_SCHEDULER_CUH_
