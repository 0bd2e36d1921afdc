/*
 * mma.cuh - the wgmma selector of the family and the k-block step every mainloop runs.
 *
 * Wgmma<A, B, NV>: the m64nNV instruction for the operand dtypes (dtypes.cuh); one k-step is 32
 * bytes of K in either dtype (k16 bf16, k32 e4m3), so a 128-byte stage row is 4 k-steps and the
 * descriptors advance by 32 bytes a step whatever the dtype.
 */
#ifndef MOE_GEMM_COMMON_MMA_CUH_
#define MOE_GEMM_COMMON_MMA_CUH_

#include <stdint.h>

#include "kernels/gemm/common/dtypes.cuh"
#include "kernels/ptx/wgmma.cuh"

namespace moe {
namespace sm90 {

template <class A, class B, int NV>
struct WgmmaSelect {
  static_assert(sizeof(A) < 0, "kernels/gemm/common/mma.cuh: no wgmma for these operand dtypes");
};
template <int NV>
struct WgmmaSelect<Bf16, Bf16, NV> {
  using type = ptx::WgmmaBf16<NV>;
};
template <int NV>
struct WgmmaSelect<E4m3, E4m3, NV> {
  using type = ptx::WgmmaE4m3<NV>;
};
template <class A, class B, int NV>
using Wgmma = typename WgmmaSelect<A, B, NV>::type;

/* k-steps of 32 bytes in one 128-byte stage row. */
constexpr int kKStepsPerStage = kStageRowBytes / 32;

/*
 * One k-block of a consumer warpgroup's main loop: kKStepsPerStage wgmma k-steps over its
 * kAtoms m64 atoms (A: the warpgroup's weight rows at a_stage, atom a at + a * 8 KB; B: the
 * stage's token rows at b_stage; both 128B-swizzled), committed as one group. first: this
 * group overwrites the accumulators (scale-d 0 on its first k-step). Returns once the group
 * before it has completed (wait<1>), so that group's stage may be released.
 */
template <class Mma, int kAtoms, int NACC>
__device__ __forceinline__ void mma_k_block(float (&d)[kAtoms][NACC], uint32_t a_stage,
                                            uint32_t b_stage, bool first) {
  constexpr int R = Mma::kRegs;
#pragma unroll
  for (int a = 0; a < kAtoms; ++a) ptx::wgmma_fence_operand(d[a]);
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < kKStepsPerStage; ++k) {
    const uint64_t db = ptx::wgmma_desc_sw128(b_stage + k * 32);
#pragma unroll
    for (int a = 0; a < kAtoms; ++a) {
      const uint64_t da = ptx::wgmma_desc_sw128(a_stage + a * (64 * kStageRowBytes) + k * 32);
      Mma::mma(da, db, reinterpret_cast<float(&)[R]>(d[a]), (!first || k > 0) ? 1 : 0);
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

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_MMA_CUH_
