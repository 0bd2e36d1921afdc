/*
 * finalize.c - finalize and the run entry point of the CPU reference backend.
 *
 * out[t, h] = bf16(acc), acc = 0.0f; for k = 0..K-1 (slot order) with p = p(t*K+k) != -1:
 *   acc = acc + w(t,k) * y[p, h]       (w = the plan's bf16 weight, y = gemm2_out, fp32)
 * Tokens with no local slot get exactly +0.
 */
#include "cpu_internal.h"

#define FIN_CHUNK 256 /* columns accumulated at once (fp32 on the stack) */

typedef struct fin_job {
  const moe_k_run *a;
  const moe_k_plan *p;
} fin_job;

static void finalize_body(void *ctx, int64_t begin, int64_t end) {
  const fin_job *job = (const fin_job *)ctx;
  const moe_k_run *a = job->a;
  const moe_k_plan *p = job->p;
  const int64_t H = a->hidden_size, K = a->top_k;
  float acc[FIN_CHUNK];
  for (int64_t t = begin; t < end; ++t) {
    uint16_t *out = a->output + t * H;
    for (int64_t h0 = 0; h0 < H; h0 += FIN_CHUNK) {
      const int64_t n = H - h0 < FIN_CHUNK ? H - h0 : FIN_CHUNK;
      for (int64_t h = 0; h < n; ++h) acc[h] = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t r = p->expanded_to_permuted[t * K + k];
        if (r < 0) continue;
        const float w = moe_bf16_to_f32(p->expert_weights[t * K + k]);
        const uint16_t *y = a->gemm2_out + (int64_t)r * H + h0;
        for (int64_t h = 0; h < n; ++h)
          acc[h] = MOE_FADD(acc[h], MOE_FMUL(w, moe_bf16_to_f32(y[h])));
      }
      for (int64_t h = 0; h < n; ++h) out[h0 + h] = moe_f32_to_bf16(acc[h]);
    }
  }
}

void moe_cpu_finalize(const moe_k_run *a, const moe_k_plan *p, int32_t num_threads) {
  fin_job job = {a, p};
  moe_cpu_parallel_for(a->num_tokens, 16, num_threads, finalize_body, &job);
}

void moe_cpu_run(const moe_k_run *args, const moe_k_plan *plan, int32_t num_threads) {
  if (args->scaling_mode != MOE_K_SCALING_NONE) {
    moe_cpu_quant_gemms(args, plan, num_threads); /* GEMM2 writes bf16 as in BF16 runs */
  } else {
    moe_cpu_gemm1(args, plan, num_threads);
    moe_cpu_gemm2(args, plan, num_threads);
  }
  if (args->do_finalize && args->output) moe_cpu_finalize(args, plan, num_threads);
}
