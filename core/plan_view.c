/*
 * plan_view.c - read-only access to a prepared plan inside a workspace.
 */
#include <string.h>

#include "internal.h"

static moe_status_t open_plan(const moe_runner *r, const moe_plan *plan, const void *ws,
                              size_t bytes, moe_k_plan *kp) {
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  moe_layout l;
  moe_status_t s = moe_check_plan(r, plan, ws, bytes, &l);
  if (s) return s;
  moe_layout_plan(&l, (void *)ws, kp);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_plan_get_view(const moe_runner *r, const moe_plan *plan,
                                       const void *workspace, size_t workspace_bytes,
                                       moe_plan_view *view) {
  moe_clear_error();
  if (!view) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "view: expected a non-NULL pointer");
  moe_k_plan kp;
  moe_status_t s = open_plan(r, plan, workspace, workspace_bytes, &kp);
  if (s) return s;
  memset(view, 0, sizeof *view);
  view->device_type = r->backend == MOE_BACKEND_CPU ? kDLCPU : kDLCUDA;
  view->device_id = r->backend == MOE_BACKEND_CPU ? 0 : r->device_id;
  view->num_tokens = plan->num_tokens;
  view->top_k = plan->top_k;
  view->num_experts = plan->num_experts;
  view->tile = plan->tile;
  view->cluster_size = plan->cluster_size;
  view->max_padded_rows = plan->max_padded_rows;
  view->max_ctas = plan->max_ctas;
  view->topk_ids = kp.topk_ids;
  view->expert_weights = kp.expert_weights;
  view->expanded_to_permuted = kp.expanded_to_permuted;
  view->permuted_to_token = kp.permuted_to_token;
  view->permuted_to_expanded = kp.permuted_to_expanded;
  view->cta_to_batch = kp.cta_to_batch;
  view->cta_to_mn_limit = kp.cta_to_mn_limit;
  view->num_ctas = kp.num_ctas;
  view->permuted_size = kp.permuted_size;
  view->expert_counts = kp.expert_counts;
  return MOE_STATUS_SUCCESS;
}

/* Where a table lives, its element size, and its element count for this plan. */
static moe_status_t table_info(const moe_runner *r, const moe_plan *plan, const moe_k_plan *kp,
                               int32_t table, const void **src, size_t *elem, int64_t *count,
                               moe_cuda_stream_t stream) {
  const int64_t tk = plan->num_tokens * plan->top_k; /* fits int32: moe_check_plan */
  *elem = 4;
  switch (table) {
    case MOE_PLAN_TOPK_IDS:
      *src = kp->topk_ids;
      *count = tk;
      return MOE_STATUS_SUCCESS;
    case MOE_PLAN_EXPERT_WEIGHTS:
      *src = kp->expert_weights;
      *elem = 2;
      *count = tk;
      return MOE_STATUS_SUCCESS;
    case MOE_PLAN_EXPANDED_TO_PERMUTED:
      *src = kp->expanded_to_permuted;
      *count = tk;
      return MOE_STATUS_SUCCESS;
    case MOE_PLAN_NUM_CTAS:
      *src = kp->num_ctas;
      *count = 1;
      return MOE_STATUS_SUCCESS;
    case MOE_PLAN_PERMUTED_SIZE:
      *src = kp->permuted_size;
      *count = 1;
      return MOE_STATUS_SUCCESS;
    case MOE_PLAN_EXPERT_COUNTS:
      *src = kp->expert_counts;
      *count = plan->num_experts;
      return MOE_STATUS_SUCCESS;
    case MOE_PLAN_PERMUTED_TO_TOKEN:
    case MOE_PLAN_PERMUTED_TO_EXPANDED:
    case MOE_PLAN_CTA_TO_BATCH:
    case MOE_PLAN_CTA_TO_MN_LIMIT: {
      int32_t sizes[2];
      moe_status_t s = moe_backend_read(r, sizes, kp->num_ctas, sizeof sizes, stream);
      if (s) return s;
      int permuted = table == MOE_PLAN_PERMUTED_TO_TOKEN || table == MOE_PLAN_PERMUTED_TO_EXPANDED;
      int64_t n = permuted ? sizes[1] : sizes[0];
      int64_t cap = permuted ? plan->max_padded_rows : plan->max_ctas;
      if (n < 0 || n > cap) /* the plan is current (checked): its tables were overwritten */
        return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                        "workspace: the plan's stored %s %lld is outside 0..%lld (workspace "
                        "memory overwritten after prepare)",
                        permuted ? "permuted_size" : "num_ctas", (long long)n, (long long)cap);
      *src = table == MOE_PLAN_PERMUTED_TO_TOKEN      ? (const void *)kp->permuted_to_token
             : table == MOE_PLAN_PERMUTED_TO_EXPANDED ? (const void *)kp->permuted_to_expanded
             : table == MOE_PLAN_CTA_TO_BATCH         ? (const void *)kp->cta_to_batch
                                                      : (const void *)kp->cta_to_mn_limit;
      *count = n;
      return MOE_STATUS_SUCCESS;
    }
    default:
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "table: expected 0..%d (MOE_PLAN_*), given %d",
                      MOE_PLAN_EXPERT_COUNTS, table);
  }
}

MOE_API moe_status_t moe_plan_read_count(const moe_runner *r, const moe_plan *plan,
                                         const void *workspace, size_t workspace_bytes,
                                         int32_t table, int64_t *count, moe_cuda_stream_t stream) {
  moe_clear_error();
  if (!count) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "count: expected a non-NULL pointer");
  moe_k_plan kp;
  moe_status_t s = open_plan(r, plan, workspace, workspace_bytes, &kp);
  if (s) return s;
  const void *src = NULL;
  size_t elem = 0;
  return table_info(r, plan, &kp, table, &src, &elem, count, stream);
}

MOE_API moe_status_t moe_plan_read(const moe_runner *r, const moe_plan *plan, const void *workspace,
                                   size_t workspace_bytes, int32_t table, void *dst,
                                   size_t dst_bytes, moe_cuda_stream_t stream) {
  moe_clear_error();
  moe_k_plan kp;
  moe_status_t s = open_plan(r, plan, workspace, workspace_bytes, &kp);
  if (s) return s;
  const void *src = NULL;
  size_t elem = 0;
  int64_t count = 0;
  if ((s = table_info(r, plan, &kp, table, &src, &elem, &count, stream))) return s;
  size_t need = (size_t)count * elem;
  if (need && !dst)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "dst: expected a non-NULL pointer");
  if (dst_bytes < need)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "dst_bytes: expected at least %zu, given %zu",
                    need, dst_bytes);
  return moe_backend_read(r, dst, src, need, stream);
}
