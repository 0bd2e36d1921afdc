/*
 * moe_bind.h - flat helpers shared by the SWIG bindings (Python, Java).
 *
 * The SWIG modules wrap these functions, not the raw API: each one takes plain scalars, borrowed
 * DLTensor pointers and a caller-owned moe_plan, calls the library and records a failure in a
 * thread-local status + message that the language's %exception turns into its native error
 * (MoeError in Python, MoeException in Java). The message is copied at the failure point, so no
 * later moe_* call can overwrite it before the binding reads it.
 */
#ifndef MOE_BIND_H_
#define MOE_BIND_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe_trtllm.h"

#if defined(_MSC_VER)
#define MOE_B_TLS __declspec(thread)
#else
#define MOE_B_TLS _Thread_local
#endif

static MOE_B_TLS moe_status_t moe_b_status_;
static MOE_B_TLS char moe_b_message_[1024];

/* Clears the pending status (called by %exception before every wrapped call). */
static inline void moe_b_clear(void) {
  moe_b_status_ = MOE_STATUS_SUCCESS;
}

/* Pending status of the last wrapped call on this thread (0 = none). */
static inline moe_status_t moe_b_pending(void) {
  return moe_b_status_;
}

/* Message that goes with moe_b_pending(). */
static inline const char *moe_b_pending_message(void) {
  return moe_b_message_;
}

/* Records a library failure: status plus a copy of the thread's last error. */
static inline int moe_b_check(moe_status_t st) {
  if (st != MOE_STATUS_SUCCESS) {
    const char *m = moe_get_last_error();
    moe_b_status_ = st;
    snprintf(moe_b_message_, sizeof moe_b_message_, "%s", (m && *m) ? m : moe_status_string(st));
  }
  return st != MOE_STATUS_SUCCESS;
}

/* Records a binding-side argument error (same channel as library errors). */
static inline void moe_b_fail(moe_status_t st, const char *msg) {
  moe_b_status_ = st;
  snprintf(moe_b_message_, sizeof moe_b_message_, "%s", msg);
}

static inline moe_problem moe_b_problem(int32_t num_experts, int64_t num_tokens, int32_t top_k,
                                        int32_t local_expert_offset, int32_t local_num_experts,
                                        int64_t hidden_size, int64_t intermediate_size) {
  moe_problem p;
  moe_problem_init(&p, MOE_PROBLEM_VERSION);
  p.num_experts = num_experts;
  p.num_tokens = num_tokens;
  p.top_k = top_k;
  p.local_expert_offset = local_expert_offset;
  p.local_num_experts = local_num_experts;
  p.hidden_size = hidden_size;
  p.intermediate_size = intermediate_size;
  return p;
}

#define MOE_B_PROBLEM_ARGS                                                             \
  int32_t num_experts, int64_t num_tokens, int32_t top_k, int32_t local_expert_offset, \
      int32_t local_num_experts, int64_t hidden_size, int64_t intermediate_size
#define MOE_B_PROBLEM                                                                   \
  moe_b_problem(num_experts, num_tokens, top_k, local_expert_offset, local_num_experts, \
                hidden_size, intermediate_size)

/* Byte size of a tensor (product of the shape x bits / 8); -1 if it has no data. */
static inline int64_t moe_b_tensor_bytes(const DLTensor *t) {
  int64_t n = 1;
  if (!t) return -1;
  for (int32_t i = 0; i < t->ndim; ++i) n *= t->shape[i];
  return n * (int64_t)t->dtype.bits * (int64_t)(t->dtype.lanes ? t->dtype.lanes : 1) / 8;
}

/* Pointer to a workspace tensor's first byte (data + byte_offset). */
static inline void *moe_b_tensor_ptr(const DLTensor *t) {
  return t ? (void *)((char *)t->data + t->byte_offset) : NULL;
}

/* ---- library ---------------------------------------------------------------------------- */

static inline int32_t moe_b_version_major(void) {
  int32_t a = 0;
  moe_get_version(&a, NULL, NULL);
  return a;
}
static inline int32_t moe_b_version_minor(void) {
  int32_t b = 0;
  moe_get_version(NULL, &b, NULL);
  return b;
}
static inline int32_t moe_b_version_patch(void) {
  int32_t c = 0;
  moe_get_version(NULL, NULL, &c);
  return c;
}
static inline const char *moe_b_status_string(int32_t status) {
  return moe_status_string(status);
}

static inline int32_t moe_b_cuda_device_count(void) {
  int32_t n = 0;
  if (moe_b_check(moe_cuda_device_count(&n))) return 0;
  return n;
}

/* ---- runner ----------------------------------------------------------------------------- */

/* activation_dtype, weight_dtype: MOE_DTYPE_*; scaling_mode: MOE_SCALING_* (options v2). */
static inline moe_runner *moe_b_runner_create(int32_t backend, int32_t device_id,
                                              int32_t sm_version, int32_t activation,
                                              int32_t num_threads, int32_t activation_dtype,
                                              int32_t weight_dtype, int32_t scaling_mode) {
  moe_runner_options o;
  moe_runner *r = NULL;
  if (moe_b_check(moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION))) return NULL;
  o.backend = backend;
  o.device_id = device_id;
  o.sm_version = sm_version;
  o.activation = activation;
  o.num_threads = num_threads;
  o.activation_dtype = activation_dtype;
  o.weight_dtype = weight_dtype;
  o.scaling_mode = scaling_mode;
  if (moe_b_check(moe_runner_create(&o, &r))) return NULL;
  return r;
}

static inline void moe_b_runner_destroy(moe_runner *r) {
  moe_runner_destroy(r);
}

static inline int32_t moe_b_runner_backend(const moe_runner *r) {
  int32_t b = -1;
  moe_b_check(moe_runner_get_backend(r, &b));
  return b;
}

static inline int32_t moe_b_num_configs(const moe_runner *r) {
  int32_t n = 0;
  moe_b_check(moe_runner_get_num_configs(r, &n));
  return n;
}

/* Number of valid configs of a problem. */
static inline int32_t moe_b_valid_config_count(const moe_runner *r, MOE_B_PROBLEM_ARGS) {
  moe_problem p = MOE_B_PROBLEM;
  int32_t n = 0;
  if (moe_b_check(moe_runner_get_valid_configs(r, &p, NULL, 0, &n))) return 0;
  return n;
}

/* The i-th valid config (best first). */
static inline int32_t moe_b_valid_config_at(const moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t i) {
  moe_problem p = MOE_B_PROBLEM;
  int32_t n = 0, *cfgs, c = -1;
  if (moe_b_check(moe_runner_get_valid_configs(r, &p, NULL, 0, &n))) return -1;
  if (i < 0 || i >= n) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "config position out of range");
    return -1;
  }
  cfgs = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
  if (!cfgs) {
    moe_b_fail(MOE_STATUS_OUT_OF_MEMORY, "out of host memory");
    return -1;
  }
  if (!moe_b_check(moe_runner_get_valid_configs(r, &p, cfgs, n, &n))) c = cfgs[i];
  free(cfgs);
  return c;
}

static inline int32_t moe_b_default_config(const moe_runner *r, MOE_B_PROBLEM_ARGS) {
  moe_problem p = MOE_B_PROBLEM;
  int32_t c = -1;
  moe_b_check(moe_runner_get_default_config(r, &p, &c));
  return c;
}

/* Field of moe_config_info: 0 index, 1 tile, 2 cta_tile, 3 cluster_size, 4 gemm1_block_m,
 * 5 gemm2_block_m, 6 block_k, 7 stages, 8 sm_version. */
static inline int32_t moe_b_config_field(const moe_runner *r, int32_t config, int32_t field) {
  moe_config_info info;
  memset(&info, 0, sizeof info);
  if (moe_b_check(moe_runner_describe_config(r, config, &info))) return -1;
  switch (field) {
    case 0:
      return info.index;
    case 1:
      return info.tile;
    case 2:
      return info.cta_tile;
    case 3:
      return info.cluster_size;
    case 4:
      return info.gemm1_block_m;
    case 5:
      return info.gemm2_block_m;
    case 6:
      return info.block_k;
    case 7:
      return info.stages;
    case 8:
      return info.sm_version;
    default:
      moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "config field out of range");
      return -1;
  }
}

static MOE_B_TLS char moe_b_name_[64];
/* The config's name (copied into a thread-local buffer). */
static inline const char *moe_b_config_name(const moe_runner *r, int32_t config) {
  moe_config_info info;
  memset(&info, 0, sizeof info);
  moe_b_name_[0] = 0;
  if (moe_b_check(moe_runner_describe_config(r, config, &info))) return moe_b_name_;
  memcpy(moe_b_name_, info.name, sizeof moe_b_name_);
  moe_b_name_[sizeof moe_b_name_ - 1] = 0;
  return moe_b_name_;
}

static inline int32_t moe_b_cluster_size(const moe_runner *r, int32_t config) {
  int32_t c = 0;
  moe_b_check(moe_runner_get_cluster_size(r, config, &c));
  return c;
}

static inline int64_t moe_b_workspace_size(const moe_runner *r, MOE_B_PROBLEM_ARGS,
                                           int32_t config) {
  moe_problem p = MOE_B_PROBLEM;
  size_t b = 0;
  if (moe_b_check(moe_runner_get_workspace_size(r, &p, config, &b))) return 0;
  return (int64_t)b;
}

/* ---- weights ---------------------------------------------------------------------------- */

static inline int64_t moe_b_weights_prepared_size(const moe_runner *r, MOE_B_PROBLEM_ARGS,
                                                  int32_t which) {
  moe_problem p = MOE_B_PROBLEM;
  size_t b = 0;
  if (moe_b_check(moe_weights_prepared_size(r, &p, which, &b))) return 0;
  return (int64_t)b;
}

static inline void moe_b_weights_prepare(const moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t which,
                                         const DLTensor *canonical, const DLTensor *prepared,
                                         moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_b_check(moe_weights_prepare(r, &p, which, canonical, prepared, stream));
}

/* FP8: e4m3 canonical weights with their scales, or bf16 (canonical_scales NULL) quantized by
 * the library (moe_weights_prepare_scaled). */
static inline void moe_b_weights_prepare_scaled(const moe_runner *r, MOE_B_PROBLEM_ARGS,
                                                int32_t which, const DLTensor *canonical,
                                                const DLTensor *canonical_scales,
                                                const DLTensor *prepared,
                                                moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_b_check(
      moe_weights_prepare_scaled(r, &p, which, canonical, canonical_scales, prepared, stream));
}

/* ---- routing and run -------------------------------------------------------------------- */

static inline void moe_b_routing_args(moe_routing_args *a, int32_t method, const DLTensor *logits,
                                      const DLTensor *bias, const DLTensor *topk_ids,
                                      const DLTensor *topk_weights, const DLTensor *topk_packed,
                                      int32_t n_group, int32_t topk_group,
                                      float routed_scaling_factor, int32_t enable_pdl) {
  moe_routing_args_init(a, MOE_ROUTING_ARGS_VERSION);
  a->method = method;
  a->logits = logits;
  a->bias = bias;
  a->topk_ids = topk_ids;
  a->topk_weights = topk_weights;
  a->topk_packed = topk_packed;
  a->n_group = n_group;
  a->topk_group = topk_group;
  a->routed_scaling_factor = routed_scaling_factor;
  a->enable_pdl = enable_pdl;
}

static inline void moe_b_routing_prepare(
    moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t config, int32_t method, const DLTensor *logits,
    const DLTensor *bias, const DLTensor *topk_ids, const DLTensor *topk_weights,
    const DLTensor *topk_packed, int32_t n_group, int32_t topk_group, float routed_scaling_factor,
    int32_t enable_pdl, const DLTensor *workspace, moe_plan *plan, moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_routing_args a;
  if (!workspace) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a tensor, got None/null");
    return;
  }
  moe_b_routing_args(&a, method, logits, bias, topk_ids, topk_weights, topk_packed, n_group,
                     topk_group, routed_scaling_factor, enable_pdl);
  moe_b_check(moe_routing_prepare(r, &p, &a, config, moe_b_tensor_ptr(workspace),
                                  (size_t)moe_b_tensor_bytes(workspace), plan, stream));
}

static inline void moe_b_run_args(moe_run_args *a, int32_t do_finalize,
                                  const DLTensor *hidden_states, const DLTensor *gemm1_weights,
                                  const DLTensor *gemm2_weights, const DLTensor *gemm1_bias,
                                  const DLTensor *gemm2_bias, const DLTensor *gemm1_alpha,
                                  const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit,
                                  const DLTensor *output, const DLTensor *permuted_output,
                                  const DLTensor *hidden_states_scale,
                                  const DLTensor *gemm1_input_scale,
                                  const DLTensor *gemm2_input_scale, int32_t enable_pdl) {
  moe_run_args_init(a, MOE_RUN_ARGS_VERSION);
  a->do_finalize = do_finalize;
  a->hidden_states = hidden_states;
  a->gemm1_weights = gemm1_weights;
  a->gemm2_weights = gemm2_weights;
  a->gemm1_bias = gemm1_bias;
  a->gemm2_bias = gemm2_bias;
  a->gemm1_alpha = gemm1_alpha;
  a->gemm1_beta = gemm1_beta;
  a->gemm1_clamp_limit = gemm1_clamp_limit;
  a->output = output;
  a->permuted_output = permuted_output;
  a->hidden_states_scale = hidden_states_scale;
  a->gemm1_input_scale = gemm1_input_scale;
  a->gemm2_input_scale = gemm2_input_scale;
  a->enable_pdl = enable_pdl;
}

static inline void moe_b_run(moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t config,
                             const moe_plan *plan, int32_t do_finalize,
                             const DLTensor *hidden_states, const DLTensor *gemm1_weights,
                             const DLTensor *gemm2_weights, const DLTensor *gemm1_bias,
                             const DLTensor *gemm2_bias, const DLTensor *gemm1_alpha,
                             const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit,
                             const DLTensor *output, const DLTensor *permuted_output,
                             const DLTensor *hidden_states_scale, const DLTensor *gemm1_input_scale,
                             const DLTensor *gemm2_input_scale, int32_t enable_pdl,
                             const DLTensor *workspace, moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_run_args a;
  if (!workspace) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a tensor, got None/null");
    return;
  }
  moe_b_run_args(&a, do_finalize, hidden_states, gemm1_weights, gemm2_weights, gemm1_bias,
                 gemm2_bias, gemm1_alpha, gemm1_beta, gemm1_clamp_limit, output, permuted_output,
                 hidden_states_scale, gemm1_input_scale, gemm2_input_scale, enable_pdl);
  moe_b_check(moe_runner_run(r, &p, &a, config, plan, moe_b_tensor_ptr(workspace),
                             (size_t)moe_b_tensor_bytes(workspace), stream));
}

static inline void moe_b_forward(
    moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t method, const DLTensor *logits, const DLTensor *bias,
    const DLTensor *topk_ids, const DLTensor *topk_weights, const DLTensor *topk_packed,
    int32_t n_group, int32_t topk_group, float routed_scaling_factor, int32_t do_finalize,
    const DLTensor *hidden_states, const DLTensor *gemm1_weights, const DLTensor *gemm2_weights,
    const DLTensor *gemm1_bias, const DLTensor *gemm2_bias, const DLTensor *gemm1_alpha,
    const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit, const DLTensor *output,
    const DLTensor *permuted_output, const DLTensor *hidden_states_scale,
    const DLTensor *gemm1_input_scale, const DLTensor *gemm2_input_scale, int32_t enable_pdl,
    const DLTensor *workspace, moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_routing_args ra;
  moe_run_args a;
  if (!workspace) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a tensor, got None/null");
    return;
  }
  moe_b_routing_args(&ra, method, logits, bias, topk_ids, topk_weights, topk_packed, n_group,
                     topk_group, routed_scaling_factor, enable_pdl);
  moe_b_run_args(&a, do_finalize, hidden_states, gemm1_weights, gemm2_weights, gemm1_bias,
                 gemm2_bias, gemm1_alpha, gemm1_beta, gemm1_clamp_limit, output, permuted_output,
                 hidden_states_scale, gemm1_input_scale, gemm2_input_scale, enable_pdl);
  moe_b_check(moe_forward(r, &p, &ra, &a, moe_b_tensor_ptr(workspace),
                          (size_t)moe_b_tensor_bytes(workspace), stream));
}

/* Times every valid config (moe_runner_autotune); writes them fastest first into the int32 host
 * tensor configs_out (capacity = its element count) and their times into the fp32 host tensor
 * times_out (optional); returns how many were timed. */
static inline int32_t moe_b_autotune(
    moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t method, const DLTensor *logits, const DLTensor *bias,
    const DLTensor *topk_ids, const DLTensor *topk_weights, const DLTensor *topk_packed,
    int32_t n_group, int32_t topk_group, float routed_scaling_factor, int32_t do_finalize,
    const DLTensor *hidden_states, const DLTensor *gemm1_weights, const DLTensor *gemm2_weights,
    const DLTensor *gemm1_bias, const DLTensor *gemm2_bias, const DLTensor *gemm1_alpha,
    const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit, const DLTensor *output,
    const DLTensor *permuted_output, const DLTensor *hidden_states_scale,
    const DLTensor *gemm1_input_scale, const DLTensor *gemm2_input_scale, int32_t enable_pdl,
    const DLTensor *workspace, int32_t iterations, const DLTensor *configs_out,
    const DLTensor *times_out, moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_routing_args ra;
  moe_run_args a;
  int32_t count = 0, capacity;
  if (!workspace || !configs_out) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace/configs: expected tensors, got None/null");
    return 0;
  }
  capacity = (int32_t)(moe_b_tensor_bytes(configs_out) / 4);
  if (times_out && moe_b_tensor_bytes(times_out) / 4 < capacity) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "times: expected at least as many elements as configs");
    return 0;
  }
  moe_b_routing_args(&ra, method, logits, bias, topk_ids, topk_weights, topk_packed, n_group,
                     topk_group, routed_scaling_factor, enable_pdl);
  moe_b_run_args(&a, do_finalize, hidden_states, gemm1_weights, gemm2_weights, gemm1_bias,
                 gemm2_bias, gemm1_alpha, gemm1_beta, gemm1_clamp_limit, output, permuted_output,
                 hidden_states_scale, gemm1_input_scale, gemm2_input_scale, enable_pdl);
  if (moe_b_check(moe_runner_autotune(
          r, &p, &ra, &a, moe_b_tensor_ptr(workspace), (size_t)moe_b_tensor_bytes(workspace),
          iterations, (int32_t *)moe_b_tensor_ptr(configs_out),
          times_out ? (float *)moe_b_tensor_ptr(times_out) : NULL, capacity, &count, stream)))
    return 0;
  return count;
}

/* ---- grouped run (external token layouts, docs/ep.md) ------------------------------------ */

/* Workspace bytes of moe_runner_run_grouped (num_tokens = the largest N). */
static inline int64_t moe_b_grouped_workspace_size(const moe_runner *r, MOE_B_PROBLEM_ARGS,
                                                   int32_t config) {
  moe_problem p = MOE_B_PROBLEM;
  size_t b = 0;
  if (moe_b_check(moe_runner_get_grouped_workspace_size(r, &p, config, &b))) return 0;
  return (int64_t)b;
}

/* moe_runner_run_grouped: layout MOE_LAYOUT_*, capacity (MASKED: rows per expert; CONTIGUOUS:
 * 0), hidden states / output in the layout's shape, expert_counts int32 [E_l]; FP8 runners: the
 * scales as moe_b_run (hidden_states_scale [N, H/128] in BLOCK with e4m3 hidden). */
static inline void moe_b_run_grouped(
    moe_runner *r, MOE_B_PROBLEM_ARGS, int32_t config, int32_t layout, int64_t capacity,
    const DLTensor *hidden_states, const DLTensor *expert_counts, const DLTensor *gemm1_weights,
    const DLTensor *gemm2_weights, const DLTensor *gemm1_bias, const DLTensor *gemm2_bias,
    const DLTensor *gemm1_alpha, const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit,
    const DLTensor *output, const DLTensor *hidden_states_scale, const DLTensor *gemm1_input_scale,
    const DLTensor *gemm2_input_scale, int32_t enable_pdl, const DLTensor *workspace,
    moe_cuda_stream_t stream) {
  moe_problem p = MOE_B_PROBLEM;
  moe_grouped_args a;
  if (!workspace) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a tensor, got None/null");
    return;
  }
  if (moe_b_check(moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION))) return;
  a.layout = layout;
  a.capacity = capacity;
  a.hidden_states = hidden_states;
  a.expert_counts = expert_counts;
  a.gemm1_weights = gemm1_weights;
  a.gemm2_weights = gemm2_weights;
  a.gemm1_bias = gemm1_bias;
  a.gemm2_bias = gemm2_bias;
  a.gemm1_alpha = gemm1_alpha;
  a.gemm1_beta = gemm1_beta;
  a.gemm1_clamp_limit = gemm1_clamp_limit;
  a.output = output;
  a.hidden_states_scale = hidden_states_scale;
  a.gemm1_input_scale = gemm1_input_scale;
  a.gemm2_input_scale = gemm2_input_scale;
  a.enable_pdl = enable_pdl;
  moe_b_check(moe_runner_run_grouped(r, &p, &a, config, moe_b_tensor_ptr(workspace),
                                     (size_t)moe_b_tensor_bytes(workspace), stream));
}

/* ---- plan ------------------------------------------------------------------------------- */

/* Field of a plan descriptor: 0 config, 1 tile, 2 cluster_size, 3 num_tokens, 4 max_padded_rows,
 * 5 max_ctas, 6 backend, 7 state. */
static inline int64_t moe_b_plan_field(const moe_plan *plan, int32_t field) {
  if (!plan) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "plan: expected a plan, got NULL");
    return -1;
  }
  switch (field) {
    case 0:
      return plan->config;
    case 1:
      return plan->tile;
    case 2:
      return plan->cluster_size;
    case 3:
      return plan->num_tokens;
    case 4:
      return plan->max_padded_rows;
    case 5:
      return plan->max_ctas;
    case 6:
      return plan->backend;
    case 7:
      return plan->state;
    default:
      moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "plan field out of range");
      return -1;
  }
}

static inline int64_t moe_b_plan_read_count(const moe_runner *r, const moe_plan *plan,
                                            const DLTensor *workspace, int32_t table,
                                            moe_cuda_stream_t stream) {
  int64_t n = 0;
  if (!workspace) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a tensor, got None/null");
    return 0;
  }
  if (moe_b_check(moe_plan_read_count(r, plan, moe_b_tensor_ptr(workspace),
                                      (size_t)moe_b_tensor_bytes(workspace), table, &n, stream)))
    return 0;
  return n;
}

/* Copies a plan table into host tensor dst (its bytes bound the copy). */
static inline void moe_b_plan_read(const moe_runner *r, const moe_plan *plan,
                                   const DLTensor *workspace, int32_t table, const DLTensor *dst,
                                   moe_cuda_stream_t stream) {
  if (!workspace || !dst) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace/dst: expected tensors, got None/null");
    return;
  }
  moe_b_check(moe_plan_read(r, plan, moe_b_tensor_ptr(workspace),
                            (size_t)moe_b_tensor_bytes(workspace), table, moe_b_tensor_ptr(dst),
                            (size_t)moe_b_tensor_bytes(dst), stream));
}

#endif /* MOE_BIND_H_ */
