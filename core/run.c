/*
 * run.c - moe_runner_run (GEMM1, GEMM2, finalize on a prepared plan), moe_forward and
 * moe_runner_autotune.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static moe_status_t check_plan_problem(const moe_plan *plan, const moe_problem *p) {
  if (plan->num_tokens != p->num_tokens || plan->num_experts != p->num_experts ||
      plan->top_k != p->top_k || plan->local_expert_offset != p->local_expert_offset ||
      plan->local_num_experts != moe_local_experts(p) || plan->hidden_size != p->hidden_size ||
      plan->intermediate_size != p->intermediate_size)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "problem: differs from the problem the plan was prepared for (T %lld/%lld, "
                    "E %d/%d, K %d/%d, H %lld/%lld, I %lld/%lld, offset %d/%d, local %d/%d)",
                    (long long)plan->num_tokens, (long long)p->num_tokens, plan->num_experts,
                    p->num_experts, plan->top_k, p->top_k, (long long)plan->hidden_size,
                    (long long)p->hidden_size, (long long)plan->intermediate_size,
                    (long long)p->intermediate_size, plan->local_expert_offset,
                    p->local_expert_offset, plan->local_num_experts, moe_local_experts(p));
  return MOE_STATUS_SUCCESS;
}

moe_status_t moe_check_expert_tensors(const moe_runner *r, const moe_problem *p,
                                      const moe_expert_tensors *t, moe_k_run *k) {
  const int64_t H = p->hidden_size, I = p->intermediate_size;
  const int64_t El = moe_local_experts(p), f = r->gated ? 2 : 1;
  size_t w1 = 0, w2 = 0;
  moe_status_t s;
  if ((s = moe_weights_prepared_size(r, p, MOE_WEIGHTS_GEMM1, &w1))) return s;
  if ((s = moe_weights_prepared_size(r, p, MOE_WEIGHTS_GEMM2, &w2))) return s;
  const int64_t w1s[1] = {moe_shape_at_least(w1)}, w2s[1] = {moe_shape_at_least(w2)};
  const int64_t b1[2] = {El, f * I}, b2[2] = {El, H}, el[1] = {El};
  if ((s = moe_check_tensor(r, t->w1, "args->gemm1_weights", 0, MOE_T_U8, 1, w1s)) ||
      (s = moe_check_tensor(r, t->w2, "args->gemm2_weights", 0, MOE_T_U8, 1, w2s)) ||
      (s = moe_check_tensor(r, t->bias1, "args->gemm1_bias", 1, MOE_T_F32_OR_BF16, 2, b1)) ||
      (s = moe_check_tensor(r, t->bias2, "args->gemm2_bias", 1, MOE_T_F32_OR_BF16, 2, b2)) ||
      (s = moe_check_tensor(r, t->alpha, "args->gemm1_alpha", 1, MOE_T_F32, 1, el)) ||
      (s = moe_check_tensor(r, t->beta, "args->gemm1_beta", 1, MOE_T_F32, 1, el)) ||
      (s = moe_check_tensor(r, t->clamp_limit, "args->gemm1_clamp_limit", 1, MOE_T_F32, 1, el)) ||
      /* prepared weights are uint8 tensors of bf16 data: 16 bytes on every backend, as
       * moe_weights_prepare requires of its output */
      (s = moe_check_tensor_aligned(t->w1, "args->gemm1_weights", MOE_VECTOR_ALIGN,
                                    "prepared weights")) ||
      (s = moe_check_tensor_aligned(t->w2, "args->gemm2_weights", MOE_VECTOR_ALIGN,
                                    "prepared weights")))
    return s;
  if ((t->alpha || t->beta || t->clamp_limit) && r->opts.activation != MOE_ACTIVATION_SWIGLU)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->gemm1_alpha/beta/clamp_limit: only SwiGLU uses them; expected NULL "
                    "for activation %d",
                    r->opts.activation);
  const DLTensor *bias[2] = {t->bias1, t->bias2};
  for (int i = 0; i < 2; ++i)
    if (bias[i] && r->backend != MOE_BACKEND_CPU && moe_tensor_kdtype(bias[i]) == MOE_K_BF16)
      return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                      "args->gemm%d_bias: bf16 biases are supported on the CPU backend only for "
                      "now; expected float32 on the CUDA backend, given bfloat16",
                      i + 1);
  k->w1 = (const uint16_t *)moe_tensor_data(t->w1);
  k->w2 = (const uint16_t *)moe_tensor_data(t->w2);
  if (t->bias1 && moe_tensor_kdtype(t->bias1) == MOE_K_BF16)
    k->bias1_bf16 = (const uint16_t *)moe_tensor_data(t->bias1);
  else
    k->bias1 = (const float *)moe_tensor_data(t->bias1);
  if (t->bias2 && moe_tensor_kdtype(t->bias2) == MOE_K_BF16)
    k->bias2_bf16 = (const uint16_t *)moe_tensor_data(t->bias2);
  else
    k->bias2 = (const float *)moe_tensor_data(t->bias2);
  k->alpha = (const float *)moe_tensor_data(t->alpha);
  k->beta = (const float *)moe_tensor_data(t->beta);
  k->clamp_limit = (const float *)moe_tensor_data(t->clamp_limit);
  return MOE_STATUS_SUCCESS;
}

static moe_status_t check_run_args(const moe_runner *r, const moe_problem *p, const moe_run_args *a,
                                   const moe_layout *l, moe_k_run *k) {
  if (!a) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args: expected a non-NULL pointer");
  if (a->version < 1 || a->version > MOE_RUN_ARGS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "args->version: expected 1..%d, given %u",
                    MOE_RUN_ARGS_VERSION, a->version);
  if (a->do_finalize != 0 && a->do_finalize != 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->do_finalize: expected 0 or 1, given %d",
                    a->do_finalize);
  if (a->enable_pdl != 0 && a->enable_pdl != 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->enable_pdl: expected 0 or 1, given %d",
                    a->enable_pdl);
  for (int i = 0; i < 7; ++i)
    if (a->reserved[i])
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->reserved[%d]: expected 0, given %d", i,
                      a->reserved[i]);
  const int64_t T = p->num_tokens, H = p->hidden_size;
  const int64_t th[2] = {T, H};
  const int64_t po[2] = {moe_shape_at_least((uint64_t)l->max_rows), H};
  const moe_expert_tensors et = {a->gemm1_weights,    a->gemm2_weights, a->gemm1_bias,
                                 a->gemm2_bias,       a->gemm1_alpha,   a->gemm1_beta,
                                 a->gemm1_clamp_limit};
  moe_status_t s;
  if ((s = moe_check_run_precision(r, p, a, k)) || (s = moe_check_expert_tensors(r, p, &et, k)) ||
      (s = moe_check_tensor_vector_aligned(r, a->hidden_states, "args->hidden_states")))
    return s;
  if (a->do_finalize) {
    if ((s = moe_check_tensor(r, a->output, "args->output", 0, MOE_T_BF16, 2, th)) ||
        (s = moe_check_tensor_vector_aligned(r, a->output, "args->output")))
      return s;
  } else {
    if ((s = moe_check_tensor(r, a->permuted_output, "args->permuted_output", 0, MOE_T_BF16, 2,
                              po)) ||
        (s = moe_check_tensor_vector_aligned(r, a->permuted_output, "args->permuted_output")))
      return s;
  }
  k->output = a->do_finalize ? (uint16_t *)moe_tensor_data(a->output) : NULL;
  k->do_finalize = a->do_finalize;
  k->enable_pdl = a->enable_pdl;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_run(moe_runner *r, const moe_problem *p, const moe_run_args *a,
                                    int32_t config, const moe_plan *plan, void *workspace,
                                    size_t workspace_bytes, moe_cuda_stream_t stream) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  moe_status_t s = moe_check_fp8_backend(r);
  if (s) return s;
  if ((s = moe_check_problem(p, "problem"))) return s;
  if ((s = moe_check_config(r, p, config, "config"))) return s;
  moe_layout l;
  if ((s = moe_check_plan(r, plan, workspace, workspace_bytes, &l))) return s;
  if (plan->config != config)
    return moe_fail(MOE_STATUS_INVALID_CONFIG,
                    "config: routing was prepared with config %d (tile %d, cluster %d), given %d",
                    plan->config, plan->tile, plan->cluster_size, config);
  if ((s = check_plan_problem(plan, p))) return s;
  const moe_config_row *row = moe_catalogue_row(r, config);
  if ((s = moe_check_workspace(workspace, workspace_bytes, l.total_bytes))) return s;
  moe_k_run k;
  memset(&k, 0, sizeof k);
  if ((s = check_run_args(r, p, a, &l, &k))) return s;
  char *ws = (char *)workspace;
  k.gemm1_out = (uint16_t *)(ws + l.off_gemm1_out);
  k.act_scratch = ws + l.off_gemm2_out;
  k.gemm2_out = a->do_finalize ? (uint16_t *)(ws + l.off_gemm2_out)
                               : (uint16_t *)moe_tensor_data(a->permuted_output);
  k.num_tokens = p->num_tokens;
  k.hidden_size = p->hidden_size;
  k.intermediate_size = p->intermediate_size;
  k.top_k = p->top_k;
  k.local_num_experts = moe_local_experts(p);
  k.activation = r->opts.activation;
  k.catalogue = moe_catalogue_of(r)->key;
  k.config = config;
  k.tile = row->tile;
  k.cluster_size = row->cluster;
  k.launch_ctas = l.launch_ctas;
  moe_k_plan kp;
  moe_layout_plan(&l, workspace, &kp);
  return moe_backend_run(r, &k, &kp, stream);
}

MOE_API moe_status_t moe_forward(moe_runner *r, const moe_problem *p,
                                 const moe_routing_args *routing, const moe_run_args *run,
                                 void *workspace, size_t workspace_bytes,
                                 moe_cuda_stream_t stream) {
  moe_clear_error();
  int32_t config = 0;
  moe_status_t s = moe_runner_get_default_config(r, p, &config);
  if (s) return s;
  moe_plan plan;
  memset(&plan, 0, sizeof plan);
  if ((s = moe_routing_prepare(r, p, routing, config, workspace, workspace_bytes, &plan, stream)))
    return s;
  return moe_runner_run(r, p, run, config, &plan, workspace, workspace_bytes, stream);
}

/* ---- autotune ---- */

typedef struct {
  moe_runner *r;
  const moe_problem *p;
  const moe_routing_args *routing;
  const moe_run_args *run;
  int32_t config;
  void *ws;
  size_t bytes;
  moe_cuda_stream_t stream;
} tune_ctx;

static moe_status_t tune_once(void *vctx) {
  tune_ctx *c = (tune_ctx *)vctx;
  moe_plan plan;
  memset(&plan, 0, sizeof plan);
  moe_status_t s =
      moe_routing_prepare(c->r, c->p, c->routing, c->config, c->ws, c->bytes, &plan, c->stream);
  if (s) return s;
  return moe_runner_run(c->r, c->p, c->run, c->config, &plan, c->ws, c->bytes, c->stream);
}

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static moe_status_t cpu_time(tune_ctx *c, int32_t iters, float *median_us) {
  float *t = (float *)malloc(sizeof(float) * (size_t)iters);
  if (!t) return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "autotune: host allocation failed");
  moe_status_t s = tune_once(c);
  for (int32_t i = 0; i < iters && !s; ++i) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    s = tune_once(c);
    clock_gettime(CLOCK_MONOTONIC, &b);
    t[i] = (float)((b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) * 1e-3);
  }
  if (!s) {
    qsort(t, (size_t)iters, sizeof *t, cmp_f);
    *median_us = t[iters / 2];
  }
  free(t);
  return s;
}

typedef struct {
  int32_t config;
  float us;
} timed;

static int cmp_timed(const void *a, const void *b) {
  const timed *x = a, *y = b;
  if (x->us != y->us) return x->us < y->us ? -1 : 1;
  return x->config - y->config;
}

MOE_API moe_status_t moe_runner_autotune(moe_runner *r, const moe_problem *p,
                                         const moe_routing_args *routing, const moe_run_args *run,
                                         void *workspace, size_t workspace_bytes,
                                         int32_t iterations, int32_t *configs, float *times_us,
                                         int32_t capacity, int32_t *count,
                                         moe_cuda_stream_t stream) {
  moe_clear_error();
  if (!count) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "count: expected a non-NULL pointer");
  *count = 0;
  if (iterations < 1 || iterations > 10000)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "iterations: expected 1..10000, given %d",
                    iterations);
  if (capacity < 0 || (capacity > 0 && !configs))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "configs/capacity: expected a non-NULL array for capacity %d", capacity);
  int32_t n = 0;
  moe_status_t s = moe_runner_get_valid_configs(r, p, NULL, 0, &n);
  if (s) return s;
  int32_t *valid = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
  timed *res = (timed *)malloc(sizeof(timed) * (size_t)n);
  if (!valid || !res) {
    free(valid);
    free(res);
    return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "autotune: host allocation failed");
  }
  s = moe_runner_get_valid_configs(r, p, valid, n, &n);
  for (int32_t i = 0; i < n && !s; ++i) {
    size_t need = 0;
    s = moe_runner_get_workspace_size(r, p, valid[i], &need);
    if (!s && need > workspace_bytes)
      s = moe_fail(MOE_STATUS_INSUFFICIENT_WORKSPACE,
                   "workspace_bytes: config %d needs %zu bytes, given %zu (autotune needs the "
                   "largest size of the valid configs)",
                   valid[i], need, workspace_bytes);
  }
  for (int32_t i = 0; i < n && !s; ++i) {
    tune_ctx c = {r, p, routing, run, valid[i], workspace, workspace_bytes, stream};
    res[i].config = valid[i];
    s = r->backend == MOE_BACKEND_CPU
            ? cpu_time(&c, iterations, &res[i].us)
            : moe_gpu_time(r, tune_once, &c, iterations, stream, &res[i].us);
  }
  if (!s) {
    qsort(res, (size_t)n, sizeof *res, cmp_timed);
    for (int32_t i = 0; i < n && i < capacity; ++i) {
      configs[i] = res[i].config;
      if (times_us) times_us[i] = res[i].us;
    }
    *count = n;
  }
  free(valid);
  free(res);
  return s;
}
