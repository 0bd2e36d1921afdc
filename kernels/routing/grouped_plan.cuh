/*
 * grouped_plan.cuh - the device plan builder of moe_runner_run_grouped (grouped_plan.cu):
 * the GEMM plan (CTA tables, row maps, CTA count) from device counts per local expert.
 */
#ifndef MOE_ROUTING_GROUPED_PLAN_CUH_
#define MOE_ROUTING_GROUPED_PLAN_CUH_

#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/kernels.h"

namespace moe {
namespace routing {

/*
 * Enqueues the plan of a grouped run for @p tile and cluster size @p cluster into @p plan
 * (permuted_to_token, cta_to_batch, cta_to_mn_limit, num_ctas, permuted_size,
 * gemm_tile_counter) from g->counts, for N = num_rows input rows and E_l = local_num (<=
 * MOE_K_GROUPED_MAX_LOCAL_EXPERTS). With @p row_to_permuted (int32 [num_rows], or NULL) also
 * the inverse row map: each input row's permuted row, -1 for rows no count covers (the
 * expanded_to_permuted of the plan with K = 1, which the permute kernels take). The grid
 * depends on plan->max_rows only. Waits on the predecessor (PDL) before it reads the counts.
 */
cudaError_t launch_grouped_plan(const moe_k_grouped &g, const moe_k_plan &plan, int64_t num_rows,
                                int32_t local_num, int32_t tile, int32_t cluster,
                                int32_t *row_to_permuted, bool pdl, cudaStream_t stream);

}  // namespace routing
}  // namespace moe

#endif /* MOE_ROUTING_GROUPED_PLAN_CUH_ */
