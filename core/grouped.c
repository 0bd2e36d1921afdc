/*
 * grouped.c - moe_runner_run_grouped: GEMM1 + GEMM2 on tokens a dispatcher already grouped by
 * local expert (MOE_LAYOUT_CONTIGUOUS / MOE_LAYOUT_MASKED; docs/ep.md), and its workspace.
 *
 * The grouped workspace holds only what the GEMMs read: with N = problem->num_tokens and the
 * config's tile and cluster size C,
 *   max_cgas = min(E_l, N) + floor((N - min(E_l, N)) / tile)   (moe_max_cgas(N, 1, E_l, tile))
 *   permuted_to_token [max_cgas * tile] int32, cta_to_batch and cta_to_mn_limit
 *   [max_cgas * C] int32, 3 int32 scalars, row_to_permuted [N] int32 (the inverse row map:
 *   the plan's expanded_to_permuted with K = 1), GEMM1 output [rows, I] bf16, GEMM2 output
 *   [rows, H] bf16, each region 256-byte aligned.
 * FP8 runners: as in moe_runner_run's layout, the GEMM1 output region holds e4m3 [rows, I]
 * (+ fp32 scales at moe_k_fp8_scales_offset, BLOCK), and the GEMM2 output region, unused until
 * GEMM2, is act_scratch: the e4m3 token rows GEMM1 reads (CPU: bf16 hidden states quantized,
 * [N, H]; CUDA: hidden quantized [N, H] for the gathering GEMM1, or the permuted copy [rows, H]
 * of the permute kernels), + fp32 scales (BLOCK). Both fit as in core/cpu/quant_gemm.c and
 * kernels/gemm/launch.cu, since rows >= N and rows >= tile >= 8 when N > 0, so the layout does
 * not depend on the precision. row_to_permuted is written by the CUDA plan kernel only where
 * GEMM1 reads a permuted copy (the permute kernels' map; FP8 runners); the CPU backend does not
 * use it.
 * The plan tables are built from the counts of each call: CPU from the host counts
 * (core/cpu/grouped.c), after checking them; CUDA by a device kernel from the device counts
 * (kernels/routing/grouped_plan.cu: no host sync, capturable), which clamps invalid counts and
 * reports them in args->count_status. The GEMM grid is sized by N (max_ctas), never by the
 * counts.
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

_Static_assert(MOE_GROUPED_COUNTS_NEGATIVE == MOE_K_GROUPED_COUNT_NEGATIVE &&
                   MOE_GROUPED_COUNTS_OVER_CAPACITY == MOE_K_GROUPED_COUNT_OVER_CAPACITY &&
                   MOE_GROUPED_COUNTS_SUM_OVER_ROWS == MOE_K_GROUPED_SUM_OVER_ROWS,
               "public and kernel count-status bits agree");

typedef struct grouped_layout {
  int64_t max_rows, max_ctas;
  int64_t off_permuted_to_token, off_cta_to_batch, off_cta_to_mn_limit, off_scalars,
      off_row_to_permuted, off_gemm1_out, off_gemm2_out, total_bytes;
} grouped_layout;

static moe_status_t grouped_layout_of(const moe_problem *p, const moe_config_row *row,
                                      grouped_layout *l) {
  const int64_t N = p->num_tokens, El = moe_local_experts(p), H = p->hidden_size,
                I = p->intermediate_size;
  const int64_t cgas = moe_max_cgas(N, 1, El, row->tile);
  l->max_rows = cgas * row->tile;
  l->max_ctas = cgas * row->cluster;
  if (l->max_rows > INT32_MAX || l->max_ctas > INT32_MAX)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem: padded row capacity %lld (max_cgas %lld x tile %d) of the grouped "
                    "plan exceeds int32; reduce num_tokens",
                    (long long)l->max_rows, (long long)cgas, row->tile);
  const int64_t wide = H > I ? H : I;
  if (l->max_rows > (INT64_MAX / 8) / wide)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem: the GEMM buffers of %lld padded rows x %lld elements exceed the "
                    "addressable range; reduce num_tokens",
                    (long long)l->max_rows, (long long)wide);
  int64_t at = 0;
  l->off_permuted_to_token = moe_ws_region(&at, 4 * l->max_rows);
  l->off_cta_to_batch = moe_ws_region(&at, 4 * l->max_ctas);
  l->off_cta_to_mn_limit = moe_ws_region(&at, 4 * l->max_ctas);
  l->off_scalars = moe_ws_region(&at, 4 * 3);
  l->off_row_to_permuted = moe_ws_region(&at, 4 * N); /* N <= max_rows <= INT32_MAX (above) */
  l->off_gemm1_out = moe_ws_region(&at, 2 * l->max_rows * I);
  l->off_gemm2_out = moe_ws_region(&at, 2 * l->max_rows * H);
  l->total_bytes = at;
  if (!moe_ws_fits(at))
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem: workspace exceeds size_t (%lld bytes; -1: past int64)",
                    (long long)at);
  return MOE_STATUS_SUCCESS;
}

/* Runner, problem and config; fills the layout. */
static moe_status_t grouped_setup(const moe_runner *r, const moe_problem *p, int32_t config,
                                  const moe_config_row **row, grouped_layout *l) {
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  moe_status_t s;
  if ((s = moe_check_problem(p, "problem"))) return s;
  if ((s = moe_check_config(r, p, config, "config"))) return s;
  *row = moe_catalogue_row(r, config);
  return grouped_layout_of(p, *row, l);
}

MOE_API moe_status_t moe_grouped_args_init(moe_grouped_args *args, uint32_t version) {
  moe_clear_error();
  if (!args) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args: expected a non-NULL pointer");
  if (version < 1 || version > MOE_GROUPED_ARGS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "args version: expected 1..%u, given %u",
                    (unsigned)MOE_GROUPED_ARGS_VERSION, version);
  memset(args, 0, moe_grouped_args_size(version)); /* a version-1 struct is shorter */
  args->version = version;
  args->layout = MOE_LAYOUT_CONTIGUOUS;
  args->enable_pdl = 1;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_get_grouped_workspace_size(const moe_runner *r,
                                                           const moe_problem *p, int32_t config,
                                                           size_t *bytes) {
  moe_clear_error();
  if (!bytes) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "bytes: expected a non-NULL pointer");
  *bytes = 0;
  const moe_config_row *row = NULL;
  grouped_layout l = {0};
  moe_status_t s = grouped_setup(r, p, config, &row, &l);
  if (s) return s;
  *bytes = (size_t)l.total_bytes;
  return MOE_STATUS_SUCCESS;
}

/* Everything but the counts' values; fills the tensors of @p k. */
static moe_status_t check_grouped_args(const moe_runner *r, const moe_problem *p,
                                       const moe_grouped_args *a, moe_k_run *k) {
  if (!a) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args: expected a non-NULL pointer");
  if (a->version < 1 || a->version > MOE_GROUPED_ARGS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "args->version: expected 1..%d, given %u",
                    MOE_GROUPED_ARGS_VERSION, a->version);
  if (a->layout != MOE_LAYOUT_CONTIGUOUS && a->layout != MOE_LAYOUT_MASKED)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->layout: expected MOE_LAYOUT_CONTIGUOUS (%d) or MOE_LAYOUT_MASKED (%d), "
                    "given %d",
                    MOE_LAYOUT_CONTIGUOUS, MOE_LAYOUT_MASKED, a->layout);
  if (a->enable_pdl != 0 && a->enable_pdl != 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->enable_pdl: expected 0 or 1, given %d",
                    a->enable_pdl);
  for (int i = 0; i < 7; ++i)
    if (a->reserved[i])
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->reserved[%d]: expected 0, given %d", i,
                      a->reserved[i]);
  const int64_t N = p->num_tokens, H = p->hidden_size;
  const int64_t El = moe_local_experts(p);
  if (a->layout == MOE_LAYOUT_CONTIGUOUS && a->capacity != 0)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->capacity: expected 0 with MOE_LAYOUT_CONTIGUOUS, given %lld",
                    (long long)a->capacity);
  if (a->layout == MOE_LAYOUT_MASKED &&
      (a->capacity < 0 || a->capacity > INT32_MAX || a->capacity * El != N))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->capacity: expected problem->num_tokens / local experts = %lld / %lld "
                    "with MOE_LAYOUT_MASKED (num_tokens = E_l * capacity), given %lld",
                    (long long)N, (long long)El, (long long)a->capacity);
  const int64_t contig[2] = {N, H}, masked[3] = {El, a->capacity, H}, el[1] = {El}, one[1] = {1};
  const int32_t hd = a->layout == MOE_LAYOUT_MASKED ? 3 : 2;
  const int64_t *hs = a->layout == MOE_LAYOUT_MASKED ? masked : contig;
  const moe_expert_tensors et = {a->gemm1_weights,    a->gemm2_weights, a->gemm1_bias,
                                 a->gemm2_bias,       a->gemm1_alpha,   a->gemm1_beta,
                                 a->gemm1_clamp_limit};
  const int v3 = a->version >= 3;
  const moe_act_inputs in = {a->hidden_states,
                             v3 ? a->hidden_states_scale : NULL,
                             v3 ? a->gemm1_input_scale : NULL,
                             v3 ? a->gemm2_input_scale : NULL,
                             hd,
                             hs,
                             N,
                             v3 ? NULL
                                : " (grouped args versions 1 and 2 have no such field: use "
                                  "version 3)"};
  moe_status_t s;
  if ((s = moe_check_act_precision(r, p, &in, k)) ||
      (s = moe_check_tensor(r, a->output, "args->output", 0, MOE_T_BF16, hd, hs)) ||
      (s = moe_check_tensor(r, a->expert_counts, "args->expert_counts", 0, MOE_T_I32, 1, el)) ||
      (a->version >= 2 &&
       (s = moe_check_tensor(r, a->count_status, "args->count_status", 1, MOE_T_I32, 1, one))) ||
      (s = moe_check_expert_tensors(r, p, &et, k)) ||
      (s = moe_check_tensor_vector_aligned(r, a->hidden_states, "args->hidden_states")) ||
      (s = moe_check_tensor_vector_aligned(r, a->output, "args->output")))
    return s;
  k->output = (uint16_t *)moe_tensor_data(a->output);
  k->enable_pdl = a->enable_pdl;
  return MOE_STATUS_SUCCESS;
}

/* Host counts: each >= 0; MASKED: <= capacity; CONTIGUOUS: sum <= N. */
static moe_status_t check_counts(const int32_t *c, int64_t El, int32_t layout, int64_t capacity,
                                 int64_t N) {
  int64_t sum = 0;
  for (int64_t e = 0; e < El; ++e) {
    if (c[e] < 0)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->expert_counts[%lld]: expected >= 0, given %d", (long long)e, c[e]);
    if (layout == MOE_LAYOUT_MASKED && c[e] > capacity)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "args->expert_counts[%lld]: expected <= capacity %lld, given %d",
                      (long long)e, (long long)capacity, c[e]);
    sum += c[e];
  }
  if (layout == MOE_LAYOUT_CONTIGUOUS && sum > N)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->expert_counts: expected a sum <= problem->num_tokens %lld (rows of "
                    "hidden_states), given a sum of %lld",
                    (long long)N, (long long)sum);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_run_grouped(moe_runner *r, const moe_problem *p,
                                            const moe_grouped_args *a, int32_t config,
                                            void *workspace, size_t workspace_bytes,
                                            moe_cuda_stream_t stream) {
  moe_clear_error();
  const moe_config_row *row = NULL;
  grouped_layout l = {0};
  moe_status_t s = grouped_setup(r, p, config, &row, &l);
  if (s) return s;
  if (r->opts.scaling_mode == MOE_SCALING_MX)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "runner: moe_runner_run_grouped supports BF16 and FP8 runners only for now "
                    "(given MXFP4 weights, activation_dtype %d)",
                    r->opts.activation_dtype);
  const int64_t El = moe_local_experts(p);
  if (r->backend != MOE_BACKEND_CPU && El > MOE_K_GROUPED_MAX_LOCAL_EXPERTS)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem->local_num_experts: expected <= %d for moe_runner_run_grouped on the "
                    "CUDA backend, given %lld",
                    MOE_K_GROUPED_MAX_LOCAL_EXPERTS, (long long)El);
  if (r->backend == MOE_BACKEND_CPU && stream)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "stream: expected NULL on the CPU backend, given %p", (void *)stream);
  if ((s = moe_check_workspace(workspace, workspace_bytes, l.total_bytes))) return s;
  moe_k_run k;
  memset(&k, 0, sizeof k);
  if ((s = check_grouped_args(r, p, a, &k))) return s;
  const int32_t *counts = (const int32_t *)moe_tensor_data(a->expert_counts);
  int32_t *status =
      a->version >= 2 && a->count_status ? (int32_t *)moe_tensor_data(a->count_status) : NULL;
  if (r->backend == MOE_BACKEND_CPU &&
      (s = check_counts(counts, El, a->layout, a->capacity, p->num_tokens)))
    return s;

  char *ws = (char *)workspace;
  moe_k_plan kp;
  memset(&kp, 0, sizeof kp);
  kp.permuted_to_token = (int32_t *)(ws + l.off_permuted_to_token);
  kp.cta_to_batch = (int32_t *)(ws + l.off_cta_to_batch);
  kp.cta_to_mn_limit = (int32_t *)(ws + l.off_cta_to_mn_limit);
  kp.num_ctas = (int32_t *)(ws + l.off_scalars);
  kp.permuted_size = (int32_t *)(ws + l.off_scalars + 4);
  kp.gemm_tile_counter = (int32_t *)(ws + l.off_scalars + 8);
  kp.expanded_to_permuted = (int32_t *)(ws + l.off_row_to_permuted); /* K = 1: input rows */
  kp.max_rows = l.max_rows;
  kp.max_ctas = l.max_ctas;
  k.gemm1_out = (uint16_t *)(ws + l.off_gemm1_out);
  k.gemm2_out = (uint16_t *)(ws + l.off_gemm2_out);
  k.act_scratch = ws + l.off_gemm2_out; /* as moe_runner_run: read by GEMM1 only */
  k.num_tokens = p->num_tokens;
  k.hidden_size = p->hidden_size;
  k.intermediate_size = p->intermediate_size;
  k.top_k = 1;
  k.local_num_experts = (int32_t)El;
  k.activation = r->opts.activation;
  k.catalogue = moe_catalogue_of(r)->key;
  k.config = config;
  k.tile = row->tile;
  k.cluster_size = row->cluster;
  k.launch_ctas = l.max_ctas;
  if (a->layout == MOE_LAYOUT_MASKED) {
    /* Each expert holds at most `capacity` rows (the CUDA plan kernel clamps larger counts), so
     * at most ceil(capacity / tile) clusters: a tighter launch than max_cgas(E_l * capacity)
     * (nearly half of it where capacity is one tile), and every CTA past the device's count
     * costs a launch, its barrier setup and a memory latency before it exits. */
    const int64_t masked_ctas = El * ((a->capacity + row->tile - 1) / row->tile) * row->cluster;
    if (masked_ctas < k.launch_ctas) k.launch_ctas = masked_ctas;
  }
  k.do_finalize = 0;
  k.num_sms = r->num_sms;
  const moe_k_grouped g = {counts, a->layout == MOE_LAYOUT_MASKED, a->capacity, status};
  return moe_backend_run_grouped(r, &k, &kp, &g, stream);
}
