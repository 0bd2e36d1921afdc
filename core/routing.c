/*
 * routing.c - moe_routing_prepare: validate the routing inputs against the method's limits
 * (reference §1.6, §2.5, with the §9 defects fixed), then let the backend build the plan.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

static const char *method_name(int32_t m) {
  switch (m) {
    case MOE_ROUTING_DEFAULT:
      return "Default";
    case MOE_ROUTING_RENORMALIZE:
      return "Renormalize";
    case MOE_ROUTING_DEEPSEEK_V3:
      return "DeepSeekV3";
    case MOE_ROUTING_LLAMA4:
      return "Llama4";
    case MOE_ROUTING_RENORMALIZE_NAIVE:
      return "RenormalizeNaive";
    case MOE_ROUTING_TOPK:
      return "TopK";
    default:
      return "?";
  }
}

/* Method limits; fills the effective n_group / topk_group. */
static moe_status_t check_method(const moe_problem *p, const moe_routing_args *a, int32_t *n_group,
                                 int32_t *topk_group) {
  const int32_t E = p->num_experts, K = p->top_k, m = a->method;
  if (m < MOE_ROUTING_DEFAULT || m > MOE_ROUTING_TOPK)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->method: expected 0 (Default) .. 5 (TopK), given %d", m);
  if (E > MOE_MAX_EXPERTS_ROUTING)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem->num_experts: %s routing supports at most %d experts, given %d",
                    method_name(m), MOE_MAX_EXPERTS_ROUTING, E);
  *n_group = 1;
  *topk_group = 1;
  if (m == MOE_ROUTING_DEEPSEEK_V3) {
    if (K > 22)
      return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                      "problem->top_k: DeepSeekV3 supports at most 22, given %d", K);
    int32_t ng = a->n_group == 0 ? 1 : a->n_group;
    if (ng < 1 || ng > 32 || E % ng != 0)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->n_group: expected 1..32 dividing num_experts=%d, given %d", E,
                      a->n_group);
    int32_t tg = a->topk_group == 0 ? ng : a->topk_group;
    if (tg < 1 || tg > ng)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->topk_group: expected 1..n_group=%d, given %d", ng, a->topk_group);
    if (ng > 1 && E / ng < 2)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->n_group: each group needs >= 2 experts (num_experts=%d, n_group=%d)",
                      E, ng);
    if (ng > 1 && (int64_t)K > (int64_t)tg * (E / ng))
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "problem->top_k: expected <= topk_group * num_experts / n_group = %d, "
                      "given %d",
                      tg * (E / ng), K);
    if (!isfinite(a->routed_scaling_factor))
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->routed_scaling_factor: expected a finite value");
    *n_group = ng;
    *topk_group = tg;
    return MOE_STATUS_SUCCESS;
  }
  if ((a->n_group > 1) || (a->topk_group > 1))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->n_group/topk_group: expected 0 or 1 for %s routing, given %d/%d",
                    method_name(m), a->n_group, a->topk_group);
  if (m == MOE_ROUTING_LLAMA4) {
    if (K != 1)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "problem->top_k: Llama4 routing expects 1, given %d", K);
  } else if (K > 10) {
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem->top_k: %s routing supports at most 10, given %d", method_name(m), K);
  }
  if (a->bias)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->bias: only DeepSeekV3 uses a routing bias; expected NULL for %s",
                    method_name(m));
  return MOE_STATUS_SUCCESS;
}

static moe_status_t check_inputs(const moe_runner *r, const moe_problem *p,
                                 const moe_routing_args *a, moe_k_routing *k) {
  const int64_t T = p->num_tokens, E = p->num_experts, K = p->top_k;
  int kinds = (a->logits != NULL) + (a->topk_ids != NULL || a->topk_weights != NULL) +
              (a->topk_packed != NULL);
  if (kinds != 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args: expected exactly one routing input (logits; topk_ids + topk_weights; "
                    "or topk_packed), given %d",
                    kinds);
  moe_status_t s;
  const int64_t te[2] = {T, E}, tk[2] = {T, K}, e1[1] = {E};
  if (a->logits) {
    if ((s = moe_check_tensor(r, a->logits, "args->logits", 0, MOE_T_F32_OR_BF16, 2, te))) return s;
    k->input_kind = MOE_K_INPUT_LOGITS;
    k->logits = moe_tensor_data(a->logits);
    k->logits_dtype = moe_tensor_kdtype(a->logits);
  } else if (a->topk_packed) {
    if ((s = moe_check_tensor(r, a->topk_packed, "args->topk_packed", 0, MOE_T_I32, 2, tk)))
      return s;
    k->input_kind = MOE_K_INPUT_PACKED;
    k->topk_packed_in = (const int32_t *)moe_tensor_data(a->topk_packed);
  } else {
    if ((s = moe_check_tensor(r, a->topk_ids, "args->topk_ids", 0, MOE_T_I32, 2, tk))) return s;
    if ((s = moe_check_tensor(r, a->topk_weights, "args->topk_weights", 0, MOE_T_F32_OR_BF16, 2,
                              tk)))
      return s;
    k->input_kind = MOE_K_INPUT_IDS;
    k->topk_ids_in = (const int32_t *)moe_tensor_data(a->topk_ids);
    k->topk_weights_in = moe_tensor_data(a->topk_weights);
    k->topk_weights_dtype = moe_tensor_kdtype(a->topk_weights);
  }
  if (a->bias) {
    if ((s = moe_check_tensor(r, a->bias, "args->bias", 0, MOE_T_F32_OR_BF16, 1, e1))) return s;
    if (k->input_kind != MOE_K_INPUT_LOGITS)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->bias: expected NULL with pre-routed input (the bias only affects "
                      "selection from logits)");
    k->bias = moe_tensor_data(a->bias);
    k->bias_dtype = moe_tensor_kdtype(a->bias);
  }
  return MOE_STATUS_SUCCESS;
}

static moe_status_t check_routing_args(const moe_routing_args *a) {
  if (!a) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args: expected a non-NULL pointer");
  if (a->version < 1 || a->version > MOE_ROUTING_ARGS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "args->version: expected 1..%d, given %u",
                    MOE_ROUTING_ARGS_VERSION, a->version);
  if (a->enable_pdl != 0 && a->enable_pdl != 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->enable_pdl: expected 0 or 1, given %d",
                    a->enable_pdl);
  for (int i = 0; i < 6; ++i)
    if (a->reserved[i])
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->reserved[%d]: expected 0, given %d", i,
                      a->reserved[i]);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_routing_prepare(moe_runner *r, const moe_problem *p,
                                         const moe_routing_args *a, int32_t config, void *workspace,
                                         size_t workspace_bytes, moe_plan *plan,
                                         moe_cuda_stream_t stream) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!plan) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "plan: expected a non-NULL pointer");
  plan->state = 0; /* a failed prepare leaves no usable plan behind */
  moe_status_t s = moe_check_problem(p, "problem");
  if (s) return s;
  if ((s = check_routing_args(a))) return s;
  if ((s = moe_check_config(r, p, config, "config"))) return s;
  moe_k_routing k;
  memset(&k, 0, sizeof k);
  if ((s = check_method(p, a, &k.n_group, &k.topk_group))) return s;
  if ((s = check_inputs(r, p, a, &k))) return s;
  const moe_config_row *row = moe_catalogue_row(r, config);
  moe_layout l;
  if ((s = moe_compute_layout(r, p, row->tile, row->cluster, &l))) return s;
  if ((s = moe_check_workspace(workspace, workspace_bytes, l.total_bytes))) return s;

  k.method = a->method;
  k.num_tokens = (int32_t)p->num_tokens;
  k.num_experts = p->num_experts;
  k.top_k = p->top_k;
  k.routed_scaling_factor = a->routed_scaling_factor;
  k.local_expert_offset = p->local_expert_offset;
  k.local_num_experts = moe_local_experts(p);
  k.tile = row->tile;
  k.cluster_size = row->cluster;
  k.enable_pdl = a->enable_pdl;
  moe_k_plan kp;
  moe_layout_plan(&l, workspace, &kp);
  /* From here the workspace is overwritten: plans recorded for it (or memory overlapping it)
   * are stale even if the backend fails part way. */
  const uint32_t stamp =
      moe_registry_begin(r->backend, moe_registry_device(r), workspace, workspace_bytes);
  if ((s = moe_backend_routing(r, &k, &kp, stream))) return s;

  moe_plan out;
  memset(&out, 0, sizeof out);
  out.version = MOE_PLAN_VERSION;
  out.config = config;
  out.tile = row->tile;
  out.cluster_size = row->cluster;
  out.num_tokens = p->num_tokens;
  out.num_experts = p->num_experts;
  out.top_k = p->top_k;
  out.local_expert_offset = p->local_expert_offset;
  out.local_num_experts = moe_local_experts(p);
  out.hidden_size = p->hidden_size;
  out.intermediate_size = p->intermediate_size;
  out.max_padded_rows = l.max_rows;
  out.max_ctas = l.max_ctas;
  out.workspace = (uint64_t)(uintptr_t)workspace;
  out.workspace_bytes = (uint64_t)workspace_bytes;
  out.runner = (uint64_t)(uintptr_t)r;
  out.backend = r->backend;
  out.state = stamp;
  moe_registry_commit(&out, moe_registry_device(r));
  *plan = out;
  return MOE_STATUS_SUCCESS;
}
