/*
 * moe-grouped-bench - the grouped path (moe_runner_run_grouped, docs/ep.md) against the plain
 * forward's GEMMs on the same rows, in the same run (issue 20: "no slower than the plain forward
 * on the same rows"), and the cost of the SM budget.
 *
 * Per BF16 preset and T: route T random tokens once (the preset's method), read the plan's
 * top-K ids, expanded -> permuted map and expert counts (moe_plan_read), and build from the
 * hidden states the CONTIGUOUS layout (the rows grouped by local expert, in the plan's order)
 * and the MASKED layout (capacity = the largest count rounded up to 8). Then, all with the
 * same config (the plain problem's default):
 *   forward        routing + moe_runner_run with finalize (the whole forward, for reference)
 *   run            (a) moe_runner_run with do_finalize = 0 into permuted_output
 *   contiguous     (b) moe_runner_run_grouped, CONTIGUOUS
 *   masked         (c) moe_runner_run_grouped, MASKED
 *   contiguous_sm  (d) (b) on a runner with moe_runner_options.sm_budget = S
 * ratio = us / us of (a). Once per cell (untimed), every grouped variant's valid rows must
 * equal (a)'s rows bit for bit (the API's promise); a mismatch fails the run (exit 1).
 * Timing as moe-bench: CUDA-graph replays timed by events, weights rotated over copies so L2
 * stays cold, the steady state of 8 calls per graph below 1 ms; on the CPU single calls.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_device.h"
#include "bench_preset.h"
#include "moe_trtllm.h"

#define MAX_BUDGETS 16

typedef struct {
  const char *presets, *tokens, *budgets;
  int backend, iters, json;
  double cpu_weight_gb;
} options;

static const char *const kDefaultPresets = "qwen3-30b,deepseek-v3,mixtral-8x7b,gpt-oss-120b";

static void usage(FILE *f) {
  fprintf(f,
          "usage: moe-grouped-bench [--preset NAME[,NAME..]|all] [--tokens N[,N..]]\n"
          "                         [--sm-budget S[,S..]] [--backend auto|cpu|cuda] [--iters N]\n"
          "                         [--json] [--cpu-weight-gb G]\n");
}

static void help(void) {
  usage(stdout);
  printf(
      "\nTimes the grouped path against the plain forward's GEMMs on the same rows, same run\n"
      "(docs/ep.md, \"Measuring\"). Per BF16 preset and T: T random tokens are routed once; the\n"
      "plan's rows give the CONTIGUOUS layout (rows grouped by local expert) and the MASKED\n"
      "layout (capacity = the largest count rounded up to 8); all variants use one config.\n"
      "\nvariants:\n"
      "  forward        routing + moe_runner_run with finalize (the whole forward, reference)\n"
      "  run            moe_runner_run, do_finalize = 0, into permuted_output: the baseline\n"
      "  contiguous     moe_runner_run_grouped, MOE_LAYOUT_CONTIGUOUS\n"
      "  masked         moe_runner_run_grouped, MOE_LAYOUT_MASKED\n"
      "  contiguous_sm  contiguous on a runner with moe_runner_options.sm_budget = S\n"
      "\ncolumns (and JSON keys): preset, T (tokens), rows (routed slots = contiguous rows),\n"
      "capacity (masked rows per expert), variant, sm (sm_budget; 0 = all SMs), us (median\n"
      "microseconds per call; GPU: the steady state of 8 calls per CUDA graph below 1 ms,\n"
      "us_single one call per graph), ratio (us / us of run), config (config_name).\n"
      "JSON only: backend, device, hidden_size, intermediate_size, scaled, config.\n"
      "Before timing, each grouped variant's valid rows are compared bit for bit with run's rows\n"
      "(same config); a mismatch is reported and the program exits 1.\n"
      "\noptions: --preset BF16 presets or all (default %s); --tokens the T list (default\n"
      "1,128,2048,16384 on the GPU, 1,8 on the CPU); --sm-budget the S list (default half the\n"
      "device's SMs; on the CPU 1, where it has no effect); --iters timed repetitions (default\n"
      "50 GPU, 3 CPU); --cpu-weight-gb the CPU backend's prepared-weight budget per preset\n"
      "(default 0.5; H and I halved until they fit, as moe-bench does).\n",
      kDefaultPresets);
}

static int parse(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->backend = MOE_BACKEND_AUTO;
  o->cpu_weight_gb = 0.5;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--preset") && v)
      o->presets = argv[++i];
    else if (!strcmp(a, "--tokens") && v)
      o->tokens = argv[++i];
    else if (!strcmp(a, "--sm-budget") && v)
      o->budgets = argv[++i];
    else if (!strcmp(a, "--iters") && v)
      o->iters = atoi(argv[++i]);
    else if (!strcmp(a, "--json"))
      o->json = 1;
    else if (!strcmp(a, "--cpu-weight-gb") && v)
      o->cpu_weight_gb = strtod(argv[++i], NULL);
    else if (!strcmp(a, "--backend") && v) {
      ++i;
      o->backend = parse_backend(v);
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      help();
      return 1;
    } else {
      fprintf(stderr, "moe-grouped-bench: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (o->backend == -2 || !(o->cpu_weight_gb > 0) || o->iters < 0) {
    fprintf(stderr, "moe-grouped-bench: bad --backend, --cpu-weight-gb or --iters\n");
    return 2;
  }
  return 0;
}

/* One timed call of a grouped variant or of (a): moe_runner_run_grouped with args[copy], or
 * moe_runner_run (do_finalize = 0) with runs[copy] on the current plan. */
typedef struct {
  moe_runner *r;
  const moe_problem *prob;
  const moe_grouped_args *args; /* [copies], or NULL: run (a) */
  const moe_run_args *runs;     /* [copies] */
  const moe_plan *plan;
  int32_t cfg;
  void *ws;
  size_t ws_bytes;
} call_ctx;

static int call_once(void *ctx, int copy, moe_cuda_stream_t stream) {
  const call_ctx *c = (const call_ctx *)ctx;
  const moe_status_t s = c->args ? moe_runner_run_grouped(c->r, c->prob, &c->args[copy], c->cfg,
                                                          c->ws, c->ws_bytes, stream)
                                 : moe_runner_run(c->r, c->prob, &c->runs[copy], c->cfg, c->plan,
                                                  c->ws, c->ws_bytes, stream);
  return check(s, c->args ? "grouped run" : "run");
}

/* Median µs of one call (us_single: one call per graph) and, on the GPU below 1 ms, of the
 * steady state of 8 calls per graph (us; else us = us_single), as moe-bench times forwards. */
static int time_call(bench_dev *d, bench_enqueue_fn fn, void *ctx, int copies, int iters, double *t,
                     double *us, double *us_single) {
  if (bench_time_fn(d, fn, ctx, copies, 1, copies, iters, t)) return 1;
  qsort(t, (size_t)iters, sizeof *t, cmp_double);
  *us = *us_single = t[iters / 2];
  if (!bench_is_gpu(d) || *us_single >= 1000.0) return 0;
  if (bench_time_fn(d, fn, ctx, copies, (8 + copies - 1) / copies * copies, 1, iters, t)) return 1;
  qsort(t, (size_t)iters, sizeof *t, cmp_double);
  *us = t[iters / 2];
  return 0;
}

typedef struct {
  const char *variant;
  int sm_budget;
  double us, us_single;
} row;

typedef struct {
  const preset *p;
  int scaled;
  int64_t T, rows, capacity;
  int32_t cfg;
  char config_name[64];
} cell;

static void print_rows(bench_dev *d, const options *o, const cell *c, const row *rows, int n) {
  const double base = rows[1].us; /* (a) */
  for (int i = 0; i < n; ++i) {
    const row *w = &rows[i];
    if (o->json)
      printf(
          "{\"preset\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"tokens\":%lld,"
          "\"hidden_size\":%lld,\"intermediate_size\":%lld,\"scaled\":%s,\"rows\":%lld,"
          "\"capacity\":%lld,\"variant\":\"%s\",\"sm_budget\":%d,\"us\":%.3f,\"us_single\":%.3f,"
          "\"ratio\":%.4f,\"config\":%d,\"config_name\":\"%s\"}\n",
          c->p->name, bench_is_gpu(d) ? "cuda" : "cpu", bench_device_name(d), (long long)c->T,
          (long long)c->p->H, (long long)c->p->I, c->scaled ? "true" : "false", (long long)c->rows,
          (long long)c->capacity, w->variant, w->sm_budget, w->us, w->us_single, w->us / base,
          c->cfg, c->config_name);
    else
      printf("%-15s %6lld %7lld %8lld  %-14s %5d %10.1f %7.3f  %s\n", c->p->name, (long long)c->T,
             (long long)c->rows, (long long)c->capacity, w->variant, w->sm_budget, w->us,
             w->us / base, c->config_name);
  }
  fflush(stdout);
}

/* Rows of @p out (bf16 [*, H] on the device) at @p at[i] equal the rows of @p ref at
 * @p ref_row[i], i < n; else a message naming the first that differs. */
static int same_rows(bench_dev *d, const cell *c, const char *what, const void *out,
                     size_t out_bytes, const int64_t *at, const uint16_t *ref,
                     const int64_t *ref_row, int64_t n) {
  const int64_t H = c->p->H;
  uint16_t *h = (uint16_t *)malloc(out_bytes + 2);
  int bad = !h || bench_download(d, h, out, out_bytes);
  for (int64_t i = 0; i < n && !bad; ++i)
    if (memcmp(h + at[i] * H, ref + ref_row[i] * H, (size_t)H * 2)) {
      int64_t k = 0, nd = 0;
      while (h[at[i] * H + k] == ref[ref_row[i] * H + k]) ++k;
      for (int64_t j = 0; j < H; ++j) nd += h[at[i] * H + j] != ref[ref_row[i] * H + j];
      fprintf(stderr,
              "moe-grouped-bench: %s T = %lld: element %lld of %lld differing: 0x%04x, run's "
              "0x%04x\n",
              c->p->name, (long long)c->T, (long long)k, (long long)nd, h[at[i] * H + k],
              ref[ref_row[i] * H + k]);
      fprintf(stderr,
              "moe-grouped-bench: %s T = %lld: %s row %lld differs from run's permuted row %lld "
              "(config %s): not bit-identical\n",
              c->p->name, (long long)c->T, what, (long long)at[i], (long long)ref_row[i],
              c->config_name);
      bad = 2;
    }
  free(h);
  return bad;
}

/* Row t of the hidden states [T, H] into @p dst: x[t, k] is the host block's element
 * (t H + k) mod n (fill_random_keep), so a row is at most two pieces of the block. */
static void copy_row(uint16_t *dst, const host_block *xb, int64_t t, int64_t H) {
  const size_t off = (size_t)(t * H) % xb->n,
               first = xb->n - off < (size_t)H ? xb->n - off : (size_t)H;
  memcpy(dst, xb->h + off, first * 2);
  for (size_t k = first; k < (size_t)H; k += xb->n) /* the block wraps (H may exceed n) */
    memcpy(dst + k, xb->h, ((size_t)H - k < xb->n ? (size_t)H - k : xb->n) * 2);
}

/* One preset at one T (runner r, and budget_r[b] with sm_budget budgets[b]). Returns 0, or 1
 * on failure (a message said why). */
static int run_cell(bench_dev *d, moe_runner *r, moe_runner **budget_r, const int64_t *budgets,
                    int nb, const preset *p, int scaled, int64_t T, const options *o) {
  const int gpu = bench_is_gpu(d), dev = gpu ? kDLCUDA : kDLCPU;
  const int ds = p->method == MOE_ROUTING_DEEPSEEK_V3;
  const int64_t H = p->H, I = p->I, E = p->E, K = p->K, TK = T * K;
  const int iters = o->iters > 0 ? o->iters : (gpu ? 50 : 3);
  seed_cell(p->name, T); /* moe-bench's inputs of this cell */
  moe_problem prob = preset_problem(p, T);
  cell c = {p, scaled, T, TK, 0, 0, ""};
  moe_config_info info;
  size_t ws_bytes = 0, w1_bytes = 0, w2_bytes = 0;
  if (check(moe_runner_get_default_config(r, &prob, &c.cfg), "default config") ||
      check(moe_runner_describe_config(r, c.cfg, &info), "describe config") ||
      check(moe_runner_get_workspace_size(r, &prob, c.cfg, &ws_bytes), "workspace size") ||
      check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM1, &w1_bytes), "w1 size") ||
      check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM2, &w2_bytes), "w2 size"))
    return 1;
  if (gpu)
    snprintf(c.config_name, sizeof c.config_name, "%s", info.name);
  else /* the CPU backend runs no kernels: the config shapes only the routing plan */
    snprintf(c.config_name, sizeof c.config_name, "tile%d_c%d", (int)info.tile,
             (int)info.cluster_size);
  /* Everything but the weights first, so the weight copies fit what is left. */
  int rc = 1;
  const size_t x_bytes = (size_t)(T * H * 2), logit_bytes = (size_t)(T * E * (ds ? 4 : 2));
  void *logits = bench_alloc(d, logit_bytes + 16), *bias = bench_alloc(d, (size_t)E * 2 + 16);
  void *x = bench_alloc(d, x_bytes + 16), *out = bench_alloc(d, x_bytes + 16);
  void *ws = bench_alloc(d, ws_bytes), *perm = NULL, *ws_g = NULL, *cnt = NULL;
  void *hid_c = NULL, *out_c = NULL, *hid_m = NULL, *out_m = NULL;
  void *w1[BENCH_MAX_COPIES] = {0}, *w2[BENCH_MAX_COPIES] = {0};
  host_block xb = {NULL, 0};
  int32_t *ids = NULL, *e2p = NULL, *counts = NULL;
  int64_t *crow = NULL, *mrow = NULL, *prow = NULL;
  uint16_t *ref = NULL, *hc = NULL, *hm = NULL;
  moe_plan plan;
  moe_plan_init(&plan, MOE_PLAN_VERSION);
  if (!logits || !bias || !x || !out || !ws || upload_logits(d, p, T, logits, bias) ||
      fill_random_keep(d, x, x_bytes, 6, &xb)) {
    fprintf(stderr, "moe-grouped-bench: %s T = %lld: buffers: allocation or upload failed\n",
            p->name, (long long)T);
    goto done;
  }
  int64_t sh_logits[2] = {T, E}, sh_bias[1] = {E}, sh_x[2] = {T, H}, sh_e[1] = {E};
  int64_t sh_w1[3] = {E, 2 * I, H}, sh_w2[3] = {E, H, I};
  int64_t sh_p1[1] = {(int64_t)w1_bytes}, sh_p2[1] = {(int64_t)w2_bytes};
  DLTensor t_logits =
      bench_tensor(logits, dev, ds ? kDLFloat : kDLBfloat, ds ? 32 : 16, 2, sh_logits);
  DLTensor t_bias = bench_tensor(bias, dev, kDLBfloat, 16, 1, sh_bias);
  DLTensor t_x = bench_tensor(x, dev, kDLBfloat, 16, 2, sh_x);
  DLTensor t_out = bench_tensor(out, dev, kDLBfloat, 16, 2, sh_x);
  const moe_routing_args ra = routing_args_of(p, &t_logits, &t_bias);
  /* Route once (untimed) and read the plan: ids, expanded -> permuted, counts. */
  ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)(TK + 1));
  e2p = (int32_t *)malloc(sizeof(int32_t) * (size_t)(TK + 1));
  counts = (int32_t *)calloc((size_t)E, sizeof(int32_t));
  if (!ids || !e2p || !counts ||
      check(moe_routing_prepare(r, &prob, &ra, c.cfg, ws, ws_bytes, &plan, bench_stream(d)),
            "routing prepare") ||
      check(moe_plan_read(r, &plan, ws, ws_bytes, MOE_PLAN_TOPK_IDS, ids, (size_t)TK * 4,
                          bench_stream(d)),
            "plan read (ids)") ||
      check(moe_plan_read(r, &plan, ws, ws_bytes, MOE_PLAN_EXPANDED_TO_PERMUTED, e2p,
                          (size_t)TK * 4, bench_stream(d)),
            "plan read (expanded to permuted)") ||
      check(moe_plan_read(r, &plan, ws, ws_bytes, MOE_PLAN_EXPERT_COUNTS, counts, (size_t)E * 4,
                          bench_stream(d)),
            "plan read (counts)"))
    goto done;
  int32_t max_count = 0;
  for (int64_t e = 0; e < E; ++e) max_count = counts[e] > max_count ? counts[e] : max_count;
  c.capacity = ((int64_t)max_count + 7) / 8 * 8;
  const int64_t N_m = E * c.capacity;
  /* The layouts on the host: slot s (token s / K) of local expert e goes to contiguous row
   * start[e] + i and masked row e * capacity + i, i its rank among e's slots (slot order, as
   * the plan orders them); prow: the permuted row of (a) it must equal. */
  crow = (int64_t *)malloc(sizeof(int64_t) * (size_t)(TK + 1));
  mrow = (int64_t *)malloc(sizeof(int64_t) * (size_t)(TK + 1));
  prow = (int64_t *)malloc(sizeof(int64_t) * (size_t)(TK + 1));
  int64_t *start = (int64_t *)calloc((size_t)E + 1, sizeof(int64_t));
  int64_t *fill = (int64_t *)calloc((size_t)E + 1, sizeof(int64_t));
  hc = (uint16_t *)malloc((size_t)(TK * H * 2) + 2);
  hm = (uint16_t *)calloc((size_t)(N_m * H) + 1, 2);
  if (!crow || !mrow || !prow || !start || !fill || !hc || !hm) {
    free(start);
    free(fill);
    goto done;
  }
  for (int64_t e = 1; e <= E; ++e) start[e] = start[e - 1] + counts[e - 1];
  int64_t n = 0;
  for (int64_t s = 0; s < TK; ++s) {
    const int32_t e = ids[s];
    if (e < 0 || e >= E || e2p[s] < 0 || fill[e] >= counts[e]) continue;
    crow[n] = start[e] + fill[e];
    mrow[n] = e * c.capacity + fill[e]++;
    prow[n] = e2p[s];
    copy_row(hc + crow[n] * H, &xb, s / K, H);
    memcpy(hm + mrow[n] * H, hc + crow[n] * H, (size_t)H * 2);
    ++n;
  }
  const int complete = n == start[E] && n == TK;
  free(start);
  free(fill);
  if (!complete) {
    fprintf(stderr, "moe-grouped-bench: %s T = %lld: the plan's map covers %lld of %lld slots\n",
            p->name, (long long)T, (long long)n, (long long)TK);
    goto done;
  }
  /* Grouped problems: N = T K rows (CONTIGUOUS), E capacity (MASKED); one workspace for both. */
  moe_problem prob_c = prob, prob_m = prob;
  prob_c.num_tokens = TK;
  prob_m.num_tokens = N_m;
  size_t wc = 0, wm = 0;
  if (check(moe_runner_get_grouped_workspace_size(r, &prob_c, c.cfg, &wc),
            "grouped workspace size (contiguous)") ||
      check(moe_runner_get_grouped_workspace_size(r, &prob_m, c.cfg, &wm),
            "grouped workspace size (masked)"))
    goto done;
  const size_t ws_g_bytes = wc > wm ? wc : wm, c_bytes = (size_t)(TK * H * 2),
               m_bytes = (size_t)(N_m * H * 2), perm_bytes = (size_t)(plan.max_padded_rows * H * 2);
  ws_g = bench_alloc(d, ws_g_bytes);
  cnt = bench_alloc(d, (size_t)E * 4);
  perm = bench_alloc(d, perm_bytes + 16);
  hid_c = bench_alloc(d, c_bytes + 16);
  out_c = bench_alloc(d, c_bytes + 16);
  hid_m = bench_alloc(d, m_bytes + 16);
  out_m = bench_alloc(d, m_bytes + 16);
  if (!ws_g || !cnt || !perm || !hid_c || !out_c || !hid_m || !out_m ||
      bench_upload(d, cnt, counts, (size_t)E * 4) || bench_upload(d, hid_c, hc, c_bytes) ||
      bench_upload(d, hid_m, hm, m_bytes)) {
    fprintf(stderr,
            "moe-grouped-bench: %s T = %lld: grouped buffers: allocation or upload failed\n",
            p->name, (long long)T);
    goto done;
  }
  /* Weights: copies rotated so L2 stays cold (GPU), each prepared from random canonical bf16. */
  const size_t canon_bytes = (size_t)(E * 2 * I * H * 2);
  const int copies =
      gpu ? weight_copies(d, (double)(w1_bytes + w2_bytes), 2.0 * (double)canon_bytes) : 1;
  for (int k = 0; k < copies; ++k) {
    void *canon = bench_alloc(d, canon_bytes);
    w1[k] = bench_alloc(d, w1_bytes);
    w2[k] = bench_alloc(d, w2_bytes);
    DLTensor tc1 = bench_tensor(canon, dev, kDLBfloat, 16, 3, sh_w1);
    DLTensor tc2 = bench_tensor(canon, dev, kDLBfloat, 16, 3, sh_w2);
    DLTensor tp1 = bench_tensor(w1[k], dev, kDLUInt, 8, 1, sh_p1);
    DLTensor tp2 = bench_tensor(w2[k], dev, kDLUInt, 8, 1, sh_p2);
    const int e =
        !canon || !w1[k] || !w2[k] || fill_random(d, canon, canon_bytes, 8) ||
        check(moe_weights_prepare(r, &prob, MOE_WEIGHTS_GEMM1, &tc1, &tp1, bench_stream(d)),
              "prepare W1") ||
        fill_random(d, canon, (size_t)(E * H * I * 2), 8) ||
        check(moe_weights_prepare(r, &prob, MOE_WEIGHTS_GEMM2, &tc2, &tp2, bench_stream(d)),
              "prepare W2");
    bench_sync(d);
    bench_free(d, canon);
    if (e) {
      fprintf(stderr,
              "moe-grouped-bench: %s T = %lld: weight copy %d of %d: allocation or preparation "
              "failed\n",
              p->name, (long long)T, k + 1, copies);
      goto done;
    }
  }
  {
    int64_t sh_perm[2] = {plan.max_padded_rows, H}, sh_c[2] = {TK, H};
    int64_t sh_m[3] = {E, c.capacity, H};
    DLTensor t_perm = bench_tensor(perm, dev, kDLBfloat, 16, 2, sh_perm);
    DLTensor t_cnt = bench_tensor(cnt, dev, kDLInt, 32, 1, sh_e);
    DLTensor t_hc = bench_tensor(hid_c, dev, kDLBfloat, 16, 2, sh_c);
    DLTensor t_oc = bench_tensor(out_c, dev, kDLBfloat, 16, 2, sh_c);
    DLTensor t_hm = bench_tensor(hid_m, dev, kDLBfloat, 16, 3, sh_m);
    DLTensor t_om = bench_tensor(out_m, dev, kDLBfloat, 16, 3, sh_m);
    DLTensor t_w1[BENCH_MAX_COPIES], t_w2[BENCH_MAX_COPIES];
    moe_run_args fwd[BENCH_MAX_COPIES], runs[BENCH_MAX_COPIES];
    moe_grouped_args ga_c[BENCH_MAX_COPIES], ga_m[BENCH_MAX_COPIES];
    for (int k = 0; k < copies; ++k) {
      t_w1[k] = bench_tensor(w1[k], dev, kDLUInt, 8, 1, sh_p1);
      t_w2[k] = bench_tensor(w2[k], dev, kDLUInt, 8, 1, sh_p2);
      moe_run_args_init(&fwd[k], MOE_RUN_ARGS_VERSION);
      fwd[k].hidden_states = &t_x;
      fwd[k].gemm1_weights = &t_w1[k];
      fwd[k].gemm2_weights = &t_w2[k];
      fwd[k].output = &t_out;
      runs[k] = fwd[k];
      runs[k].do_finalize = 0;
      runs[k].output = NULL;
      runs[k].permuted_output = &t_perm;
      moe_grouped_args_init(&ga_c[k], MOE_GROUPED_ARGS_VERSION);
      ga_c[k].expert_counts = &t_cnt;
      ga_c[k].gemm1_weights = &t_w1[k];
      ga_c[k].gemm2_weights = &t_w2[k];
      ga_m[k] = ga_c[k];
      ga_c[k].layout = MOE_LAYOUT_CONTIGUOUS;
      ga_c[k].hidden_states = &t_hc;
      ga_c[k].output = &t_oc;
      ga_m[k].layout = MOE_LAYOUT_MASKED;
      ga_m[k].capacity = c.capacity;
      ga_m[k].hidden_states = &t_hm;
      ga_m[k].output = &t_om;
    }
    call_ctx a = {r, &prob, NULL, runs, &plan, c.cfg, ws, ws_bytes};
    call_ctx b = {r, &prob_c, ga_c, runs, NULL, c.cfg, ws_g, ws_g_bytes};
    call_ctx m = {r, &prob_m, ga_m, runs, NULL, c.cfg, ws_g, ws_g_bytes};
    /* The bit-identity check (untimed): (a) once into permuted_output, then each grouped
     * variant once against its rows. */
    ref = (uint16_t *)malloc(perm_bytes + 2);
    if (!ref || call_once(&a, 0, bench_stream(d))) goto done;
    bench_sync(d);
    if (bench_download(d, ref, perm, perm_bytes)) goto done;
    int bad = call_once(&b, 0, bench_stream(d)) ||
              same_rows(d, &c, "contiguous", out_c, c_bytes, crow, ref, prow, TK) ||
              call_once(&m, 0, bench_stream(d)) ||
              same_rows(d, &c, "masked", out_m, m_bytes, mrow, ref, prow, TK);
    for (int i = 0; i < nb && !bad; ++i) {
      call_ctx bs = b;
      bs.r = budget_r[i];
      char what[64];
      snprintf(what, sizeof what, "contiguous sm_budget %lld", (long long)budgets[i]);
      bad = call_once(&bs, 0, bench_stream(d)) ||
            same_rows(d, &c, what, out_c, c_bytes, crow, ref, prow, TK);
    }
    double *t = (double *)malloc(sizeof(double) * (size_t)iters);
    row rows[4 + MAX_BUDGETS];
    int nrow = 0;
    if (bad || !t) {
      free(t);
      goto done;
    }
    /* The whole forward (routing + run + finalize) routes into `plan` again, with the same
     * inputs, config and workspace: the plan stays current for (a). */
    bench_case fc = {r, &prob, &ra, fwd, copies, c.cfg, ws, ws_bytes, &plan, 0};
    const struct {
      const char *name;
      bench_enqueue_fn fn;
      void *ctx;
    } v[3] = {{"run", call_once, &a}, {"contiguous", call_once, &b}, {"masked", call_once, &m}};
    int e = 0;
    rows[nrow] = (row){"forward", 0, 0, 0};
    e = time_call(d, bench_forward_once, &fc, copies, iters, t, &rows[nrow].us,
                  &rows[nrow].us_single);
    ++nrow;
    for (int i = 0; i < 3 && !e; ++i, ++nrow) {
      rows[nrow] = (row){v[i].name, 0, 0, 0};
      e = time_call(d, v[i].fn, v[i].ctx, copies, iters, t, &rows[nrow].us, &rows[nrow].us_single);
    }
    for (int i = 0; i < nb && !e; ++i, ++nrow) {
      call_ctx bs = b;
      bs.r = budget_r[i];
      rows[nrow] = (row){"contiguous_sm", (int)budgets[i], 0, 0};
      e = time_call(d, call_once, &bs, copies, iters, t, &rows[nrow].us, &rows[nrow].us_single);
    }
    free(t);
    if (e) goto done;
    print_rows(d, o, &c, rows, nrow);
  }
  rc = 0;
done:
  bench_sync(d);
  for (int k = 0; k < BENCH_MAX_COPIES; ++k) {
    bench_free(d, w1[k]);
    bench_free(d, w2[k]);
  }
  void *dev_bufs[] = {logits, bias, x, out, ws, perm, ws_g, cnt, hid_c, out_c, hid_m, out_m};
  for (size_t i = 0; i < sizeof dev_bufs / sizeof dev_bufs[0]; ++i) bench_free(d, dev_bufs[i]);
  void *host_bufs[] = {xb.h, ids, e2p, counts, crow, mrow, prow, ref, hc, hm};
  for (size_t i = 0; i < sizeof host_bufs / sizeof host_bufs[0]; ++i) free(host_bufs[i]);
  return rc;
}

int main(int argc, char **argv) {
  bench_prog = "moe-grouped-bench";
  options o;
  const int pr = parse(argc, argv, &o);
  if (pr) return pr == 1 ? 0 : 2;
  const char *presets = o.presets ? o.presets : kDefaultPresets;
  if (!presets_known(presets)) return 2;
  bench_dev *d = NULL;
  if (bench_open(o.backend, &d)) return 1;
  const int gpu = bench_is_gpu(d);
  const int32_t backend = gpu ? MOE_BACKEND_CUDA : MOE_BACKEND_CPU;
  int64_t tlist[64], budgets[MAX_BUDGETS];
  const int nt = parse_list(o.tokens ? o.tokens : (gpu ? "1,128,2048,16384" : "1,8"), tlist, 64);
  char half[32];
  snprintf(half, sizeof half, "%d", gpu ? (bench_sm_count(d) + 1) / 2 : 1);
  const int nb = parse_list(o.budgets ? o.budgets : half, budgets, MAX_BUDGETS);
  int bad_list = nt <= 0 || nb <= 0;
  for (int i = 0; i < nt && !bad_list; ++i) bad_list = tlist[i] < 1;
  for (int i = 0; i < nb && !bad_list; ++i) bad_list = budgets[i] < 0 || budgets[i] > 65535;
  if (bad_list) {
    fprintf(stderr,
            "moe-grouped-bench: --tokens: expected N[,N..] (1 or more, at most 64 values); "
            "--sm-budget: S[,S..] (0..65535, at most %d)\n",
            MAX_BUDGETS);
    bench_close(d);
    return 2;
  }
  FILE *notes = o.json ? stderr : stdout;
  if (!o.json) {
    printf("moe-grouped-bench: %s, %s\n", gpu ? "CUDA backend" : "CPU backend (no GPU found)",
           bench_device_name(d));
    printf("%-15s %6s %7s %8s  %-14s %5s %10s %7s  %s\n", "preset", "T", "rows", "capacity",
           "variant", "sm", "us", "ratio", "config");
  }
  int failures = 0, cells = 0;
  for (int pi = 0; pi < k_num_presets; ++pi) {
    preset p = k_presets[pi];
    if (!in_list(presets, p.name)) continue;
    if (p.scaling != MOE_SCALING_NONE) {
      fprintf(notes, "%s: skipped: this bench runs BF16 runners only\n", p.name);
      continue;
    }
    moe_runner *r = NULL, *br[MAX_BUDGETS] = {0};
    int scaled = 0, e = check(open_runner(&p, backend, 0, 0, &r), "runner create");
    for (int i = 0; i < nb && !e; ++i)
      e = check(open_runner(&p, backend, 0, (int32_t)budgets[i], &br[i]), "runner create");
    double full_gb = 0.0;
    if (!e && !gpu) {
      scaled = scale_to_budget(r, &p, o.cpu_weight_gb, &full_gb);
      e = scaled < 0;
      if (scaled > 0)
        fprintf(notes,
                "moe-grouped-bench: %s scaled down to H = %lld, I = %lld on the CPU: its %.1f GB "
                "of prepared weights exceed --cpu-weight-gb %.3g\n",
                p.name, (long long)p.H, (long long)p.I, full_gb, o.cpu_weight_gb);
    }
    for (int ti = 0; ti < nt && !e; ++ti, ++cells)
      failures += run_cell(d, r, br, budgets, nb, &p, scaled > 0, tlist[ti], &o);
    failures += e;
    moe_runner_destroy(r);
    for (int i = 0; i < nb; ++i) moe_runner_destroy(br[i]);
  }
  bench_close(d);
  if (!cells && !failures) {
    fprintf(stderr, "moe-grouped-bench: no BF16 preset asked for: nothing measured\n");
    return 1;
  }
  return failures ? 1 : 0;
}
