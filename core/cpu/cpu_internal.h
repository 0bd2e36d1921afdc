/*
 * cpu_internal.h - helpers shared by the files of the CPU reference backend (core/cpu/).
 * Never installed; every symbol here is hidden (the library builds with hidden visibility).
 */
#ifndef MOE_CPU_INTERNAL_H_
#define MOE_CPU_INTERNAL_H_

#include <stdint.h>

#include "cpu_backend.h"

/* Largest K (and DeepSeekV3 topk_group) kept in the on-stack top-K list. core/ limits K to
 * MOE_MAX_TOP_K = 64; a larger K still works through the slower list-free selection. */
#ifndef MOE_CPU_TOPK_STACK
#define MOE_CPU_TOPK_STACK 64
#endif

/* ---- parallel.c ------------------------------------------------------------------------- */

/* Worker count for a num_threads option: 0 (or less) = online cores; capped. */
int32_t moe_cpu_thread_count(int32_t num_threads);

/* Body of a parallel loop: process items [begin, end). Must not depend on which worker runs
 * it (results of the backend are independent of the thread count). */
typedef void (*moe_cpu_body_fn)(void *ctx, int64_t begin, int64_t end);

/*
 * Run body over items [0, n) in chunks of @p grain items, handed out dynamically to up to
 * @p num_threads workers (the caller's thread is one of them). Returns when all are done.
 * If a thread cannot be created its share is done by the others (same results).
 */
void moe_cpu_parallel_for(int64_t n, int64_t grain, int32_t num_threads, moe_cpu_body_fn body,
                          void *ctx);

/* ---- plan.c ----------------------------------------------------------------------------- */

/* Build the plan tables (DESIGN §4) from plan->topk_ids [T*K]. */
void moe_cpu_build_plan(const moe_k_routing *args, const moe_k_plan *plan);

/* ---- weights.c -------------------------------------------------------------------------- */

/*
 * Prepared row of gated W1 holding feature @p f (0 <= f < I) of half @p half (0 = up,
 * 1 = gate). docs/formats.md: 8-row blocks, up block b then gate block b. (For I % 8 != 0,
 * which core/ rejects, the tail features follow: the remaining up rows, then gate rows.)
 */
static inline int64_t moe_cpu_w1_row(int64_t inter, int64_t f, int32_t half) {
  const int64_t full = inter - inter % 8;
  if (f < full) return 16 * (f / 8) + 8 * half + f % 8;
  return 2 * full + half * (inter - full) + (f - full);
}

/* ---- biases: fp32 or bf16 (moe_k_run bias1 / bias1_bf16) -------------------------------- */

/* The bias vector of one expert, at element @p off of the [E_l, n] tensor; none if both NULL. */
typedef struct moe_cpu_bias {
  const float *f;
  const uint16_t *h;
} moe_cpu_bias;
static inline moe_cpu_bias moe_cpu_bias_of(const float *f, const uint16_t *h, int64_t off) {
  moe_cpu_bias b = {f ? f + off : NULL, h ? h + off : NULL};
  return b;
}
static inline int moe_cpu_has_bias(moe_cpu_bias b) {
  return b.f != NULL || b.h != NULL;
}
/* Element i in fp32 (bf16 widened exactly). */
static inline float moe_cpu_bias_get(moe_cpu_bias b, int64_t i) {
  return b.f ? b.f[i] : moe_bf16_to_f32(b.h[i]);
}

/* ---- gemm.c / finalize.c ---------------------------------------------------------------- */

void moe_cpu_gemm1(const moe_k_run *args, const moe_k_plan *plan, int32_t num_threads);
void moe_cpu_gemm2(const moe_k_run *args, const moe_k_plan *plan, int32_t num_threads);
void moe_cpu_finalize(const moe_k_run *args, const moe_k_plan *plan, int32_t num_threads);

/* ---- quant_gemm.c: GEMM1 and GEMM2 of an FP8 or MXFP4 run (args->scaling_mode != NONE) -- */
void moe_cpu_quant_gemms(const moe_k_run *args, const moe_k_plan *plan, int32_t num_threads);

#endif /* MOE_CPU_INTERNAL_H_ */
