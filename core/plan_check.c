/*
 * plan_check.c - validation of a caller-owned moe_plan before anything is derived from it.
 *
 * The plan is plain memory the caller can edit, so run and the plan readers (get_view, read,
 * read_count) trust none of it: every field they use is checked against the runner's catalogue
 * and the workspace, the table layout is recomputed from the checked fields, and the
 * descriptor must be the one prepare recorded last for its workspace (plan_registry.c: a stale
 * or edited plan is refused). Every failure is INVALID_ARGUMENT (VERSION_MISMATCH for the
 * version) naming the plan field.
 */
#include "internal.h"

/* The problem a plan describes, checked as a problem would be (messages name "plan->..."). */
static moe_status_t plan_problem(const moe_plan *plan, moe_problem *p) {
  moe_problem q = {0};
  q.version = MOE_PROBLEM_VERSION;
  q.num_tokens = plan->num_tokens;
  q.num_experts = plan->num_experts;
  q.top_k = plan->top_k;
  q.local_expert_offset = plan->local_expert_offset;
  q.local_num_experts = plan->local_num_experts;
  q.hidden_size = plan->hidden_size;
  q.intermediate_size = plan->intermediate_size;
  *p = q;
  if (plan->local_num_experts == 0) /* prepare stores E_l resolved, never the 0 default */
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan->local_num_experts: expected 1..%d (as prepare stores it), given 0",
                    plan->num_experts);
  /* A plan field out of range is an argument error whatever status the problem check uses. */
  return moe_check_problem(&q, "plan") ? MOE_STATUS_INVALID_ARGUMENT : MOE_STATUS_SUCCESS;
}

moe_status_t moe_check_plan(const moe_runner *r, const moe_plan *plan, const void *workspace,
                            size_t workspace_bytes, moe_layout *layout) {
  if (!plan) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "plan: expected a non-NULL pointer");
  if (plan->version < 1 || plan->version > MOE_PLAN_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "plan->version: expected 1..%d, given %u",
                    MOE_PLAN_VERSION, plan->version);
  if (plan->state == 0)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan: not prepared (call moe_routing_prepare first; a failed prepare "
                    "invalidates it)");
  if (plan->runner != (uint64_t)(uintptr_t)r)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "plan: prepared by another runner");
  if (plan->backend != r->backend)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan->backend: expected %d (the runner's), given %d", r->backend,
                    plan->backend);
  if (plan->workspace != (uint64_t)(uintptr_t)workspace ||
      plan->workspace_bytes != (uint64_t)workspace_bytes)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "workspace: expected the workspace the plan was prepared in (%p, %llu "
                    "bytes), given (%p, %zu bytes)",
                    (void *)(uintptr_t)plan->workspace, (unsigned long long)plan->workspace_bytes,
                    workspace, workspace_bytes);
  const moe_config_row *row = moe_catalogue_row(r, plan->config);
  if (!row)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "plan->config: expected 0..%d, given %d",
                    moe_catalogue_size(r) - 1, plan->config);
  if (plan->tile != row->tile || plan->cluster_size != row->cluster)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan->tile / plan->cluster_size: expected %d / %d (config %d), given %d / %d",
                    row->tile, row->cluster, plan->config, plan->tile, plan->cluster_size);
  moe_problem p;
  moe_status_t s = plan_problem(plan, &p);
  if (s) return s;
  if (moe_check_config(r, &p, plan->config, "plan->config"))
    return MOE_STATUS_INVALID_ARGUMENT; /* message set: the config does not fit the problem */
  if (moe_compute_layout(r, &p, row->tile, row->cluster, layout))
    return MOE_STATUS_INVALID_ARGUMENT; /* message set: tables past int32 */
  if (plan->max_padded_rows != layout->max_rows || plan->max_ctas != layout->max_ctas)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan->max_padded_rows / plan->max_ctas: expected %lld / %lld for the "
                    "plan's problem and config, given %lld / %lld",
                    (long long)layout->max_rows, (long long)layout->max_ctas,
                    (long long)plan->max_padded_rows, (long long)plan->max_ctas);
  if ((uint64_t)layout->total_bytes > (uint64_t)workspace_bytes)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan: its problem needs %lld workspace bytes, its workspace has %zu "
                    "(plan->num_tokens %lld exceeds what the workspace serves)",
                    (long long)layout->total_bytes, workspace_bytes, (long long)plan->num_tokens);
  return moe_registry_check(plan, r->backend == MOE_BACKEND_CPU ? 0 : r->device_id);
}
