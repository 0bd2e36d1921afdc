/*
 * layout.c - problem validation and the plan / workspace arithmetic, all in 64-bit with
 * explicit int32 range checks (the device tables are int32; reference §9.1).
 */
#include <limits.h>
#include <stdio.h>

#include "internal.h"

int32_t moe_local_experts(const moe_problem *p) {
  return p->local_num_experts == 0 ? p->num_experts : p->local_num_experts;
}

moe_status_t moe_check_problem(const moe_problem *p, const char *n) {
  if (!p) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected a non-NULL pointer", n);
  if (p->version < 1 || p->version > MOE_PROBLEM_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "%s->version: expected 1..%d, given %u", n,
                    MOE_PROBLEM_VERSION, p->version);
  if (p->num_experts < 1 || p->num_experts > 65535)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s->num_experts: expected 1..65535, given %d", n,
                    p->num_experts);
  if (p->num_tokens < 0)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s->num_tokens: expected >= 0, given %lld", n,
                    (long long)p->num_tokens);
  if (p->top_k < 1 || p->top_k > p->num_experts || p->top_k > MOE_MAX_TOP_K)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s->top_k: expected 1..min(num_experts=%d, %d), given %d", n, p->num_experts,
                    MOE_MAX_TOP_K, p->top_k);
  int32_t el = moe_local_experts(p);
  if (el < 1 || el > p->num_experts)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s->local_num_experts: expected 0 (= num_experts) or 1..%d, given %d", n,
                    p->num_experts, p->local_num_experts);
  if (p->local_expert_offset < 0 || (int64_t)p->local_expert_offset + el > p->num_experts)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s->local_expert_offset: expected 0..%d so that offset + local_num_experts"
                    " <= num_experts, given %d",
                    n, p->num_experts - el, p->local_expert_offset);
  if (p->hidden_size < 1 || p->hidden_size > INT32_MAX)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s->hidden_size: expected 1..%d, given %lld", n,
                    INT32_MAX, (long long)p->hidden_size);
  if (p->intermediate_size < 1 || p->intermediate_size > INT32_MAX)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s->intermediate_size: expected 1..%d, given %lld", n, INT32_MAX,
                    (long long)p->intermediate_size);
  if (p->reserved0 || p->reserved[0] || p->reserved[1] || p->reserved[2] || p->reserved[3])
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s->reserved: expected zeros", n);
  if (p->num_tokens > INT32_MAX / p->top_k) /* the product itself may overflow int64 */
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "%s: num_tokens * top_k (%lld x %d) exceeds the int32 range %d of the routing "
                    "tables",
                    n, (long long)p->num_tokens, p->top_k, INT32_MAX);
  return MOE_STATUS_SUCCESS;
}

int64_t moe_max_cgas(int64_t num_tokens, int64_t top_k, int64_t num_experts, int64_t tile) {
  int64_t n = num_tokens * top_k;
  int64_t filled = n < num_experts ? n : num_experts;
  return filled + (n - filled) / tile;
}

int64_t moe_ws_region(int64_t *at, int64_t bytes) {
  const int64_t off = *at;
  if (off < 0 || bytes < 0 || off > INT64_MAX - bytes - MOE_WORKSPACE_ALIGN) {
    *at = -1;
    return 0;
  }
  *at = (off + bytes + MOE_WORKSPACE_ALIGN - 1) / MOE_WORKSPACE_ALIGN * MOE_WORKSPACE_ALIGN;
  return off;
}

int moe_ws_fits(int64_t total) {
  return total >= 0 && (uint64_t)total <= (uint64_t)SIZE_MAX;
}

/* The layout, or 0 with the reason in @p why (no error recorded: config validity asks this
 * for every config of the catalogue). The problem is valid (moe_check_problem). */
static int layout_try(const moe_runner *r, const moe_problem *p, int32_t tile, int32_t cluster,
                      moe_layout *l, char *why, size_t why_len) {
  const int64_t T = p->num_tokens, K = p->top_k, E = p->num_experts, H = p->hidden_size,
                I = p->intermediate_size;
  const int64_t tk = T * K; /* fits: checked by moe_check_problem */
  const int64_t cgas = moe_max_cgas(T, K, E, tile);
  l->max_rows = cgas * tile;
  l->max_ctas = cgas * cluster;
  l->launch_ctas = moe_max_cgas(T, K, moe_local_experts(p), tile) * cluster;
  if (l->max_rows > INT32_MAX || l->max_ctas > INT32_MAX) {
    snprintf(why, why_len,
             "padded row capacity %lld (= max_cgas %lld x tile %d) exceeds the int32 range of "
             "the plan tables; reduce num_tokens",
             (long long)l->max_rows, (long long)cgas, tile);
    return 0;
  }
  /* Row offsets (row x H or I elements) are 64-bit in every kernel and in the CPU backend, so
   * beyond the int32 row tables only the workspace size limits T: the buffers below must stay
   * far inside int64 (and then size_t). */
  const int64_t wide = H > I ? H : I;
  if (l->max_rows > (INT64_MAX / 8) / wide) {
    snprintf(why, why_len,
             "the GEMM buffers of %lld padded rows x %lld elements exceed the addressable "
             "range; reduce num_tokens",
             (long long)l->max_rows, (long long)wide);
    return 0;
  }
  l->scratch_bytes = r->backend == MOE_BACKEND_CUDA ? moe_gpu_scratch_bytes(T, (int32_t)E) : 0;
  int64_t at = 0;
  l->off_topk_ids = moe_ws_region(&at, 4 * tk);
  l->off_expert_weights = moe_ws_region(&at, 2 * tk);
  l->off_expanded_to_permuted = moe_ws_region(&at, 4 * tk);
  l->off_permuted_to_token = moe_ws_region(&at, 4 * l->max_rows);
  l->off_permuted_to_expanded = moe_ws_region(&at, 4 * l->max_rows);
  l->off_cta_to_batch = moe_ws_region(&at, 4 * l->max_ctas);
  l->off_cta_to_mn_limit = moe_ws_region(&at, 4 * l->max_ctas);
  l->off_scalars = moe_ws_region(&at, 4 * 3); /* num_ctas, permuted_size, GEMM2 tile counter */
  l->off_expert_counts = moe_ws_region(&at, 4 * E);
  l->off_scratch = moe_ws_region(&at, l->scratch_bytes);
  l->off_gemm1_out = moe_ws_region(&at, 2 * l->max_rows * I);
  l->off_gemm2_out = moe_ws_region(&at, 2 * l->max_rows * H);
  l->total_bytes = at;
  if (!moe_ws_fits(at)) {
    snprintf(why, why_len, "workspace exceeds size_t (%lld bytes; -1: past int64)", (long long)at);
    return 0;
  }
  return 1;
}

const char *moe_layout_unfit(const moe_runner *r, const moe_problem *p, int32_t tile,
                             int32_t cluster, char *why, size_t why_len) {
  moe_layout l;
  return layout_try(r, p, tile, cluster, &l, why, why_len) ? NULL : why;
}

moe_status_t moe_compute_layout(const moe_runner *r, const moe_problem *p, int32_t tile,
                                int32_t cluster, moe_layout *l) {
  char why[256];
  if (!layout_try(r, p, tile, cluster, l, why, sizeof why))
    return moe_fail(MOE_STATUS_NOT_SUPPORTED, "problem: %s", why);
  return MOE_STATUS_SUCCESS;
}

void moe_layout_plan(const moe_layout *l, void *workspace, moe_k_plan *plan) {
  char *b = (char *)workspace;
  plan->topk_ids = (int32_t *)(b + l->off_topk_ids);
  plan->expert_weights = (uint16_t *)(b + l->off_expert_weights);
  plan->expanded_to_permuted = (int32_t *)(b + l->off_expanded_to_permuted);
  plan->permuted_to_token = (int32_t *)(b + l->off_permuted_to_token);
  plan->permuted_to_expanded = (int32_t *)(b + l->off_permuted_to_expanded);
  plan->cta_to_batch = (int32_t *)(b + l->off_cta_to_batch);
  plan->cta_to_mn_limit = (int32_t *)(b + l->off_cta_to_mn_limit);
  plan->num_ctas = (int32_t *)(b + l->off_scalars);
  plan->permuted_size = (int32_t *)(b + l->off_scalars + 4);
  plan->gemm_tile_counter = (int32_t *)(b + l->off_scalars + 8);
  plan->expert_counts = (int32_t *)(b + l->off_expert_counts);
  plan->scratch = l->scratch_bytes ? (void *)(b + l->off_scratch) : NULL;
  plan->scratch_bytes = l->scratch_bytes;
  plan->max_rows = l->max_rows;
  plan->max_ctas = l->max_ctas;
}

moe_status_t moe_check_workspace(const void *ws, size_t bytes, int64_t required) {
  if (!ws) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a non-NULL pointer");
  if (((uintptr_t)ws) % MOE_WORKSPACE_ALIGN)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "workspace: expected %d-byte alignment, given address %p", MOE_WORKSPACE_ALIGN,
                    ws);
  if ((uint64_t)bytes < (uint64_t)required)
    return moe_fail(MOE_STATUS_INSUFFICIENT_WORKSPACE,
                    "workspace_bytes: expected at least %lld, given %zu", (long long)required,
                    bytes);
  return MOE_STATUS_SUCCESS;
}
