/*
 * finalize.cuh - internal launcher of the finalize kernel (used by gemm/launch.cu).
 */
#ifndef MOE_FINALIZE_CUH_
#define MOE_FINALIZE_CUH_

#include <cuda_runtime.h>
#include <stdint.h>

namespace moe {

/*
 * out[t, :] = bf16( sum over k = 0..K-1 with p = expanded_to_permuted[t*K+k] >= 0 of
 *                   float(expert_weights[t*K+k]) * float(gemm2_out[p, :]) ), fp32, slot order.
 * H % 8 == 0 and 16-byte aligned rows (16-byte vector loads / stores).
 */
cudaError_t launch_finalize(uint16_t *out, const uint16_t *gemm2_out,
                            const uint16_t *expert_weights, const int32_t *expanded_to_permuted,
                            int64_t num_tokens, int32_t top_k, int64_t hidden, bool pdl,
                            cudaStream_t stream);

}  // namespace moe

#endif  // MOE_FINALIZE_CUH_
