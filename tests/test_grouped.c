/*
 * test_grouped.c - moe_runner_run_grouped (external token layouts, docs/ep.md) on the CPU:
 *  - CONTIGUOUS and MASKED rows equal, bit for bit, the unweighted rows moe_runner_run writes
 *    (do_finalize = 0, permuted_output) for the same tokens and experts, on an EP slice
 *    (local experts [o, o + E_l) of E), with gemm biases and SwiGLU parameters, for several
 *    configs; rows the counts do not cover stay untouched;
 *  - T = 0 and T = 1 (N = 0, all counts 0; one token);
 *  - misuse: bad counts (negative, past capacity, sum past N), shapes, dtypes, layout,
 *    capacity, version, reserved, workspace, stream -> the status, a message naming the
 *    argument, and nothing written;
 *  - FP8 runners (and the CUDA backend, when a CUDA runner can be created) -> NOT_SUPPORTED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define B MOE_BACKEND_CPU
#define POISON 0xFFFFu

/* Fixture: a routed reference for T tokens (pre-routed ids) and the grouping of its local
 * slots. */
typedef struct fx {
  int32_t E, K, o, El;
  int64_t T, H, I;
  int activation;
  moe_runner *r;
  t_expert_data d;
  t_moe_in in;
  t_weights w;
  int32_t *ids;       /* [T, K] */
  int32_t counts[64]; /* local slots per local expert */
  int64_t nlocal;     /* sum of counts */
  int64_t *slot;      /* [nlocal] slot x of each grouped row (experts ascending, x ascending) */
  uint16_t *ref;      /* [nlocal, H] the reference rows */
} fx;

static void fx_free(fx *f) {
  t_weights_free(&f->w);
  t_expert_data_free(&f->d);
  free(f->ids);
  free(f->slot);
  free(f->ref);
  moe_runner_destroy(f->r);
}

/* Route T tokens with ids drawn from [0, E) (some not local), run the plain forward with
 * do_finalize = 0 and keep each local slot's permuted row as the reference. */
static int fx_init(fx *f, uint64_t seed, int32_t E, int32_t o, int32_t El, int64_t T, int32_t K,
                   int64_t H, int64_t I) {
  memset(f, 0, sizeof *f);
  f->E = E, f->K = K, f->o = o, f->El = El, f->T = T, f->H = H, f->I = I;
  f->activation = MOE_ACTIVATION_SWIGLU;
  f->r = t_runner(B, f->activation);
  if (!f->r) return 1;
  t_expert_data_gen(seed, T, El, H, I, 1, 1, 1, &f->d);
  f->in = t_expert_data_in(&f->d);
  moe_problem p;
  t_problem(&p, E, T, K, o, El, H, I);
  if (CHECK_OK(t_weights_prepare(f->r, B, &p, f->activation, &f->in, &f->w))) return 1;
  t_rng rng = {seed * 7919 + 1};
  f->ids = t_xmalloc(sizeof(int32_t) * (size_t)(T * K + 1));
  float *wts = t_xmalloc(sizeof(float) * (size_t)(T * K + 1));
  for (int64_t t = 0; t < T; ++t)
    for (int32_t k = 0; k < K; ++k) { /* distinct ids per token */
      int32_t id;
      int dup;
      do {
        id = (int32_t)t_rng_range(&rng, 0, E - 1);
        dup = 0;
        for (int32_t j = 0; j < k; ++j) dup |= f->ids[t * K + j] == id;
      } while (dup);
      f->ids[t * K + k] = id;
      wts[t * K + k] = 0.5f;
    }
  t_route in;
  t_route_init(&in);
  in.method = MOE_ROUTING_TOPK;
  in.input = T_INPUT_IDS;
  in.ids = f->ids;
  in.weights_f32 = 1;
  in.weights = wts;
  int32_t cfg = 0;
  t_ws ws = {0};
  moe_plan plan;
  host_plan hp;
  memset(&hp, 0, sizeof hp);
  int bad = CHECK_OK(moe_runner_get_default_config(f->r, &p, &cfg)) ||
            CHECK_OK(t_ws_alloc(f->r, B, &p, cfg, &ws)) ||
            CHECK_OK(t_prepare(f->r, B, &p, &in, cfg, &ws, &plan));
  uint16_t *perm = NULL;
  if (!bad) {
    perm = t_xmalloc(sizeof(uint16_t) * (size_t)(plan.max_padded_rows * H + 1));
    bad = CHECK_OK(t_run(f->r, B, &p, f->activation, &f->in, &f->w, cfg, &plan, &ws, 0, perm)) ||
          t_read_plan(f->r, &plan, &ws, E, &hp);
  }
  if (!bad) {
    f->slot = t_xmalloc(sizeof(int64_t) * (size_t)(T * K + 1));
    f->ref = t_xmalloc(sizeof(uint16_t) * (size_t)((T * K + 1) * H));
    f->nlocal = 0;
    for (int32_t e = 0; e < El; ++e) {
      f->counts[e] = 0;
      for (int64_t x = 0; x < T * K; ++x)
        if (f->ids[x] == o + e) {
          CHECK(hp.e2p[x] >= 0, "slot %lld: local but not permuted", (long long)x);
          if (hp.e2p[x] < 0) continue;
          memcpy(f->ref + f->nlocal * H, perm + (int64_t)hp.e2p[x] * H, sizeof(uint16_t) * H);
          f->slot[f->nlocal++] = x;
          f->counts[e]++;
        }
    }
  }
  t_free_plan(&hp);
  free(perm);
  free(wts);
  t_ws_free(&ws);
  return bad;
}

typedef struct grouped_call {
  int32_t layout;
  int64_t capacity, N;
  const int32_t *counts;
  const uint16_t *hidden; /* host, the layout's shape */
  int32_t cfg;            /* -1 = default */
} grouped_call;

/* Run grouped with tensors built from host data; output poisoned first, copied to out_host
 * ([N, H]). Returns the status. */
static moe_status_t run_grouped(fx *f, const grouped_call *c, uint16_t *out_host) {
  moe_problem p;
  t_problem(&p, f->E, c->N, 1, f->o, f->El, f->H, f->I);
  const int64_t H = f->H, El = f->El;
  const int masked = c->layout == MOE_LAYOUT_MASKED;
  const int64_t dm[3] = {El, c->capacity, H}, dc[2] = {c->N, H};
  ttensor *hid = tt_from_host(B, DT_BF16, masked ? 3 : 2, masked ? dm : dc, c->hidden);
  ttensor *out = tt_new(B, DT_BF16, masked ? 3 : 2, masked ? dm : dc);
  tmem_poison(B, out->t.data, out->bytes);
  ttensor *cnt = tt_from_host(B, DT_I32, 1, (int64_t[]){El}, c->counts);
  ttensor *b1 = tt_from_host(B, DT_F32, 2, (int64_t[]){El, 2 * f->I}, f->in.bias1);
  ttensor *b2 = tt_from_host(B, DT_F32, 2, (int64_t[]){El, H}, f->in.bias2);
  ttensor *al = tt_from_host(B, DT_F32, 1, (int64_t[]){El}, f->in.alpha);
  ttensor *be = tt_from_host(B, DT_F32, 1, (int64_t[]){El}, f->in.beta);
  ttensor *cl = tt_from_host(B, DT_F32, 1, (int64_t[]){El}, f->in.clamp_limit);
  moe_grouped_args a;
  CHECK_OK(moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION));
  a.layout = c->layout;
  a.capacity = c->capacity;
  a.hidden_states = &hid->t;
  a.expert_counts = &cnt->t;
  a.gemm1_weights = &f->w.w1->t;
  a.gemm2_weights = &f->w.w2->t;
  a.gemm1_bias = &b1->t;
  a.gemm2_bias = &b2->t;
  a.gemm1_alpha = &al->t;
  a.gemm1_beta = &be->t;
  a.gemm1_clamp_limit = &cl->t;
  a.output = &out->t;
  int32_t cfg = c->cfg;
  moe_status_t s = MOE_STATUS_SUCCESS;
  if (cfg < 0) s = CHECK_OK(moe_runner_get_default_config(f->r, &p, &cfg));
  size_t bytes = 0;
  if (!s) s = CHECK_OK(moe_runner_get_grouped_workspace_size(f->r, &p, cfg, &bytes));
  void *ws = tmem_alloc(B, bytes);
  if (!s) s = moe_runner_run_grouped(f->r, &p, &a, cfg, ws, bytes, NULL);
  tmem_download(B, out_host, out->t.data, out->bytes);
  tmem_free(B, ws);
  tt_free(hid), tt_free(out), tt_free(cnt), tt_free(b1), tt_free(b2), tt_free(al), tt_free(be),
      tt_free(cl);
  return s;
}

/* Compare the grouped rows with the reference; every other row must still be poison. */
static void check_rows(fx *f, const grouped_call *c, const uint16_t *out, const char *what) {
  const int64_t H = f->H;
  char *covered = calloc((size_t)c->N + 1, 1);
  int64_t g = 0, bad = 0, src = 0;
  for (int32_t e = 0; e < f->El; ++e) {
    const int64_t first = c->layout == MOE_LAYOUT_MASKED ? e * c->capacity : src;
    for (int32_t i = 0; i < c->counts[e]; ++i, ++g) {
      covered[first + i] = 1;
      if (memcmp(out + (first + i) * H, f->ref + g * H, sizeof(uint16_t) * H) && bad++ < 3)
        CHECK(0, "%s: expert %d row %d (slot %lld) differs from moe_runner_run's row", what, e, i,
              (long long)f->slot[g]);
    }
    src += c->counts[e];
  }
  CHECK(bad == 0, "%s: %lld rows differ", what, (long long)bad);
  CHECK(g == f->nlocal, "%s: %lld rows grouped, %lld local slots", what, (long long)g,
        (long long)f->nlocal);
  int64_t touched = 0;
  for (int64_t r = 0; r < c->N; ++r)
    if (!covered[r])
      for (int64_t h = 0; h < H; ++h) touched += out[r * H + h] != POISON;
  CHECK(touched == 0, "%s: %lld elements of rows past the counts were written", what,
        (long long)touched);
  free(covered);
}

/* Host hidden of both layouts from the fixture's grouping (slack extra contiguous rows). */
static uint16_t *contiguous_hidden(fx *f, int64_t N) {
  uint16_t *h = t_xmalloc(sizeof(uint16_t) * (size_t)(N * f->H + 1));
  for (int64_t i = 0; i < N * f->H; ++i) h[i] = 0x7fc0; /* NaN in unused rows: never read */
  for (int64_t g = 0; g < f->nlocal; ++g)
    memcpy(h + g * f->H, f->in.hidden + (f->slot[g] / f->K) * f->H, sizeof(uint16_t) * f->H);
  return h;
}

static uint16_t *masked_hidden(fx *f, int64_t cap) {
  const int64_t N = f->El * cap;
  uint16_t *h = t_xmalloc(sizeof(uint16_t) * (size_t)(N * f->H + 1));
  for (int64_t i = 0; i < N * f->H; ++i) h[i] = 0x7fc0; /* NaN in unused rows: never read */
  int64_t g = 0;
  for (int32_t e = 0; e < f->El; ++e)
    for (int32_t i = 0; i < f->counts[e]; ++i, ++g)
      memcpy(h + (e * cap + i) * f->H, f->in.hidden + (f->slot[g] / f->K) * f->H,
             sizeof(uint16_t) * f->H);
  return h;
}

static void test_equal_to_run(uint64_t seed, int32_t E, int32_t o, int32_t El, int64_t T, int32_t K,
                              int64_t H, int64_t I) {
  fx f;
  char what[160];
  if (fx_init(&f, seed, E, o, El, T, K, H, I)) {
    CHECK(0, "fixture T=%lld failed", (long long)T);
    fx_free(&f);
    return;
  }
  int32_t maxc = 0;
  for (int32_t e = 0; e < El; ++e) maxc = f.counts[e] > maxc ? f.counts[e] : maxc;
  /* configs: the default and every other valid config of the grouped problem (up to 6) */
  moe_problem p;
  const int64_t slack = 3, Nc = f.nlocal + slack;
  t_problem(&p, E, Nc, 1, o, El, H, I);
  int32_t cfgs[64], n = 0;
  CHECK_OK(moe_runner_get_valid_configs(f.r, &p, cfgs, 64, &n));
  if (n > 64) n = 64;
  for (int32_t i = 0; i < n && i < 6; ++i) {
    uint16_t *hc = contiguous_hidden(&f, Nc);
    uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)(Nc * H + 1));
    grouped_call c = {MOE_LAYOUT_CONTIGUOUS, 0, Nc, f.counts, hc, cfgs[i * (n > 6 ? n / 6 : 1)]};
    snprintf(what, sizeof what, "contiguous T=%lld K=%d E=%d o=%d El=%d cfg=%d", (long long)T, K, E,
             o, El, c.cfg);
    if (!CHECK_OK(run_grouped(&f, &c, out))) check_rows(&f, &c, out, what);
    free(hc);
    free(out);
    const int64_t cap = maxc + 2;
    uint16_t *hm = masked_hidden(&f, cap);
    out = t_xmalloc(sizeof(uint16_t) * (size_t)(El * cap * H + 1));
    grouped_call m = {MOE_LAYOUT_MASKED, cap, El * cap, f.counts, hm, -1};
    snprintf(what, sizeof what, "masked T=%lld K=%d E=%d o=%d El=%d cap=%lld", (long long)T, K, E,
             o, El, (long long)cap);
    if (!CHECK_OK(run_grouped(&f, &m, out))) check_rows(&f, &m, out, what);
    free(hm);
    free(out);
  }
  fx_free(&f);
}

/* N = 0 exactly (empty buffers, all counts 0) in both layouts, and N = 1 (one row, no slack). */
static void test_edge_n(void) {
  fx f;
  if (fx_init(&f, 21, 8, 2, 4, 1, 1, 128, 64)) { /* T = 1, K = 1 */
    CHECK(0, "edge fixture failed");
    fx_free(&f);
    return;
  }
  int32_t zeros[64] = {0};
  uint16_t out1[1];
  grouped_call c0 = {MOE_LAYOUT_CONTIGUOUS, 0, 0, zeros, NULL, -1};
  CHECK_OK(run_grouped(&f, &c0, out1)); /* nothing to compare: no rows */
  grouped_call m0 = {MOE_LAYOUT_MASKED, 0, 0, zeros, NULL, -1};
  CHECK_OK(run_grouped(&f, &m0, out1));
  /* T = 1, K = 1, a seed whose token is local: N = 1, and a masked capacity 1 */
  uint16_t *hc = contiguous_hidden(&f, f.nlocal);
  uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)((f.El + 1) * f.H));
  grouped_call c1 = {MOE_LAYOUT_CONTIGUOUS, 0, f.nlocal, f.counts, hc, -1};
  if (!CHECK_OK(run_grouped(&f, &c1, out))) check_rows(&f, &c1, out, "contiguous N = T = 1");
  uint16_t *hm = masked_hidden(&f, 1);
  grouped_call m1 = {MOE_LAYOUT_MASKED, 1, f.El, f.counts, hm, -1};
  if (!CHECK_OK(run_grouped(&f, &m1, out))) check_rows(&f, &m1, out, "masked capacity 1");
  CHECK(f.nlocal == 1, "T = 1, K = 1: %lld local slots, expected 1", (long long)f.nlocal);
  free(hc);
  free(hm);
  free(out);
  fx_free(&f);
}

/* Misuse: status, message naming @p arg, output untouched. */
static void expect_fail(fx *f, const grouped_call *c, moe_status_t want, const char *arg,
                        const char *what) {
  const int64_t n = (c->layout == MOE_LAYOUT_MASKED ? f->El * c->capacity : c->N) * f->H;
  uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)(n + 1));
  moe_status_t s = run_grouped(f, c, out);
  CHECK(s == want, "%s: expected status %d, given %d (%s)", what, want, s, moe_get_last_error());
  CHECK(strstr(moe_get_last_error(), arg) != NULL, "%s: message '%s' does not name %s", what,
        moe_get_last_error(), arg);
  int64_t touched = 0;
  for (int64_t i = 0; i < n; ++i) touched += out[i] != POISON;
  CHECK(touched == 0, "%s: %lld output elements written on failure", what, (long long)touched);
  free(out);
}

/* Grouped args with every required tensor set (the valid call the misuse cases start from). */
static void valid_args(moe_grouped_args *a, ttensor *hid, ttensor *counts, const t_weights *w,
                       ttensor *out) {
  moe_grouped_args_init(a, MOE_GROUPED_ARGS_VERSION);
  a->hidden_states = &hid->t;
  a->expert_counts = &counts->t;
  a->gemm1_weights = &w->w1->t;
  a->gemm2_weights = &w->w2->t;
  a->output = &out->t;
}

static void test_misuse(void) {
  fx f;
  if (fx_init(&f, 11, 8, 2, 4, 12, 2, 128, 64)) {
    CHECK(0, "misuse fixture failed");
    fx_free(&f);
    return;
  }
  const int64_t H = f.H, El = f.El, N = f.nlocal + 2;
  uint16_t *hc = contiguous_hidden(&f, N);
  int32_t cnt[64];
  memcpy(cnt, f.counts, sizeof cnt);
  grouped_call c = {MOE_LAYOUT_CONTIGUOUS, 0, N, cnt, hc, -1};
  cnt[1] = -1;
  expect_fail(&f, &c, MOE_STATUS_INVALID_ARGUMENT, "expert_counts[1]", "negative count");
  memcpy(cnt, f.counts, sizeof cnt);
  cnt[El - 1] += 3; /* sum = nlocal + 3 > N */
  expect_fail(&f, &c, MOE_STATUS_INVALID_ARGUMENT, "expert_counts", "sum past N");
  memcpy(cnt, f.counts, sizeof cnt);
  c.capacity = 4;
  expect_fail(&f, &c, MOE_STATUS_INVALID_ARGUMENT, "args->capacity", "capacity with contiguous");
  c.capacity = 0;
  c.layout = 7;
  expect_fail(&f, &c, MOE_STATUS_INVALID_ARGUMENT, "args->layout", "unknown layout");
  /* masked: count past capacity; capacity not N / E_l */
  const int64_t cap = 6;
  uint16_t *hm = t_xmalloc(sizeof(uint16_t) * (size_t)(El * cap * H));
  memset(hm, 0, sizeof(uint16_t) * (size_t)(El * cap * H));
  int32_t mc[64] = {1, 6, 0, 2};
  grouped_call m = {MOE_LAYOUT_MASKED, cap, El * cap, mc, hm, -1};
  mc[2] = 7;
  expect_fail(&f, &m, MOE_STATUS_INVALID_ARGUMENT, "expert_counts[2]", "count past capacity");
  mc[2] = -2;
  expect_fail(&f, &m, MOE_STATUS_INVALID_ARGUMENT, "expert_counts[2]", "negative masked count");
  mc[2] = 0;
  {
    uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)(El * cap * H));
    CHECK_OK(run_grouped(&f, &m, out)); /* the same call is valid with good counts */
    free(out);
  }
  m.N = El * cap - 1; /* problem->num_tokens != E_l * capacity */
  expect_fail(&f, &m, MOE_STATUS_INVALID_ARGUMENT, "args->capacity", "masked N mismatch");
  free(hm);

  /* tensors: wrong shape, dtype, missing; version, reserved, workspace, stream */
  moe_problem p;
  t_problem(&p, f.E, N, 1, f.o, El, H, f.I);
  int32_t cfg = 0;
  size_t bytes = 0;
  CHECK_OK(moe_runner_get_default_config(f.r, &p, &cfg));
  CHECK_OK(moe_runner_get_grouped_workspace_size(f.r, &p, cfg, &bytes));
  void *ws = tmem_alloc(B, bytes);
  ttensor *hid = tt_from_host(B, DT_BF16, 2, (int64_t[]){N, H}, hc);
  ttensor *hid_short = tt_from_host(B, DT_BF16, 2, (int64_t[]){N - 1, H}, hc);
  ttensor *hid_f32 = tt_new(B, DT_F32, 2, (int64_t[]){N, H});
  ttensor *out = tt_new(B, DT_BF16, 2, (int64_t[]){N, H});
  ttensor *out3 = tt_new(B, DT_BF16, 3, (int64_t[]){1, N, H});
  ttensor *cn = tt_from_host(B, DT_I32, 1, (int64_t[]){El}, f.counts);
  ttensor *cn_short = tt_from_host(B, DT_I32, 1, (int64_t[]){El - 1}, f.counts);
  ttensor *cn_f32 = tt_new(B, DT_F32, 1, (int64_t[]){El});
  struct {
    const char *what, *arg;
    moe_status_t want;
    int field; /* 0 hidden, 1 counts, 2 output, 3 version, 4 reserved, 5 ws bytes, 6 stream,
                  7 w1 NULL, 8 alpha with non-SwiGLU skipped */
    const DLTensor *t;
  } cases[] = {
      {"hidden rows", "args->hidden_states", MOE_STATUS_INVALID_ARGUMENT, 0, &hid_short->t},
      {"hidden dtype", "args->hidden_states", MOE_STATUS_INVALID_ARGUMENT, 0, &hid_f32->t},
      {"hidden NULL", "args->hidden_states", MOE_STATUS_INVALID_ARGUMENT, 0, NULL},
      {"counts length", "args->expert_counts", MOE_STATUS_INVALID_ARGUMENT, 1, &cn_short->t},
      {"counts dtype", "args->expert_counts", MOE_STATUS_INVALID_ARGUMENT, 1, &cn_f32->t},
      {"counts NULL", "args->expert_counts", MOE_STATUS_INVALID_ARGUMENT, 1, NULL},
      {"output ndim", "args->output", MOE_STATUS_INVALID_ARGUMENT, 2, &out3->t},
      {"version", "args->version", MOE_STATUS_VERSION_MISMATCH, 3, NULL},
      {"reserved", "args->reserved[2]", MOE_STATUS_INVALID_ARGUMENT, 4, NULL},
      {"workspace", "workspace_bytes", MOE_STATUS_INSUFFICIENT_WORKSPACE, 5, NULL},
      {"stream", "stream", MOE_STATUS_INVALID_ARGUMENT, 6, NULL},
      {"w1 NULL", "args->gemm1_weights", MOE_STATUS_INVALID_ARGUMENT, 7, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    moe_grouped_args a;
    valid_args(&a, hid, cn, &f.w, out);
    size_t b = bytes;
    moe_cuda_stream_t st = NULL;
    switch (cases[i].field) {
      case 0:
        a.hidden_states = cases[i].t;
        break;
      case 1:
        a.expert_counts = cases[i].t;
        break;
      case 2:
        a.output = cases[i].t;
        break;
      case 3:
        a.version = 0;
        break;
      case 4:
        a.reserved[2] = 1;
        break;
      case 5:
        b = bytes - 1;
        break;
      case 6:
        st = (moe_cuda_stream_t)(uintptr_t)0x100;
        break;
      case 7:
        a.gemm1_weights = NULL;
        break;
    }
    tmem_poison(B, out->t.data, out->bytes);
    tmem_poison(B, out3->t.data, out3->bytes);
    moe_status_t s = moe_runner_run_grouped(f.r, &p, &a, cfg, ws, b, st);
    CHECK(s == cases[i].want, "%s: expected status %d, given %d (%s)", cases[i].what, cases[i].want,
          s, moe_get_last_error());
    CHECK(strstr(moe_get_last_error(), cases[i].arg) != NULL, "%s: message '%s' does not name %s",
          cases[i].what, moe_get_last_error(), cases[i].arg);
    const uint16_t *o = (const uint16_t *)out->t.data, *o3 = (const uint16_t *)out3->t.data;
    int64_t touched = 0;
    for (int64_t k = 0; k < N * H; ++k) touched += (o[k] != POISON) + (o3[k] != POISON);
    CHECK(touched == 0, "%s: output written on failure", cases[i].what);
  }
  /* the valid call with these tensors succeeds (so the cases above fail for their reason) */
  {
    moe_grouped_args a;
    valid_args(&a, hid, cn, &f.w, out);
    CHECK_OK(moe_runner_run_grouped(f.r, &p, &a, cfg, ws, bytes, NULL));
  }
  /* init and sizing misuse */
  CHECK(moe_grouped_args_init(NULL, 1) == MOE_STATUS_INVALID_ARGUMENT, "init NULL");
  {
    moe_grouped_args a;
    CHECK(moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION + 1) == MOE_STATUS_VERSION_MISMATCH,
          "init version");
  }
  CHECK(moe_runner_get_grouped_workspace_size(f.r, &p, cfg, NULL) == MOE_STATUS_INVALID_ARGUMENT,
        "sizing NULL bytes");
  CHECK(moe_runner_get_grouped_workspace_size(f.r, &p, 100000, &bytes) == MOE_STATUS_INVALID_CONFIG,
        "sizing bad config");
  CHECK(moe_runner_get_grouped_workspace_size(NULL, &p, cfg, &bytes) == MOE_STATUS_INVALID_ARGUMENT,
        "sizing NULL runner");
  tt_free(hid), tt_free(hid_short), tt_free(hid_f32), tt_free(out), tt_free(out3), tt_free(cn),
      tt_free(cn_short), tt_free(cn_f32);
  tmem_free(B, ws);
  free(hc);
  fx_free(&f);
}

/* The workspace of a smaller N fits in one sized for a larger N (sizing by N_max). */
static void test_sizing_monotone(void) {
  moe_runner *r = t_runner(B, MOE_ACTIVATION_SWIGLU);
  if (!r) return;
  moe_problem p;
  size_t prev = 0;
  for (int64_t N = 0; N <= 300; N += 7) {
    t_problem(&p, 16, N, 1, 4, 8, 128, 64);
    int32_t cfg = 0;
    size_t b = 0;
    CHECK_OK(moe_runner_get_default_config(r, &p, &cfg));
    t_problem(&p, 16, 300, 1, 4, 8, 128, 64);
    size_t bmax = 0;
    CHECK_OK(moe_runner_get_grouped_workspace_size(r, &p, cfg, &bmax));
    t_problem(&p, 16, N, 1, 4, 8, 128, 64);
    CHECK_OK(moe_runner_get_grouped_workspace_size(r, &p, cfg, &b));
    CHECK(b <= bmax, "N=%lld: %zu bytes > N_max's %zu", (long long)N, b, bmax);
    CHECK(b > 0, "N=%lld: 0 bytes", (long long)N);
    (void)prev;
  }
  moe_runner_destroy(r);
}

/* FP8 runners and the CUDA backend: NOT_SUPPORTED with a message. */
static void test_not_supported(void) {
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = B;
  o.activation_dtype = MOE_DTYPE_FP8_E4M3;
  o.weight_dtype = MOE_DTYPE_FP8_E4M3;
  o.scaling_mode = MOE_SCALING_BLOCK;
  moe_runner *r = NULL;
  if (!CHECK_OK(moe_runner_create(&o, &r))) {
    moe_problem p;
    t_problem(&p, 8, 16, 1, 0, 8, 128, 128);
    int32_t cfg = 0;
    CHECK_OK(moe_runner_get_default_config(r, &p, &cfg));
    moe_grouped_args a;
    moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION);
    char ws[512] __attribute__((aligned(256)));
    moe_status_t s = moe_runner_run_grouped(r, &p, &a, cfg, ws, sizeof ws, NULL);
    CHECK(s == MOE_STATUS_NOT_SUPPORTED, "FP8 runner: expected NOT_SUPPORTED, given %d", s);
    CHECK(strstr(moe_get_last_error(), "BF16") != NULL, "FP8 runner message: '%s'",
          moe_get_last_error());
    moe_runner_destroy(r);
  }
  /* a CUDA runner sized without a device (sm_version 90), where the build has CUDA */
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = MOE_BACKEND_CUDA;
  o.sm_version = 90;
  r = NULL;
  if (moe_runner_create(&o, &r) == MOE_STATUS_SUCCESS) {
    moe_problem p;
    t_problem(&p, 8, 16, 1, 0, 8, 128, 128);
    int32_t cfg = 0;
    size_t bytes = 0;
    CHECK_OK(moe_runner_get_default_config(r, &p, &cfg));
    CHECK_OK(moe_runner_get_grouped_workspace_size(r, &p, cfg, &bytes));
    moe_grouped_args a;
    moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION);
    moe_status_t s = moe_runner_run_grouped(r, &p, &a, cfg, NULL, bytes, NULL);
    CHECK(s == MOE_STATUS_NOT_SUPPORTED, "CUDA runner: expected NOT_SUPPORTED, given %d", s);
    CHECK(strstr(moe_get_last_error(), "CUDA backend") != NULL, "CUDA message: '%s'",
          moe_get_last_error());
    moe_runner_destroy(r);
  } else {
    printf("test_grouped: no CUDA runner in this build; CUDA NOT_SUPPORTED case skipped\n");
  }
}

int main(void) {
  /* an EP slice: local experts [2, 6) of 8; K = 2; H, I with SwiGLU and biases */
  test_equal_to_run(1, 8, 2, 4, 40, 2, 128, 64);
  test_equal_to_run(2, 16, 12, 4, 100, 4, 64, 128); /* last slice */
  test_equal_to_run(3, 8, 0, 8, 33, 1, 128, 64);    /* no EP: all experts local */
  test_equal_to_run(4, 8, 2, 4, 1, 2, 128, 64);     /* T = 1 */
  test_equal_to_run(5, 8, 2, 4, 0, 2, 128, 64);     /* T = 0: N = 0 */
  test_edge_n();
  test_misuse();
  test_sizing_monotone();
  test_not_supported();
  return tc_summary("test_grouped");
}
