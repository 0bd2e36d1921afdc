/*
 * cpu_backend.h - the CPU reference backend (the oracle of every GPU test).
 *
 * Called by core/ after full validation; arguments are trusted. Results are deterministic and
 * independent of num_threads (work is split by rows; every sum has a fixed order).
 * Rounding points (docs/formats.md): GEMM accumulators are fp32; GEMM1 rounds to bf16 after
 * bias + activation; GEMM2 rounds to bf16 after bias; finalize sums K rows in slot order in
 * fp32 and rounds once.
 */
#ifndef MOE_CPU_BACKEND_H_
#define MOE_CPU_BACKEND_H_

#include "../../kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Routing: top-K ids and weights, then the plan (DESIGN §4) into plan's tables. */
void moe_cpu_routing(const moe_k_routing *args, const moe_k_plan *plan, int32_t num_threads);

/*
 * Canonical -> prepared weights (layout in docs/formats.md). which: 1 = W1, 2 = W2.
 * rows/cols per expert: W1 rows = f*I, cols = H; W2 rows = H, cols = I.
 */
void moe_cpu_weights_prepare(int32_t which, int32_t gated, int64_t local_experts, int64_t rows,
                             int64_t cols, const uint16_t *canonical, uint16_t *prepared);

/*
 * Canonical -> FP8 prepared weights (docs/formats.md, version 2; arguments as
 * moe_cuda_weights_prepare_fp8 in kernels.h): canonical_scales given: e4m3 canonical, relayout;
 * NULL: bf16 canonical, quantized.
 */
void moe_cpu_weights_prepare_fp8(int32_t which, int32_t gated, int32_t scaling_mode,
                                 int64_t local_experts, int64_t rows, int64_t cols,
                                 const void *canonical, const float *canonical_scales,
                                 uint8_t *prepared);

/*
 * Checkpoint MXFP4 -> prepared weights (docs/formats.md, "MXFP4"): packed e2m1 @p values
 * [E_l, rows, cols/2] and ue8m0 @p scales [E_l, rows, cols/32] (no 0xFF: core/ refuses it).
 * gated_w1: W1 of a gated activation (8-row up/gate blocks); gate_up_interleaved: its source
 * rows are gpt-oss's (2f = gate f, 2f+1 = up f).
 */
void moe_cpu_weights_prepare_mx(int32_t gated_w1, int32_t gate_up_interleaved,
                                int64_t local_experts, int64_t rows, int64_t cols,
                                const uint8_t *values, const uint8_t *scales, uint8_t *prepared);

/* GEMM1 (+activation), GEMM2, finalize (FP8 and MXFP4 runs: quant_gemm.c, then the same
 * finalize). */
void moe_cpu_run(const moe_k_run *args, const moe_k_plan *plan, int32_t num_threads);

/* moe_runner_run_grouped (grouped.c): the CTA tables and permuted_to_token of @p plan built
 * from host @p counts [E_l] (masked: 1 for MOE_LAYOUT_MASKED), GEMM1 and GEMM2 into
 * args->gemm2_out, then each valid row copied to its row of args->output (BF16 runners, do_finalize
 * 0). */
void moe_cpu_run_grouped(const moe_k_run *args, const moe_k_plan *plan, const int32_t *counts,
                         int32_t masked, int64_t capacity, int32_t num_threads);

#ifdef __cplusplus
}
#endif

#endif /* MOE_CPU_BACKEND_H_ */
