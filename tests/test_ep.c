/*
 * test_ep.c - moe_ep (include/moe_trtllm_ep.h, docs/ep.md) on the CPU backend with the
 * loopback transport: R ranks are threads of this process.
 *  - dispatch -> local experts -> combine for R = 1, 2, 4: every rank's output equals, bit for
 *    bit, the single-process moe_runner_run forward (all E experts, do_finalize = 1) of the
 *    same tokens and routing; random seeded inputs with gemm biases and SwiGLU parameters;
 *    balanced and skewed routing (ranks that receive zero rows), T = 0, 1 and larger, tokens
 *    per rank differing, fp32 and bf16 routing weights, several forwards on one handle;
 *  - misuse: create (NULL handles and pointers, versions, transport, rank, equal slices,
 *    mismatched options between ranks) and forward (shapes, ids, T > max_tokens, workspace,
 *    stream, max_recv_rows; a rank with bad arguments makes every rank fail) -> the status and
 *    a message naming the argument with the expected and given values; outputs untouched.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "moe_trtllm_ep.h"

#define B MOE_BACKEND_CPU
#define MAXR 4
#define POISON 0xFFFFu

/* Routing of a case. */
#define ROUTE_BALANCED 0 /* ids uniform over [0, E) */
#define ROUTE_SKEWED 1   /* ids from rank 0's experts only: the other ranks receive nothing */
#define ROUTE_HOT 2      /* half the tokens on rank R-1's first expert, the rest uniform */

typedef struct ep_case {
  int32_t R, El, K;
  int64_t H, I;
  int64_t T[MAXR];
  int route;
  int weights_bf16;
  uint64_t seed;
  int repeats; /* forwards per handle (each with a new routing) */
} ep_case;

/* Everything the rank threads share. */
typedef struct world {
  ep_case c;
  int32_t E;
  moe_runner *r;
  moe_ep_loopback *g;
  t_expert_data d;
  int64_t off[MAXR + 1]; /* first token of each rank */
  int32_t *ids;          /* [Tsum, K] per repeat */
  float *wf;             /* [Tsum, K] */
  uint16_t *wb;          /* [Tsum, K] */
  uint16_t *ref;         /* [Tsum, H] */
  t_weights lw[MAXR];    /* each rank's prepared local weights */
  int64_t mismatched;    /* elements differing from the reference, all ranks */
  int failed;
} world;

typedef struct rank_arg {
  world *w;
  int32_t rank;
} rank_arg;

static void gen_routing(world *w, int rep) {
  const ep_case *c = &w->c;
  const int64_t Ts = w->off[c->R];
  t_rng rng = {c->seed * 1000003u + (uint64_t)rep * 7919u + 17u};
  for (int64_t t = 0; t < Ts; ++t)
    for (int32_t k = 0; k < c->K; ++k) {
      int32_t id;
      int dup;
      do {
        if (c->route == ROUTE_SKEWED)
          id = (int32_t)t_rng_range(&rng, 0, c->El - 1);
        else if (c->route == ROUTE_HOT && k == 0 && t % 2 == 0)
          id = (c->R - 1) * c->El;
        else
          id = (int32_t)t_rng_range(&rng, 0, w->E - 1);
        dup = 0;
        for (int32_t j = 0; j < k; ++j) dup |= w->ids[t * c->K + j] == id;
      } while (dup);
      w->ids[t * c->K + k] = id;
      /* weights in (-0.5, 1.5): sums of different signs, rounding visible */
      const float v = (float)(t_rng_next(&rng) % 100000) / 50000.0f - 0.5f;
      w->wf[t * c->K + k] = v;
      w->wb[t * c->K + k] = f32_to_bf16(v);
    }
}

/* The single-process forward (all E experts on one runner) of each rank's tokens. */
static int reference(world *w, const t_weights *full) {
  const ep_case *c = &w->c;
  const t_moe_in in = t_expert_data_in(&w->d);
  for (int32_t r = 0; r < c->R; ++r) {
    const int64_t T = c->T[r];
    moe_problem p;
    t_problem(&p, w->E, T, c->K, 0, w->E, c->H, c->I);
    t_route rt;
    t_route_init(&rt);
    rt.method = MOE_ROUTING_TOPK;
    rt.input = T_INPUT_IDS;
    rt.ids = w->ids + w->off[r] * c->K;
    rt.weights_f32 = !c->weights_bf16;
    rt.weights = c->weights_bf16 ? (const void *)(w->wb + w->off[r] * c->K)
                                 : (const void *)(w->wf + w->off[r] * c->K);
    t_moe_in rin = in;
    rin.hidden = in.hidden + w->off[r] * c->H;
    int32_t cfg = 0;
    t_ws ws = {0};
    moe_plan plan;
    int bad = CHECK_OK(moe_runner_get_default_config(w->r, &p, &cfg)) ||
              CHECK_OK(t_ws_alloc(w->r, B, &p, cfg, &ws)) ||
              CHECK_OK(t_prepare(w->r, B, &p, &rt, cfg, &ws, &plan)) ||
              CHECK_OK(t_run(w->r, B, &p, MOE_ACTIVATION_SWIGLU, &rin, full, cfg, &plan, &ws, 1,
                             w->ref + w->off[r] * c->H));
    t_ws_free(&ws);
    if (bad) return 1;
  }
  return 0;
}

static void ep_options(const world *w, int32_t rank, moe_ep_options *o) {
  moe_ep_options_init(o, MOE_EP_OPTIONS_VERSION);
  o->transport = MOE_EP_TRANSPORT_LOOPBACK;
  o->comm = w->g;
  o->rank = rank;
  o->num_experts = w->E;
  o->local_num_experts = w->c.El;
  o->top_k = w->c.K;
  o->hidden_size = w->c.H;
  o->intermediate_size = w->c.I;
  int64_t tmax = 0;
  for (int32_t r = 0; r < w->c.R; ++r) tmax = w->c.T[r] > tmax ? w->c.T[r] : tmax;
  o->max_tokens = tmax;
}

/* The tensors of one rank's forward, on the host. */
typedef struct rank_tensors {
  ttensor *hid, *ids, *wts, *out, *b1, *b2, *al, *be, *cl;
} rank_tensors;

static void rank_tensors_make(const world *w, int32_t rank, rank_tensors *t) {
  const ep_case *c = &w->c;
  const int64_t T = c->T[rank], o = w->off[rank], El = c->El, H = c->H, I = c->I;
  const int64_t e0 = (int64_t)rank * El;
  t->hid = tt_from_host(B, DT_BF16, 2, (int64_t[]){T, H}, w->d.hidden + o * H);
  t->ids = tt_from_host(B, DT_I32, 2, (int64_t[]){T, c->K}, w->ids + o * c->K);
  t->wts = c->weights_bf16 ? tt_from_host(B, DT_BF16, 2, (int64_t[]){T, c->K}, w->wb + o * c->K)
                           : tt_from_host(B, DT_F32, 2, (int64_t[]){T, c->K}, w->wf + o * c->K);
  t->out = tt_new(B, DT_BF16, 2, (int64_t[]){T, H});
  tmem_poison(B, t->out->t.data, t->out->bytes);
  t->b1 = tt_from_host(B, DT_F32, 2, (int64_t[]){El, 2 * I}, w->d.b1 + e0 * 2 * I);
  t->b2 = tt_from_host(B, DT_F32, 2, (int64_t[]){El, H}, w->d.b2 + e0 * H);
  t->al = tt_from_host(B, DT_F32, 1, (int64_t[]){El}, w->d.alpha + e0);
  t->be = tt_from_host(B, DT_F32, 1, (int64_t[]){El}, w->d.beta + e0);
  t->cl = tt_from_host(B, DT_F32, 1, (int64_t[]){El}, w->d.clamp + e0);
}

static void rank_tensors_free(rank_tensors *t) {
  tt_free(t->hid), tt_free(t->ids), tt_free(t->wts), tt_free(t->out), tt_free(t->b1);
  tt_free(t->b2), tt_free(t->al), tt_free(t->be), tt_free(t->cl);
}

static void forward_args(const world *w, int32_t rank, const rank_tensors *t,
                         moe_ep_forward_args *a) {
  moe_ep_forward_args_init(a, MOE_EP_FORWARD_ARGS_VERSION);
  a->hidden_states = &t->hid->t;
  a->topk_ids = &t->ids->t;
  a->topk_weights = &t->wts->t;
  a->gemm1_weights = &w->lw[rank].w1->t;
  a->gemm2_weights = &w->lw[rank].w2->t;
  a->gemm1_bias = &t->b1->t;
  a->gemm2_bias = &t->b2->t;
  a->gemm1_alpha = &t->al->t;
  a->gemm1_beta = &t->be->t;
  a->gemm1_clamp_limit = &t->cl->t;
  a->output = &t->out->t;
}

/* A barrier among the rank threads of the test (between repeats: the main thread regenerates
 * the routing and the reference). */
static pthread_barrier_t g_bar;

/* Checks inside rank threads: the harness counters (common.c) are not thread-safe, so a rank
 * thread prints its failure and raises @p failed; the main thread checks the flag. */
static void rank_fail(int *failed, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  __atomic_store_n(failed, 1, __ATOMIC_RELAXED);
}
#define RANK_CHECK(failed, cond, ...)              \
  do {                                             \
    if (!(cond)) rank_fail((failed), __VA_ARGS__); \
  } while (0)

static void *rank_main(void *p) {
  rank_arg *ra = (rank_arg *)p;
  world *w = ra->w;
  const int32_t rank = ra->rank;
  moe_ep_options o;
  ep_options(w, rank, &o);
  moe_ep *ep = NULL;
  moe_status_t s = moe_ep_create(w->r, &o, &ep);
  RANK_CHECK(&w->failed, !s, "rank %d: moe_ep_create: %d %s", rank, s, moe_get_last_error());
  size_t bytes = 0;
  if (ep) s = moe_ep_get_workspace_size(ep, &bytes);
  RANK_CHECK(&w->failed, !s, "rank %d: workspace size: %s", rank, moe_get_last_error());
  void *ws = tmem_alloc(B, bytes);
  for (int rep = 0; rep < w->c.repeats; ++rep) {
    pthread_barrier_wait(&g_bar); /* routing and reference of this repeat are ready */
    if (ep) {
      rank_tensors t;
      rank_tensors_make(w, rank, &t);
      moe_ep_forward_args a;
      forward_args(w, rank, &t, &a);
      s = moe_ep_forward(ep, &a, ws, bytes, NULL);
      RANK_CHECK(&w->failed, !s, "rank %d repeat %d: moe_ep_forward: %d %s", rank, rep, s,
                 moe_get_last_error());
      if (!s) {
        const int64_t n = w->c.T[rank] * w->c.H;
        const uint16_t *got = (const uint16_t *)t.out->t.data;
        const uint16_t *ref = w->ref + w->off[rank] * w->c.H;
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) bad += got[i] != ref[i];
        __atomic_add_fetch(&w->mismatched, bad, __ATOMIC_RELAXED);
        moe_ep_timings tm = {0};
        moe_ep_get_timings(ep, &tm);
        RANK_CHECK(&w->failed, tm.sent_rows == w->c.T[rank] * w->c.K,
                   "rank %d: sent_rows %lld, expected %lld", rank, (long long)tm.sent_rows,
                   (long long)(w->c.T[rank] * w->c.K));
      }
      rank_tensors_free(&t);
    }
    pthread_barrier_wait(&g_bar); /* this repeat's forwards are done */
  }
  tmem_free(B, ws);
  moe_ep_destroy(ep);
  return NULL;
}

/* The world of a case: runner, loopback group, seeded data of E experts and sum(T) tokens, the
 * routing of repeat 0, every rank's prepared local weights, and (with_full) all E experts
 * prepared for the reference. Returns 0 on success. */
static int world_init(world *w, const ep_case *c, t_weights *full) {
  memset(w, 0, sizeof *w);
  w->c = *c;
  w->E = c->R * c->El;
  if (!w->c.repeats) w->c.repeats = 1;
  for (int32_t r = 0; r < c->R; ++r) w->off[r + 1] = w->off[r] + c->T[r];
  const int64_t Ts = w->off[c->R];
  w->r = t_runner(B, MOE_ACTIVATION_SWIGLU);
  if (!w->r || CHECK_OK(moe_ep_loopback_create(c->R, &w->g))) return 1;
  t_expert_data_gen(c->seed, Ts, w->E, c->H, c->I, 1, 1, 1, &w->d);
  w->ids = t_xmalloc(sizeof(int32_t) * (size_t)(Ts * c->K + 1));
  w->wf = t_xmalloc(sizeof(float) * (size_t)(Ts * c->K + 1));
  w->wb = t_xmalloc(sizeof(uint16_t) * (size_t)(Ts * c->K + 1));
  w->ref = t_xmalloc(sizeof(uint16_t) * (size_t)(Ts * c->H + 1));
  gen_routing(w, 0);
  const t_moe_in in = t_expert_data_in(&w->d);
  moe_problem p;
  t_problem(&p, w->E, Ts, c->K, 0, w->E, c->H, c->I);
  int bad = full && CHECK_OK(t_weights_prepare(w->r, B, &p, MOE_ACTIVATION_SWIGLU, &in, full));
  for (int32_t r = 0; r < c->R && !bad; ++r) {
    const int64_t e0 = (int64_t)r * c->El;
    t_moe_in li = in;
    li.w1 = in.w1 + e0 * 2 * c->I * c->H;
    li.w2 = in.w2 + e0 * c->H * c->I;
    t_problem(&p, w->E, c->T[r], c->K, (int32_t)e0, c->El, c->H, c->I);
    bad = CHECK_OK(t_weights_prepare(w->r, B, &p, MOE_ACTIVATION_SWIGLU, &li, &w->lw[r]));
  }
  return bad;
}

static void world_free(world *w) {
  for (int32_t r = 0; r < w->c.R; ++r) t_weights_free(&w->lw[r]);
  t_expert_data_free(&w->d);
  free(w->ids), free(w->wf), free(w->wb), free(w->ref);
  moe_ep_loopback_destroy(w->g);
  moe_runner_destroy(w->r);
}

static void run_case(const ep_case *c, const char *what) {
  world w;
  t_weights full = {0};
  if (world_init(&w, c, &full)) {
    CHECK(0, "%s: setup failed", what);
  } else {
    pthread_barrier_init(&g_bar, NULL, (unsigned)c->R + 1);
    pthread_t th[MAXR];
    rank_arg ra[MAXR];
    for (int32_t r = 0; r < c->R; ++r) {
      ra[r] = (rank_arg){&w, r};
      pthread_create(&th[r], NULL, rank_main, &ra[r]);
    }
    for (int rep = 0; rep < w.c.repeats; ++rep) {
      gen_routing(&w, rep);
      if (reference(&w, &full)) w.failed = 1;
      pthread_barrier_wait(&g_bar);
      pthread_barrier_wait(&g_bar);
    }
    for (int32_t r = 0; r < c->R; ++r) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g_bar);
    CHECK(!w.failed && w.mismatched == 0,
          "%s: %lld output elements differ from the single-process forward", what,
          (long long)w.mismatched);
  }
  t_weights_free(&full);
  world_free(&w);
}

static void test_forward_equals_single(void) {
  /* R, El, K, H, I, T per rank, route, bf16 weights, seed, repeats */
  const ep_case cases[] = {
      {1, 4, 2, 64, 64, {37}, ROUTE_BALANCED, 0, 1, 2},
      {1, 4, 2, 64, 64, {0}, ROUTE_BALANCED, 0, 2, 1},
      {1, 4, 4, 64, 64, {1}, ROUTE_BALANCED, 1, 3, 1},
      {2, 3, 2, 64, 64, {40, 29}, ROUTE_BALANCED, 0, 4, 2},
      {2, 3, 3, 64, 64, {25, 1}, ROUTE_SKEWED, 1, 5, 1},
      {2, 3, 2, 64, 64, {0, 0}, ROUTE_BALANCED, 0, 6, 1},
      {2, 3, 2, 64, 64, {1, 0}, ROUTE_BALANCED, 0, 7, 1},
      {4, 2, 2, 64, 64, {33, 0, 1, 70}, ROUTE_BALANCED, 0, 8, 2},
      {4, 2, 2, 64, 64, {20, 20, 20, 20}, ROUTE_SKEWED, 0, 9, 1},
      {4, 2, 3, 128, 64, {64, 17, 0, 5}, ROUTE_HOT, 1, 10, 1},
      {4, 3, 8, 64, 128, {150, 130, 9, 1}, ROUTE_BALANCED, 0, 11, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    const ep_case *c = &cases[i];
    char what[160];
    snprintf(what, sizeof what, "R=%d El=%d K=%d H=%lld T=[%lld %lld %lld %lld] route=%d bf16w=%d",
             c->R, c->El, c->K, (long long)c->H, (long long)c->T[0], (long long)c->T[1],
             (long long)c->T[2], (long long)c->T[3], c->route, c->weights_bf16);
    run_case(c, what);
  }
}

/* ---- misuse ---------------------------------------------------------------------------------- */

static void expect(moe_status_t s, moe_status_t want, const char *const *needles,
                   const char *what) {
  const char *m = moe_get_last_error();
  CHECK(s == want, "%s: expected status %d, given %d (%s)", what, want, s, m);
  for (int i = 0; needles[i]; ++i)
    CHECK(strstr(m, needles[i]) != NULL, "%s: message '%s' does not contain '%s'", what, m,
          needles[i]);
}
#define EXPECT(s, want, what, ...) \
  expect((s), (want), (const char *const[]){__VA_ARGS__, NULL}, what)

static void test_create_misuse(void) {
  moe_runner *r = t_runner(B, MOE_ACTIVATION_SWIGLU);
  moe_ep_loopback *g = NULL;
  CHECK_OK(moe_ep_loopback_create(1, &g));
  moe_ep_options o;
  moe_ep *ep = (moe_ep *)&o;
  moe_ep_options_init(&o, MOE_EP_OPTIONS_VERSION);
  o.transport = MOE_EP_TRANSPORT_LOOPBACK, o.comm = g, o.rank = 0;
  o.num_experts = 4, o.local_num_experts = 4, o.top_k = 2, o.hidden_size = 64;
  o.intermediate_size = 64, o.max_tokens = 8;
  moe_ep_options b = o;

  EXPECT(moe_ep_create(r, &o, NULL), MOE_STATUS_INVALID_ARGUMENT, "out NULL", "out");
  EXPECT(moe_ep_create(NULL, &o, &ep), MOE_STATUS_INVALID_ARGUMENT, "runner NULL", "runner");
  CHECK(ep == NULL, "out not cleared on failure");
  EXPECT(moe_ep_create(r, NULL, &ep), MOE_STATUS_INVALID_ARGUMENT, "opts NULL", "opts");
  b.version = 99;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_VERSION_MISMATCH, "version", "options->version",
         "99");
  b = o, b.transport = 7;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "transport", "options->transport",
         "given 7");
  b = o, b.comm = NULL;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "loopback comm NULL",
         "options->comm", "NULL");
  b = o, b.rank = 1;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "rank past the group",
         "options->rank", "expected 0..0", "given 1");
  b = o, b.num_experts = 5;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "E != R * E_l",
         "options->num_experts", "1 x local_num_experts 4 = 4", "given 5");
  b = o, b.local_num_experts = 0;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "E_l 0",
         "options->local_num_experts", "given 0");
  b = o, b.top_k = 5;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "K > E", "options->top_k",
         "expected 1..4", "given 5");
  b = o, b.hidden_size = 0;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "H 0", "options->hidden_size");
  b = o, b.max_tokens = -1;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "T_max < 0", "options->max_tokens",
         "given -1");
  b = o, b.max_recv_rows = -3;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "max_recv_rows < 0",
         "options->max_recv_rows", "given -3");
  b = o, b.max_tokens = (int64_t)1 << 40;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "T_max x K past int32",
         "options->max_tokens", "int32");
  b = o, b.config = 100000;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_CONFIG, "unknown config", "config");
  b = o, b.reserved[2] = 1;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "reserved",
         "options->reserved[2]");
  b = o, b.transport = MOE_EP_TRANSPORT_NCCL, b.comm = (void *)&b; /* never touched */
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_NOT_SUPPORTED, "NCCL with a CPU runner", "runner",
         "CUDA runner");
  b = o, b.transport = MOE_EP_TRANSPORT_NCCL, b.comm = NULL;
  EXPECT(moe_ep_create(r, &b, &ep), MOE_STATUS_INVALID_ARGUMENT, "NCCL comm NULL", "options->comm",
         "ncclComm_t");
  EXPECT(moe_ep_options_init(NULL, 1), MOE_STATUS_INVALID_ARGUMENT, "init NULL", "opts");
  EXPECT(moe_ep_options_init(&b, 2), MOE_STATUS_VERSION_MISMATCH, "init version", "given 2");
  moe_ep_loopback *g0 = g;
  EXPECT(moe_ep_loopback_create(0, &g0), MOE_STATUS_INVALID_ARGUMENT, "world 0", "world_size",
         "given 0");
  CHECK(g0 == NULL, "loopback_create: out not cleared on failure");
  EXPECT(moe_ep_loopback_create(1, NULL), MOE_STATUS_INVALID_ARGUMENT, "group out NULL", "out");
  EXPECT(moe_ep_get_workspace_size(NULL, &(size_t){0}), MOE_STATUS_INVALID_ARGUMENT, "ws NULL ep",
         "ep");
  EXPECT(moe_ep_get_rank(NULL, NULL, NULL), MOE_STATUS_INVALID_ARGUMENT, "rank NULL ep", "ep");
  EXPECT(moe_ep_set_timing(NULL, 1), MOE_STATUS_INVALID_ARGUMENT, "timing NULL ep", "ep");
  moe_ep_destroy(NULL);
  moe_ep_loopback_destroy(NULL);
  moe_ep_loopback_destroy(g);
  moe_runner_destroy(r);
}

/* Two ranks with different options: every rank fails, naming the option. */
typedef struct pair_arg {
  moe_runner *r;
  moe_ep_options o;
  moe_status_t s;
  char msg[1024];
} pair_arg;

static void *create_main(void *p) {
  pair_arg *a = (pair_arg *)p;
  moe_ep *ep = NULL;
  a->s = moe_ep_create(a->r, &a->o, &ep);
  snprintf(a->msg, sizeof a->msg, "%s", moe_get_last_error());
  moe_ep_destroy(ep);
  return NULL;
}

static void create_pair(moe_runner *r, moe_ep_loopback *g, const moe_ep_options *o0,
                        const moe_ep_options *o1, pair_arg *out) {
  pthread_t th[2];
  out[0] = (pair_arg){r, *o0, 0, ""};
  out[1] = (pair_arg){r, *o1, 0, ""};
  out[0].o.comm = out[1].o.comm = g;
  out[0].o.rank = 0, out[1].o.rank = 1;
  for (int i = 0; i < 2; ++i) pthread_create(&th[i], NULL, create_main, &out[i]);
  for (int i = 0; i < 2; ++i) pthread_join(th[i], NULL);
}

static void test_mismatched_slices(void) {
  moe_runner *r = t_runner(B, MOE_ACTIVATION_SWIGLU);
  moe_ep_loopback *g = NULL;
  CHECK_OK(moe_ep_loopback_create(2, &g));
  moe_ep_options o;
  moe_ep_options_init(&o, MOE_EP_OPTIONS_VERSION);
  o.transport = MOE_EP_TRANSPORT_LOOPBACK;
  o.num_experts = 4, o.local_num_experts = 2, o.top_k = 2, o.hidden_size = 64;
  o.intermediate_size = 64, o.max_tokens = 8;
  moe_ep_options o1 = o;
  pair_arg a[2];
  /* rank 1 owns 3 of 6 experts: consistent alone, not with rank 0 */
  o1.num_experts = 6, o1.local_num_experts = 3;
  create_pair(r, g, &o, &o1, a);
  for (int i = 0; i < 2; ++i) {
    CHECK(a[i].s == MOE_STATUS_INVALID_ARGUMENT, "unequal slices, rank %d: status %d (%s)", i,
          a[i].s, a[i].msg);
    CHECK(strstr(a[i].msg, "options->local_num_experts") && strstr(a[i].msg, "expected 2") &&
              strstr(a[i].msg, "given 3"),
          "unequal slices, rank %d: message '%s'", i, a[i].msg);
  }
  /* rank 1: 3 local experts of 4 with 2 ranks: its own check fails, rank 0 is told */
  o1 = o, o1.local_num_experts = 3;
  create_pair(r, g, &o, &o1, a);
  CHECK(a[1].s == MOE_STATUS_INVALID_ARGUMENT &&
            strstr(a[1].msg,
                   "options->num_experts: expected world size 2 x local_num_experts 3 "
                   "= 6") &&
            strstr(a[1].msg, "given 4"),
        "rank 1 slice: %d '%s'", a[1].s, a[1].msg);
  CHECK(a[0].s == MOE_STATUS_INVALID_ARGUMENT && strstr(a[0].msg, "rank 1 of 2"),
        "rank 0 of a failing pair: %d '%s'", a[0].s, a[0].msg);
  /* another shape option differs */
  o1 = o, o1.hidden_size = 128;
  create_pair(r, g, &o, &o1, a);
  for (int i = 0; i < 2; ++i)
    CHECK(a[i].s == MOE_STATUS_INVALID_ARGUMENT && strstr(a[i].msg, "options->hidden_size") &&
              strstr(a[i].msg, "expected 64") && strstr(a[i].msg, "given 128"),
          "hidden_size mismatch, rank %d: %d '%s'", i, a[i].s, a[i].msg);
  /* both equal: success (the group is still in step after the failures) */
  create_pair(r, g, &o, &o, a);
  CHECK(a[0].s == 0 && a[1].s == 0, "equal options: %d %d (%s / %s)", a[0].s, a[1].s, a[0].msg,
        a[1].msg);
  moe_ep_loopback_destroy(g);
  moe_runner_destroy(r);
}

/* Forward misuse on one rank (R = 1): each case returns its status, names the argument and
 * leaves the output untouched. */
static void test_forward_misuse(void) {
  const ep_case c = {1, 4, 2, 64, 64, {6}, ROUTE_BALANCED, 0, 31, 1};
  world w;
  if (world_init(&w, &c, NULL)) {
    CHECK(0, "misuse world setup failed");
    world_free(&w);
    return;
  }
  moe_ep_options o;
  ep_options(&w, 0, &o);
  o.max_tokens = 6;
  moe_ep *ep = NULL;
  CHECK_OK(moe_ep_create(w.r, &o, &ep));
  size_t bytes = 0;
  CHECK_OK(moe_ep_get_workspace_size(ep, &bytes));
  void *ws = tmem_alloc(B, bytes);
  rank_tensors t;
  rank_tensors_make(&w, 0, &t);
  moe_ep_forward_args a, b;
  forward_args(&w, 0, &t, &a);
  ttensor *wide = tt_new(B, DT_BF16, 2, (int64_t[]){6, 128});
  ttensor *ids3 = tt_new(B, DT_I32, 2, (int64_t[]){6, 3});
  ttensor *ti8 = tt_new(B, DT_U8, 2, (int64_t[]){6, 2});
  ttensor *out5 = tt_new(B, DT_BF16, 2, (int64_t[]){5, 64});
  int32_t badids[12];
  memcpy(badids, w.ids, sizeof badids);
  badids[7] = 9;
  ttensor *idsbad = tt_from_host(B, DT_I32, 2, (int64_t[]){6, 2}, badids);
#define MISUSE(args, wsb, stream, want, what, ...)                                                \
  do {                                                                                            \
    tmem_poison(B, t.out->t.data, t.out->bytes);                                                  \
    EXPECT(moe_ep_forward(ep, (args), ws, (wsb), (stream)), want, what, __VA_ARGS__);             \
    int64_t touched = 0;                                                                          \
    for (size_t i = 0; i < t.out->bytes / 2; ++i)                                                 \
      touched += ((const uint16_t *)t.out->t.data)[i] != POISON;                                  \
    CHECK(touched == 0, "%s: %lld output elements written on failure", what, (long long)touched); \
  } while (0)
  EXPECT(moe_ep_forward(NULL, &a, ws, bytes, NULL), MOE_STATUS_INVALID_ARGUMENT, "NULL ep", "ep");
  MISUSE(NULL, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "NULL args", "args");
  b = a, b.version = 5;
  MISUSE(&b, bytes, NULL, MOE_STATUS_VERSION_MISMATCH, "args version", "args->version", "given 5");
  b = a, b.reserved[3] = 1;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "reserved", "args->reserved[3]");
  b = a, b.hidden_states = &wide->t;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "hidden H", "args->hidden_states");
  b = a, b.hidden_states = NULL;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "hidden NULL", "args->hidden_states");
  b = a, b.topk_ids = &ids3->t;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "ids K", "args->topk_ids");
  b = a, b.topk_ids = &idsbad->t;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "id out of range", "args->topk_ids[3, 1]",
         "[0, 4)", "given 9");
  b = a, b.topk_weights = &ti8->t;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "weights dtype", "args->topk_weights");
  b = a, b.output = &out5->t;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "output T", "args->output");
  b = a, b.gemm1_weights = NULL;
  MISUSE(&b, bytes, NULL, MOE_STATUS_INVALID_ARGUMENT, "W1 NULL", "gemm1_weights");
  MISUSE(&a, bytes - 1, NULL, MOE_STATUS_INSUFFICIENT_WORKSPACE, "workspace", "workspace_bytes");
  MISUSE(&a, bytes, (moe_cuda_stream_t)&b, MOE_STATUS_INVALID_ARGUMENT, "stream", "stream");
  /* T > max_tokens: a 7-token input against max_tokens 6 */
  moe_ep_options o2 = o;
  o2.max_tokens = 5;
  moe_ep *ep5 = NULL;
  CHECK_OK(moe_ep_create(w.r, &o2, &ep5));
  size_t b5 = 0;
  CHECK_OK(moe_ep_get_workspace_size(ep5, &b5));
  CHECK(b5 < bytes, "workspace for max_tokens 5 (%zu) not smaller than for 6 (%zu)", b5, bytes);
  EXPECT(moe_ep_forward(ep5, &a, ws, bytes, NULL), MOE_STATUS_INVALID_ARGUMENT, "T > T_max",
         "args->hidden_states", "at most options->max_tokens = 5", "given 6");
  moe_ep_destroy(ep5);
  /* max_recv_rows: 12 rows arrive, 11 allowed */
  o2 = o, o2.max_recv_rows = 11;
  CHECK_OK(moe_ep_create(w.r, &o2, &ep5));
  EXPECT(moe_ep_forward(ep5, &a, ws, bytes, NULL), MOE_STATUS_INVALID_ARGUMENT, "max_recv_rows",
         "options->max_recv_rows", "rank 0 would receive 12 rows", "at most 11");
  moe_ep_destroy(ep5);
  /* and the valid call still works on the handle */
  CHECK_OK(moe_ep_forward(ep, &a, ws, bytes, NULL));
  tt_free(wide), tt_free(ids3), tt_free(ti8), tt_free(out5), tt_free(idsbad);
  rank_tensors_free(&t);
  tmem_free(B, ws);
  moe_ep_destroy(ep);
  world_free(&w);
}

/* R = 2: rank 1 passes an id out of range; both ranks fail (no rank waits forever). */
typedef struct bad_rank_arg {
  world *w;
  int32_t rank;
  moe_status_t s;
  char msg[1024];
  int failed; /* a setup step failed, or the output was written */
} bad_rank_arg;

static void *bad_rank_main(void *p) {
  bad_rank_arg *ra = (bad_rank_arg *)p;
  world *w = ra->w;
  moe_ep_options o;
  ep_options(w, ra->rank, &o);
  moe_ep *ep = NULL;
  size_t bytes = 0;
  const moe_status_t s = moe_ep_create(w->r, &o, &ep);
  RANK_CHECK(&ra->failed, !s && !moe_ep_get_workspace_size(ep, &bytes), "rank %d: setup: %s",
             ra->rank, moe_get_last_error());
  void *ws = tmem_alloc(B, bytes);
  rank_tensors t;
  rank_tensors_make(w, ra->rank, &t);
  if (ra->rank == 1) ((int32_t *)t.ids->t.data)[3] = -2;
  moe_ep_forward_args a;
  forward_args(w, ra->rank, &t, &a);
  ra->s = moe_ep_forward(ep, &a, ws, bytes, NULL);
  snprintf(ra->msg, sizeof ra->msg, "%s", moe_get_last_error());
  int64_t touched = 0;
  for (size_t i = 0; i < t.out->bytes / 2; ++i)
    touched += ((const uint16_t *)t.out->t.data)[i] != POISON;
  RANK_CHECK(&ra->failed, touched == 0, "rank %d: %lld output elements written on failure",
             ra->rank, (long long)touched);
  rank_tensors_free(&t);
  tmem_free(B, ws);
  moe_ep_destroy(ep);
  return NULL;
}

static void test_bad_rank(void) {
  const ep_case c = {2, 2, 2, 64, 64, {5, 4}, ROUTE_BALANCED, 0, 41, 1};
  world w;
  if (world_init(&w, &c, NULL)) {
    CHECK(0, "bad-rank world setup failed");
    world_free(&w);
    return;
  }
  bad_rank_arg ra[2] = {{&w, 0, 0, "", 0}, {&w, 1, 0, "", 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; ++i) pthread_create(&th[i], NULL, bad_rank_main, &ra[i]);
  for (int i = 0; i < 2; ++i) pthread_join(th[i], NULL);
  CHECK(ra[1].s == MOE_STATUS_INVALID_ARGUMENT && strstr(ra[1].msg, "args->topk_ids[1, 1]") &&
            strstr(ra[1].msg, "given -2"),
        "bad rank: %d '%s'", ra[1].s, ra[1].msg);
  CHECK(!ra[0].failed && !ra[1].failed, "bad rank: a rank thread failed (see above)");
  CHECK(ra[0].s == MOE_STATUS_INVALID_ARGUMENT && strstr(ra[0].msg, "rank 1 of 2 reported"),
        "good rank: %d '%s'", ra[0].s, ra[0].msg);
  world_free(&w);
}

int main(void) {
  test_forward_equals_single();
  test_create_misuse();
  test_mismatched_slices();
  test_forward_misuse();
  test_bad_rank();
  return tc_summary("test_ep");
}
