/*
 * test_threads.c - one runner shared by 8 threads (issue 23, threads). Each thread has its own
 * workspace and output and runs prepare + run for hundreds of iterations over a set of cases
 * (token counts, configs, routing methods); every output must equal, bit for bit, the one a
 * single thread computed first. Errors stay on their thread: a thread's failing call leaves a
 * message naming its own value, which no other thread's calls change, and its next successful
 * call clears it. The CPU runner uses 2 worker threads per call, so the backend's own threads
 * run beside the callers'. scripts/test.sh also builds and runs this under ThreadSanitizer.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

enum { NTHREADS = 8, ITERS = 200, NCASES = 12, E = 8, K = 2, H = 64, I = 64, TMAX = 16 };

typedef struct tcase {
  moe_problem p;
  int32_t cfg, method;
  ttensor *logits, *hidden;
  uint16_t *expect; /* [T, H] from the single-threaded run */
} tcase;

static moe_runner *R;
static tcase C[NCASES];
static ttensor *W1, *W2;
static size_t WS_BYTES; /* the largest workspace any valid config needs for T_MAX */

typedef struct worker {
  int id;
  void *ws;
  ttensor *out;                    /* [TMAX, H] */
  long runs, mismatches, failures; /* failures: a call that should succeed did not */
  long error_checks, error_leaks;  /* per-thread last error checks, and those that failed */
  char first_problem[256];
} worker;

static void note(worker *w, const char *what) {
  if (!w->first_problem[0]) snprintf(w->first_problem, sizeof w->first_problem, "%s", what);
}

/* prepare + run case @p c into @p ws; output in out (a [T, H] view of a [TMAX, H] buffer). */
static moe_status_t run_case(const tcase *c, void *ws, ttensor *out) {
  moe_routing_args ra;
  moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
  ra.method = c->method;
  ra.logits = &c->logits->t;
  moe_plan plan;
  moe_plan_init(&plan, MOE_PLAN_VERSION);
  moe_status_t s = moe_routing_prepare(R, &c->p, &ra, c->cfg, ws, WS_BYTES, &plan, NULL);
  if (s) return s;
  DLTensor o = out->t;
  int64_t shape[2] = {c->p.num_tokens, H};
  o.shape = shape;
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.hidden_states = &c->hidden->t;
  a.gemm1_weights = &W1->t;
  a.gemm2_weights = &W2->t;
  a.output = &o;
  return moe_runner_run(R, &c->p, &a, c->cfg, &plan, ws, WS_BYTES, NULL);
}

static void check_own_error(worker *w, int it) {
  const int32_t bad = 100000 + w->id * 1000 + it; /* a config index no catalogue has */
  char needle[32];
  snprintf(needle, sizeof needle, "%d", bad);
  int32_t cs = 0;
  moe_status_t s = moe_runner_get_cluster_size(R, bad, &cs);
  ++w->error_checks;
  if (s != MOE_STATUS_INVALID_CONFIG || !strstr(moe_get_last_error(), needle)) {
    ++w->error_leaks;
    note(w, "failing call: wrong status or message");
  }
  sched_yield(); /* let the other threads fail and succeed in between */
  ++w->error_checks;
  if (!strstr(moe_get_last_error(), needle)) {
    ++w->error_leaks;
    note(w, "message changed by another thread");
  }
  s = moe_runner_get_cluster_size(R, 0, &cs);
  ++w->error_checks;
  if (s != MOE_STATUS_SUCCESS || moe_get_last_error()[0] != 0) {
    ++w->error_leaks;
    note(w, "message not cleared by a successful call");
  }
}

static void *worker_main(void *arg) {
  worker *w = (worker *)arg;
  for (int it = 0; it < ITERS; ++it) {
    const tcase *c = &C[(w->id * 5 + it * 7) % NCASES];
    const int64_t n = c->p.num_tokens * H;
    tmem_poison(MOE_BACKEND_CPU, w->out->t.data, w->out->bytes);
    moe_status_t s = run_case(c, w->ws, w->out);
    ++w->runs;
    if (s) {
      ++w->failures;
      note(w, moe_get_last_error());
      continue;
    }
    if (n && memcmp(w->out->t.data, c->expect, (size_t)n * 2) != 0) {
      ++w->mismatches;
      note(w, "output differs from the single-threaded run");
    }
    if (it % 10 == 0) check_own_error(w, it);
  }
  return NULL;
}

static int setup(void) {
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = MOE_BACKEND_CPU;
  o.num_threads = 2;
  if (CHECK_OK(moe_runner_create(&o, &R))) return 1;
  moe_problem pmax;
  t_problem(&pmax, E, TMAX, K, 0, 0, H, I);
  int32_t valid[64], nv = 0;
  if (CHECK_OK(moe_runner_get_valid_configs(R, &pmax, valid, 64, &nv))) return 1;
  for (int32_t i = 0; i < nv && i < 64; ++i) {
    size_t b = 0;
    if (CHECK_OK(moe_runner_get_workspace_size(R, &pmax, valid[i], &b))) return 1;
    if (b > WS_BYTES) WS_BYTES = b;
  }
  t_expert_data d;
  t_expert_data_gen(23, 0, E, H, I, 1, 0, 0, &d);
  t_moe_in in = t_expert_data_in(&d);
  t_weights w;
  moe_status_t s = t_weights_prepare(R, MOE_BACKEND_CPU, &pmax, MOE_ACTIVATION_SWIGLU, &in, &w);
  t_expert_data_free(&d);
  W1 = w.w1;
  W2 = w.w2;
  if (CHECK_OK(s)) return 1;
  const int64_t tokens[NCASES] = {0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 16};
  const int32_t methods[3] = {MOE_ROUTING_RENORMALIZE, MOE_ROUTING_TOPK, MOE_ROUTING_DEFAULT};
  void *ws = tmem_alloc(MOE_BACKEND_CPU, WS_BYTES);
  ttensor *out = tt_new(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){TMAX, H});
  for (int i = 0; i < NCASES; ++i) {
    tcase *c = &C[i];
    t_problem(&c->p, E, tokens[i], K, 0, 0, H, I);
    c->cfg = valid[(i * 5) % nv];
    c->method = methods[i % 3];
    const int64_t T = tokens[i] ? tokens[i] : 1;
    uint16_t *lg = t_xmalloc((size_t)(T * E) * 2), *hid = t_xmalloc((size_t)(T * H) * 2);
    gen_fill_bf16(100 + i, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_BF16, lg, T * E);
    gen_fill_bf16(100 + i, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, hid, T * H);
    c->logits = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){tokens[i], E}, lg);
    c->hidden = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){tokens[i], H}, hid);
    free(lg);
    free(hid);
    c->expect = t_xmalloc((size_t)(T * H) * 2);
    tmem_poison(MOE_BACKEND_CPU, out->t.data, out->bytes);
    if (CHECK_OK(run_case(c, ws, out))) return 1;
    memcpy(c->expect, out->t.data, (size_t)(tokens[i] * H) * 2);
  }
  tt_free(out);
  tmem_free(MOE_BACKEND_CPU, ws);
  return 0;
}

int main(void) {
  if (setup()) return tc_summary("test_threads");
  worker w[NTHREADS];
  pthread_t tid[NTHREADS];
  memset(w, 0, sizeof w);
  for (int i = 0; i < NTHREADS; ++i) {
    w[i].id = i;
    w[i].ws = tmem_alloc(MOE_BACKEND_CPU, WS_BYTES);
    w[i].out = tt_new(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){TMAX, H});
  }
  int started = 0;
  for (int i = 0; i < NTHREADS; ++i)
    if (pthread_create(&tid[i], NULL, worker_main, &w[i]) == 0) ++started;
  CHECK(started == NTHREADS, "started %d of %d threads", started, NTHREADS);
  for (int i = 0; i < started; ++i) pthread_join(tid[i], NULL);
  long runs = 0, errs = 0;
  for (int i = 0; i < started; ++i) {
    runs += w[i].runs;
    errs += w[i].error_checks;
    CHECK(w[i].runs == ITERS && !w[i].failures && !w[i].mismatches && !w[i].error_leaks,
          "thread %d: %ld runs, %ld failed, %ld outputs differ, %ld error-isolation failures; "
          "first: %s",
          i, w[i].runs, w[i].failures, w[i].mismatches, w[i].error_leaks, w[i].first_problem);
  }
  printf("test_threads: %d threads x %d prepare + run (%ld), %ld per-thread error checks\n",
         started, ITERS, runs, errs);
  for (int i = 0; i < NTHREADS; ++i) {
    tmem_free(MOE_BACKEND_CPU, w[i].ws);
    tt_free(w[i].out);
  }
  for (int i = 0; i < NCASES; ++i) {
    tt_free(C[i].logits);
    tt_free(C[i].hidden);
    free(C[i].expect);
  }
  tt_free(W1);
  tt_free(W2);
  moe_runner_destroy(R);
  return tc_summary("test_threads");
}
