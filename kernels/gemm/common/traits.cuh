/*
 * traits.cuh - shape, shared-memory and register arithmetic of a grouped GEMM CTA, shared by
 * every mainloop of the family (the stage layout is the same in bytes for every dtype:
 * dtypes.cuh).
 *
 * Roles (warp-specialised): BLOCK_M/64 consumer warpgroups with 64 weight rows each (BLOCK_M
 * 64, 128), or for BLOCK_M 256 two with 128 rows each (two m64 wgmma atoms sharing every B
 * descriptor: a 256 x 128 tile halves the L2 bytes per FLOP of the token operand against
 * 128 x 128; measured 8-16% faster in prefill on an H100), plus one producer warpgroup.
 */
#ifndef MOE_GEMM_COMMON_TRAITS_CUH_
#define MOE_GEMM_COMMON_TRAITS_CUH_

#include "kernels/gemm/common/dtypes.cuh"

namespace moe {
namespace sm90 {

/* A_ROW: bytes of a weight row per stage (kWeightRowBytes: 128, or 32 for packed 4-bit
 * weights); EXTRA: shared memory a format keeps past the ring (kFormatSmemBytes). */
template <int BLOCK_M, int N, int C, int STAGES, int A_ROW = kStageRowBytes, int EXTRA = 0>
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
  static constexpr int kABytes = BLOCK_M * A_ROW;
  static constexpr int kBBytes = N * kStageRowBytes;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kStagePitch = BLOCK_M + 8; /* epilogue staging row, 2-byte elements */
  static_assert(N * kStagePitch * 2 <= STAGES * kStageBytes, "epilogue staging must fit");
  /* stages, full/empty barriers, GEMM1 gather row table, alignment slack, the format's part */
  static constexpr int kRingBytes = STAGES * kStageBytes + 2 * STAGES * 8 + N * 4;
  static constexpr int kSmemBytes = kRingBytes + 1024 + EXTRA;
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

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_TRAITS_CUH_
