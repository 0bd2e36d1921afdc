/*
 * test_plan_checks.c - stale and edited plans, and config validity against workspace sizing
 * (issue 23, items 2, 4 and 6), on the CPU backend:
 *  - a plan whose workspace was since prepared again (same workspace, an overlapping one, by
 *    another runner, or the same plan prepared again) is refused by run, get_view, read and
 *    read_count; the current plan and its copies keep working;
 *  - every field of an edited moe_plan is refused by those four calls with INVALID_ARGUMENT
 *    (VERSION_MISMATCH for the version), never INTERNAL, never a crash (tile 0 divided by
 *    zero; an edited num_tokens read past the workspace; an edited config ran another layout);
 *  - plan tables overwritten in the workspace after prepare: an argument error, not INTERNAL;
 *  - every config get_valid_configs lists can be sized, and every other one is refused
 *    (T = 1, H = 2^31 - 1 used to be listed and then fail sizing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static fx F; /* CPU, T_max = 4, tile 8, C 1 */

/* The four calls that take a plan; each must give @p want naming @p needle. */
static void expect_refused(const moe_plan *pl, moe_status_t want, const char *needle,
                           const char *what, int line) {
  moe_run_args a = fx_runargs(&F);
  moe_plan_view v;
  int32_t buf[256];
  int64_t n = 0;
  char call[160];
  /* run is given the plan's config (what a caller that edited it would pass) where that is a
   * config of the catalogue; else the config argument itself would be refused first */
  int32_t nc = 0;
  moe_runner_get_num_configs(F.r, &nc);
  const int32_t cfg = pl->config >= 0 && pl->config < nc ? pl->config : F.cfg;
  snprintf(call, sizeof call, "run(%s)", what);
  fx_expect(moe_runner_run(F.r, &F.p, &a, cfg, pl, F.ws.ptr, F.ws.bytes, NULL), want, FX_ANY,
            needle, call, __FILE__, line);
  snprintf(call, sizeof call, "get_view(%s)", what);
  fx_expect(moe_plan_get_view(F.r, pl, F.ws.ptr, F.ws.bytes, &v), want, FX_ANY, needle, call,
            __FILE__, line);
  for (int32_t table = 0; table <= MOE_PLAN_EXPERT_COUNTS; ++table) {
    snprintf(call, sizeof call, "read(%s, table %d)", what, table);
    fx_expect(moe_plan_read(F.r, pl, F.ws.ptr, F.ws.bytes, table, buf, sizeof buf, NULL), want,
              FX_ANY, needle, call, __FILE__, line);
    snprintf(call, sizeof call, "read_count(%s, table %d)", what, table);
    fx_expect(moe_plan_read_count(F.r, pl, F.ws.ptr, F.ws.bytes, table, &n, NULL), want, FX_ANY,
              needle, call, __FILE__, line);
  }
}
#define REFUSED(pl, st, needle, what) expect_refused((pl), (st), (needle), (what), __LINE__)

static void accepted(const moe_plan *pl, const char *what) {
  moe_plan_view v;
  int64_t n = 0;
  CHECK(fx_run(&F, pl) == MOE_STATUS_SUCCESS, "run(%s): %s", what, moe_get_last_error());
  CHECK(moe_plan_get_view(F.r, pl, F.ws.ptr, F.ws.bytes, &v) == MOE_STATUS_SUCCESS,
        "get_view(%s): %s", what, moe_get_last_error());
  CHECK(moe_plan_read_count(F.r, pl, F.ws.ptr, F.ws.bytes, MOE_PLAN_CTA_TO_BATCH, &n, NULL) ==
            MOE_STATUS_SUCCESS,
        "read_count(%s): %s", what, moe_get_last_error());
}

static void test_stale(void) {
  moe_plan a, b;
  moe_problem p2 = F.p;
  p2.num_tokens = 2;
  if (CHECK_OK(fx_prepare(&F, NULL, &a))) return;
  accepted(&a, "current plan");
  moe_plan copy = a;
  accepted(&copy, "a copy of the current plan");
  /* plan B (T = 2) into the workspace of plan A (T_max = 4 serves it) */
  if (CHECK_OK(fx_prepare(&F, &p2, &b))) return;
  REFUSED(&a, IA, "stale", "plan A after B was prepared into its workspace");
  REFUSED(&copy, IA, "stale", "a copy of plan A");
  {
    moe_run_args ra = fx_runargs(&F);
    ra.hidden_states = NULL; /* B's problem: T = 2 (the first rows of the fixture's tensors) */
    DLTensor h = F.hidden->t, o = F.out->t;
    int64_t sh[2] = {2, 64}, so[2] = {2, 64};
    h.shape = sh;
    o.shape = so;
    ra.hidden_states = &h;
    ra.output = &o;
    CHECK_OK(moe_runner_run(F.r, &p2, &ra, F.cfg, &b, F.ws.ptr, F.ws.bytes, NULL));
  }
  /* the same plan prepared again: the older descriptor is stale, the new one is current */
  if (CHECK_OK(fx_prepare(&F, NULL, &a))) return;
  if (CHECK_OK(fx_prepare(&F, NULL, &b))) return;
  REFUSED(&a, IA, "stale", "the earlier of two identical preparations");
  accepted(&b, "the later of two identical preparations");
  /* a prepare that fails its checks writes nothing: the current plan stays current */
  {
    moe_routing_args bad = fx_rargs(&F);
    bad.method = 42;
    moe_plan tmp;
    moe_plan_init(&tmp, MOE_PLAN_VERSION);
    CHECK(moe_routing_prepare(F.r, &F.p, &bad, F.cfg, F.ws.ptr, F.ws.bytes, &tmp, NULL) == IA,
          "bad method accepted");
    accepted(&b, "the current plan after a refused prepare");
  }
  /* overlapping workspaces: a second range starting 256 bytes into the first */
  {
    t_ws big;
    moe_problem pb = F.p;
    pb.num_tokens = 8;
    if (!CHECK_OK(t_ws_alloc(F.r, MOE_BACKEND_CPU, &pb, F.cfg, &big))) {
      moe_routing_args ra = fx_rargs(&F);
      moe_plan pa, pc;
      moe_plan_init(&pa, MOE_PLAN_VERSION);
      moe_plan_init(&pc, MOE_PLAN_VERSION);
      CHECK_OK(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, big.ptr, F.ws.bytes, &pa, NULL));
      char *second = (char *)big.ptr + 256;
      CHECK_OK(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, second, F.ws.bytes, &pc, NULL));
      moe_run_args a = fx_runargs(&F);
      EXPECT(moe_runner_run(F.r, &F.p, &a, F.cfg, &pa, big.ptr, F.ws.bytes, NULL), IA, "stale");
      CHECK_OK(moe_runner_run(F.r, &F.p, &a, F.cfg, &pc, second, F.ws.bytes, NULL));
      /* disjoint halves of one allocation are two workspaces */
      char *upper = (char *)big.ptr + big.bytes - F.ws.bytes;
      upper -= (uintptr_t)upper % 256;
      if (upper >= (char *)big.ptr + F.ws.bytes) {
        CHECK_OK(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, big.ptr, F.ws.bytes, &pa, NULL));
        CHECK_OK(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, upper, F.ws.bytes, &pc, NULL));
        CHECK_OK(moe_runner_run(F.r, &F.p, &a, F.cfg, &pa, big.ptr, F.ws.bytes, NULL));
        CHECK_OK(moe_runner_run(F.r, &F.p, &a, F.cfg, &pc, upper, F.ws.bytes, NULL));
      }
      t_ws_free(&big);
    }
  }
  /* two runners preparing into one workspace */
  {
    moe_runner *r2 = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU);
    moe_routing_args ra = fx_rargs(&F);
    DLTensor lg2 = F.logits->t;
    int64_t sh2[2] = {2, 8};
    lg2.shape = sh2;
    ra.logits = &lg2;
    moe_plan p1, pr2;
    if (r2 && !CHECK_OK(fx_prepare(&F, NULL, &p1)) &&
        !CHECK_OK(moe_routing_prepare(r2, &p2, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pr2, NULL)))
      REFUSED(&p1, IA, "stale", "a plan whose workspace another runner prepared into");
    moe_runner_destroy(r2);
  }
}

/* Every field of a prepared plan, edited one at a time. */
static void test_edited(void) {
  moe_plan good;
  if (CHECK_OK(fx_prepare(&F, NULL, &good))) return;
  int32_t cfg2 = t_find_config(F.r, &F.p, 32, 2);
  CHECK(cfg2 >= 0, "config tile 32 C 2");
  moe_plan e;
#define EDIT(field, value, st, needle)                    \
  do {                                                    \
    e = good;                                             \
    e.field = value;                                      \
    REFUSED(&e, st, needle, "plan." #field " = " #value); \
  } while (0)
  EDIT(version, 0, MOE_STATUS_VERSION_MISMATCH, "version");
  EDIT(version, 2, MOE_STATUS_VERSION_MISMATCH, "version");
  EDIT(config, cfg2, IA, "plan"); /* run given the edited config too: another layout */
  EDIT(config, -1, IA, "plan->config");
  EDIT(config, 1 << 20, IA, "plan->config");
  EDIT(tile, 0, IA, "plan->tile");
  EDIT(tile, 16, IA, "plan->tile");
  EDIT(tile, -8, IA, "plan->tile");
  EDIT(cluster_size, 0, IA, "plan->tile / plan->cluster_size");
  EDIT(cluster_size, 2, IA, "plan->tile / plan->cluster_size");
  EDIT(num_tokens, 3, IA, "plan");
  EDIT(num_tokens, 5, IA, "plan");    /* past the workspace's T_max */
  EDIT(num_tokens, 4000, IA, "plan"); /* far past it */
  EDIT(num_tokens, -1, IA, "plan->num_tokens");
  EDIT(num_tokens, INT64_MAX, IA, "plan");
  EDIT(num_tokens, (int64_t)1 << 40, IA, "plan");
  EDIT(num_experts, 0, IA, "plan->num_experts");
  EDIT(num_experts, 16, IA, "plan");
  EDIT(num_experts, 70000, IA, "plan->num_experts");
  EDIT(top_k, 0, IA, "plan->top_k");
  EDIT(top_k, 1, IA, "plan");
  EDIT(top_k, 9, IA, "plan->top_k");
  EDIT(local_expert_offset, 1, IA, "plan");
  EDIT(local_expert_offset, -3, IA, "plan->local_expert_offset");
  EDIT(local_num_experts, 0, IA, "plan->local_num_experts");
  EDIT(local_num_experts, 4, IA, "plan");
  EDIT(local_num_experts, 9, IA, "plan->local_num_experts");
  EDIT(hidden_size, 128, IA, "plan");
  EDIT(hidden_size, 0, IA, "plan->hidden_size");
  EDIT(hidden_size, (int64_t)1 << 40, IA, "plan->hidden_size");
  EDIT(intermediate_size, 128, IA, "plan");
  EDIT(intermediate_size, -64, IA, "plan->intermediate_size");
  EDIT(max_padded_rows, good.max_padded_rows + 1, IA, "plan->max_padded_rows");
  EDIT(max_padded_rows, 0, IA, "plan->max_padded_rows");
  EDIT(max_ctas, good.max_ctas * 4, IA, "plan->max_padded_rows / plan->max_ctas");
  EDIT(workspace, good.workspace + 256, IA, "workspace");
  EDIT(workspace_bytes, good.workspace_bytes + 1, IA, "workspace");
  EDIT(runner, good.runner + 8, IA, "runner");
  EDIT(state, 0, IA, "not prepared");
  EDIT(state, good.state + 1, IA, "plan");
  EDIT(state, 0xFFFFFFFFu, IA, "plan");
  EDIT(backend, MOE_BACKEND_CUDA, IA, "plan->backend");
  EDIT(backend, 77, IA, "plan->backend");
  /* two consistent edits (T and its capacities) pass the field checks, not the record */
  {
    e = good;
    moe_problem p3 = F.p;
    p3.num_tokens = 3;
    moe_plan tmp;
    t_ws ws3;
    if (!CHECK_OK(t_ws_alloc(F.r, MOE_BACKEND_CPU, &p3, F.cfg, &ws3))) {
      moe_routing_args ra = fx_rargs(&F);
      DLTensor lg = F.logits->t;
      int64_t sh[2] = {3, 8};
      lg.shape = sh;
      ra.logits = &lg;
      CHECK_OK(moe_routing_prepare(F.r, &p3, &ra, F.cfg, ws3.ptr, ws3.bytes, &tmp, NULL));
      e.num_tokens = 3;
      e.max_padded_rows = tmp.max_padded_rows;
      e.max_ctas = tmp.max_ctas;
      REFUSED(&e, IA, "edited", "plan with T and its capacities edited together");
      t_ws_free(&ws3);
    }
  }
  accepted(&good, "the unedited plan after all the edits");
}

/* Plan tables overwritten in the workspace after prepare (the sizes read back are garbage). */
static void test_overwritten_tables(void) {
  moe_plan pl;
  if (CHECK_OK(fx_prepare(&F, NULL, &pl))) return;
  moe_plan_view v;
  if (CHECK_OK(moe_plan_get_view(F.r, &pl, F.ws.ptr, F.ws.bytes, &v))) return;
  const int32_t keep_n = *v.num_ctas, keep_p = *v.permuted_size;
  int64_t n = 0;
  *v.permuted_size = 1 << 30;
  EXPECT(moe_plan_read_count(F.r, &pl, F.ws.ptr, F.ws.bytes, MOE_PLAN_PERMUTED_TO_TOKEN, &n, NULL),
         IA, "permuted_size");
  *v.num_ctas = -5;
  int32_t buf[64];
  EXPECT(
      moe_plan_read(F.r, &pl, F.ws.ptr, F.ws.bytes, MOE_PLAN_CTA_TO_BATCH, buf, sizeof buf, NULL),
      IA, "num_ctas");
  *v.num_ctas = keep_n;
  *v.permuted_size = keep_p;
  CHECK_OK(
      moe_plan_read_count(F.r, &pl, F.ws.ptr, F.ws.bytes, MOE_PLAN_PERMUTED_TO_TOKEN, &n, NULL));
}

/* Listing a config as valid and sizing it are one decision. */
static void check_agree(const moe_runner *r, const moe_problem *p, const char *what) {
  int32_t nc = 0, valid[256], nv = 0;
  if (CHECK_OK(moe_runner_get_num_configs(r, &nc))) return;
  moe_status_t s = moe_runner_get_valid_configs(r, p, valid, 256, &nv);
  CHECK(s == MOE_STATUS_SUCCESS || s == NS, "%s: get_valid_configs -> %d", what, (int)s);
  if (s) nv = 0;
  for (int32_t c = 0; c < nc; ++c) {
    int listed = 0;
    for (int32_t i = 0; i < nv; ++i) listed |= valid[i] == c;
    size_t bytes = 0;
    moe_status_t ws = moe_runner_get_workspace_size(r, p, c, &bytes);
    CHECK(listed ? ws == MOE_STATUS_SUCCESS : ws != MOE_STATUS_SUCCESS,
          "%s: config %d %s but sizing -> %d (%s)", what, c, listed ? "listed" : "not listed",
          (int)ws, moe_get_last_error());
  }
}

static void test_valid_configs_size(void) {
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = MOE_BACKEND_CUDA;
  o.sm_version = 90; /* the CUDA catalogue's rules, with or without a GPU */
  moe_runner *rc = NULL;
  CHECK_OK(moe_runner_create(&o, &rc));
  const moe_runner *runners[2] = {F.r, rc};
  for (int k = 0; k < 2; ++k) {
    if (!runners[k]) continue;
    moe_problem p;
    t_problem(&p, 8, 1, 1, 0, 0, 2147483647, 64); /* the case */
    check_agree(runners[k], &p, "T 1, H 2^31-1");
    /* Row offsets are 64-bit, so on the CPU this problem is valid (every config sizes); the
     * CUDA catalogue rejects H % 64 != 0. Either way listing and sizing agree (above). */
    int32_t n = 0, c[64];
    if (k == 0) CHECK_OK(moe_runner_get_valid_configs(runners[k], &p, c, 64, &n));
    t_problem(&p, 8, 1, 1, 0, 0, 2147483584, 64); /* a multiple of 64 for the CUDA catalogue */
    check_agree(runners[k], &p, "T 1, H 2^31-64");
    t_problem(&p, 8, 1, 1, 0, 0, 64, 2147483584);
    check_agree(runners[k], &p, "T 1, I 2^31-64");
    t_rng rng = {0x5eed + (uint64_t)k};
    for (int i = 0; i < 400; ++i) { /* seeded problems around the int32 limits */
      const int32_t E = (int32_t)t_rng_range(&rng, 1, 512);
      const int32_t K = (int32_t)t_rng_range(&rng, 1, E < 10 ? E : 10);
      const int64_t T =
          t_rng_range(&rng, 0, 1) ? t_rng_range(&rng, 0, 64) : t_rng_range(&rng, 0, INT32_MAX / K);
      const int64_t H =
          64 * t_rng_range(&rng, 1, INT32_MAX / 64 / (1 + t_rng_range(&rng, 0, 1 << 20)));
      const int64_t I =
          64 * t_rng_range(&rng, 1, INT32_MAX / 64 / (1 + t_rng_range(&rng, 0, 1 << 20)));
      t_problem(&p, E, T, K, 0, 0, H, I);
      char what[128];
      snprintf(what, sizeof what, "E %d K %d T %lld H %lld I %lld", E, K, (long long)T,
               (long long)H, (long long)I);
      check_agree(runners[k], &p, what);
    }
  }
  moe_runner_destroy(rc);
}

/* With an argument, only the section of that name runs (to check one fix at a time). */
static int want(int argc, char **argv, const char *section) {
  return argc < 2 || strcmp(argv[1], section) == 0;
}

int main(int argc, char **argv) {
  if (fx_init(&F, MOE_BACKEND_CPU, 4, 8, 1, 5)) {
    fx_free(&F);
    return tc_summary("test_plan_checks");
  }
  if (want(argc, argv, "stale")) test_stale();
  if (want(argc, argv, "edited")) test_edited();
  if (want(argc, argv, "overwritten_tables")) test_overwritten_tables();
  if (want(argc, argv, "valid_configs_size")) test_valid_configs_size();
  fx_free(&F);
  return tc_summary("test_plan_checks");
}
