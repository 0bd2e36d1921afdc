/*
 * test_golden.c - the worked examples of the behavioural reference as golden vectors, through
 * the public API on the CPU backend (moe_routing_prepare + moe_plan_read):
 *  - §3.5 Renormalize E=4 K=2 T=5: tile 8 at C=1 (the reference's table, literally), tile 16
 *    at C=2 (ctaTile 8; the reference's C=2 column uses tile 8, which the catalogue does not
 *    have since tile must be a multiple of 8*C, so the C=2 table below was derived by hand from
 *    the §3.3 formulas), the EP variant (o=1, E_l=2) at both, each from logits, from
 *    topk_ids + weights and from the packed form of the reference;
 *  - the finalize behaviour of the EP variant (rows t1, t4 exactly 0, t0 = 0.26953125*Y[0],
 *    t2 = 0.73046875*Y[1], t3 = 0.5*Y[2]) and of the full problem, with Y read back from a
 *    do_finalize = 0 run;
 *  - §3.6 DeepSeekV3 selection (ids [1,4], weights [1.3515625, 1.1484375]) and its plan.
 * Every table, every bf16 weight and every padding row (-1) is compared exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

#define X (-1) /* padding row / non-local slot */

typedef struct gold {
  const char *name;
  int32_t tile, cluster, offset, local;
  int32_t n, p;
  const int32_t *batch, *mn_limit, *e2p, *p2t, *p2x, *counts;
} gold;

/* §3.5 inputs and outputs. */
static const float L35[5][4] = {
    {2, 1, -1, 0}, {1.5f, -2, 0, 1}, {0, 3, -1, 2}, {1, 1, 0, -1}, {0.5f, -1, 0, 2.5f}};
static const int32_t IDS35[10] = {0, 1, 0, 3, 1, 3, 0, 1, 3, 0};
static const int32_t PACKED35[10] = {0x00003F3B, 0x00013E8A, 0x00003F1F, 0x00033EC1, 0x00013F3B,
                                     0x00033E8A, 0x00003F00, 0x00013F00, 0x00033F61, 0x00003DF4};
static const float W35[10] = {0.73046875f, 0.26953125f, 0.62109375f, 0.376953125f, 0.73046875f,
                              0.26953125f, 0.5f,        0.5f,        0.87890625f,  0.119140625f};

/* C = 1, tile 8 (reference table). */
static const int32_t C1_BATCH[] = {0, 1, 3}, C1_MNL[] = {4, 11, 19};
static const int32_t E2P_8[] = {0, 8, 1, 16, 9, 17, 2, 10, 18, 3};
static const int32_t P2T_8[] = {0, 1, 3, 4, X, X, X, X, 0, 2, 3, X,
                                X, X, X, X, 1, 2, 4, X, X, X, X, X};
static const int32_t P2X_8[] = {0, 2, 6, 9, X, X, X, X, 1, 4, 7, X,
                                X, X, X, X, 3, 5, 8, X, X, X, X, X};
static const int32_t CNT_FULL[] = {4, 3, 0, 3};
/* C = 2, tile 16 (ctaTile 8): off = [0,16,32,32], N = 6, P = 48. */
static const int32_t C2_BATCH[] = {0, 0, 1, 1, 3, 3}, C2_MNL[] = {4, 4, 19, 19, 35, 35};
static const int32_t E2P_16[] = {0, 16, 1, 32, 17, 33, 2, 18, 34, 3};
static const int32_t P2T_16[] = {0, 1, 3, 4, X, X, X, X, X, X, X, X, X, X, X, X,
                                 0, 2, 3, X, X, X, X, X, X, X, X, X, X, X, X, X,
                                 1, 2, 4, X, X, X, X, X, X, X, X, X, X, X, X, X};
static const int32_t P2X_16[] = {0, 2, 6, 9, X, X, X, X, X, X, X, X, X, X, X, X,
                                 1, 4, 7, X, X, X, X, X, X, X, X, X, X, X, X, X,
                                 3, 5, 8, X, X, X, X, X, X, X, X, X, X, X, X, X};
/* EP o = 1, E_l = 2. */
static const int32_t EP_E2P[] = {X, 0, X, X, 1, X, X, 2, X, X};
static const int32_t EP_P2T_8[] = {0, 2, 3, X, X, X, X, X};
static const int32_t EP_P2X_8[] = {1, 4, 7, X, X, X, X, X};
static const int32_t EP_P2T_16[] = {0, 2, 3, X, X, X, X, X, X, X, X, X, X, X, X, X};
static const int32_t EP_P2X_16[] = {1, 4, 7, X, X, X, X, X, X, X, X, X, X, X, X, X};
static const int32_t EP_C1_BATCH[] = {0}, EP_C1_MNL[] = {3};
static const int32_t EP_C2_BATCH[] = {0, 0}, EP_C2_MNL[] = {3, 3};
static const int32_t CNT_EP[] = {0, 3, 0, 0};

static const gold GOLD35[] = {
    {"3.5 C=1 tile=8", 8, 1, 0, 4, 3, 24, C1_BATCH, C1_MNL, E2P_8, P2T_8, P2X_8, CNT_FULL},
    {"3.5 C=2 tile=16", 16, 2, 0, 4, 6, 48, C2_BATCH, C2_MNL, E2P_16, P2T_16, P2X_16, CNT_FULL},
    {"3.5 EP C=1 tile=8", 8, 1, 1, 2, 1, 8, EP_C1_BATCH, EP_C1_MNL, EP_E2P, EP_P2T_8, EP_P2X_8,
     CNT_EP},
    {"3.5 EP C=2 tile=16", 16, 2, 1, 2, 2, 16, EP_C2_BATCH, EP_C2_MNL, EP_E2P, EP_P2T_16, EP_P2X_16,
     CNT_EP},
};

static void expect_i32(const char *what, const char *table, const int32_t *got, int64_t n_got,
                       const int32_t *exp, int64_t n_exp) {
  CHECK(n_got == n_exp, "%s: %s has %lld entries, expected %lld", what, table, (long long)n_got,
        (long long)n_exp);
  if (n_got != n_exp) return;
  for (int64_t i = 0; i < n_exp; ++i)
    CHECK(got[i] == exp[i], "%s: %s[%lld] = %d, expected %d", what, table, (long long)i, got[i],
          exp[i]);
}

static void check_gold(const gold *g, const host_plan *hp, const moe_plan *plan,
                       const char *input_name) {
  char what[128];
  snprintf(what, sizeof what, "%s (%s)", g->name, input_name);
  CHECK(plan->tile == g->tile && plan->cluster_size == g->cluster && plan->num_tokens == 5 &&
            plan->num_experts == 4 && plan->top_k == 2 && plan->local_expert_offset == g->offset &&
            plan->local_num_experts == g->local,
        "%s: plan descriptor tile %d C %d T %lld E %d K %d o %d E_l %d", what, plan->tile,
        plan->cluster_size, (long long)plan->num_tokens, plan->num_experts, plan->top_k,
        plan->local_expert_offset, plan->local_num_experts);
  /* Capacities use the global E: maxCgas(5, 2, 4, tile) rows of tile. */
  int64_t mc = t_max_cgas(5, 2, 4, g->tile);
  CHECK(plan->max_padded_rows == mc * g->tile, "%s: max_padded_rows %lld, expected %lld", what,
        (long long)plan->max_padded_rows, (long long)(mc * g->tile));
  CHECK(plan->max_ctas >= t_max_cgas(5, 2, g->local, g->tile) * g->cluster &&
            plan->max_ctas <= mc * g->cluster && plan->max_ctas % g->cluster == 0,
        "%s: max_ctas %lld", what, (long long)plan->max_ctas);
  CHECK(hp->num_ctas == g->n, "%s: num_ctas %d, expected %d", what, hp->num_ctas, g->n);
  CHECK(hp->permuted_size == g->p, "%s: permuted_size %d, expected %d", what, hp->permuted_size,
        g->p);
  for (int i = 0; i < 10; ++i) {
    CHECK(hp->topk_ids[i] == IDS35[i], "%s: topk_ids[%d] = %d, expected %d", what, i,
          hp->topk_ids[i], IDS35[i]);
    CHECK(hp->weights[i] == f32_to_bf16(W35[i]), "%s: expert_weights[%d] = 0x%04x, expected %g",
          what, i, hp->weights[i], W35[i]);
  }
  expect_i32(what, "expanded_to_permuted", hp->e2p, hp->tk, g->e2p, 10);
  expect_i32(what, "permuted_to_token", hp->p2t, hp->cnt[MOE_PLAN_PERMUTED_TO_TOKEN], g->p2t, g->p);
  expect_i32(what, "permuted_to_expanded", hp->p2x, hp->cnt[MOE_PLAN_PERMUTED_TO_EXPANDED], g->p2x,
             g->p);
  expect_i32(what, "cta_to_batch", hp->batch, hp->cnt[MOE_PLAN_CTA_TO_BATCH], g->batch, g->n);
  expect_i32(what, "cta_to_mn_limit", hp->mn_limit, hp->cnt[MOE_PLAN_CTA_TO_MN_LIMIT], g->mn_limit,
             g->n);
  expect_i32(what, "expert_counts", hp->counts, hp->cnt[MOE_PLAN_EXPERT_COUNTS], g->counts, 4);
}

/* Y = GEMM2 output in permuted space (do_finalize = 0), then the finalized output. */
static void check_finalize(moe_runner *r, const moe_problem *p, int32_t cfg, const t_ws *ws,
                           const moe_plan *plan, const host_plan *hp, const char *what) {
  const int64_t T = 5, H = p->hidden_size, I = p->intermediate_size;
  const int64_t El = p->local_num_experts;
  uint16_t *hid = t_xmalloc(T * H * 2), *w1 = t_xmalloc(El * 2 * I * H * 2);
  uint16_t *w2 = t_xmalloc(El * H * I * 2);
  gen_fill_bf16(7, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, hid, T * H);
  gen_fill_bf16(7, GEN_STREAM_W1, GEN_SCALE_W1, w1, El * 2 * I * H);
  gen_fill_bf16(7, GEN_STREAM_W2, GEN_SCALE_W2, w2, El * H * I);
  t_moe_in in = {hid, w1, w2, NULL, NULL, NULL, NULL, NULL};
  t_weights w;
  if (CHECK_OK(t_weights_prepare(r, MOE_BACKEND_CPU, p, MOE_ACTIVATION_SWIGLU, &in, &w))) return;
  uint16_t *y = t_xmalloc((size_t)plan->max_padded_rows * H * 2);
  uint16_t *out = t_xmalloc(T * H * 2);
  if (!CHECK_OK(
          t_run(r, MOE_BACKEND_CPU, p, MOE_ACTIVATION_SWIGLU, &in, &w, cfg, plan, ws, 0, y)) &&
      !CHECK_OK(
          t_run(r, MOE_BACKEND_CPU, p, MOE_ACTIVATION_SWIGLU, &in, &w, cfg, plan, ws, 1, out))) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        float acc = 0.0f; /* fp32 sum over local slots in slot order, one bf16 rounding */
        int any = 0;
        for (int k = 0; k < 2; ++k) {
          int32_t row = hp->e2p[t * 2 + k];
          if (row < 0) continue;
          any = 1;
          acc += bf16_to_f32(hp->weights[t * 2 + k]) * bf16_to_f32(y[row * H + h]);
        }
        uint16_t exp = f32_to_bf16(acc), got = out[t * H + h];
        if (!any) {
          CHECK(bf16_to_f32(got) == 0.0f,
                "%s: token %lld has no local slot: out[%lld] = 0x%04x,"
                " expected exactly 0",
                what, (long long)t, (long long)h, got);
        } else {
          CHECK(got == exp, "%s: out[%lld,%lld] = 0x%04x, expected 0x%04x", what, (long long)t,
                (long long)h, got, exp);
        }
      }
    /* Valid permuted rows are finite (written). */
    for (int64_t rr = 0; rr < hp->permuted_size; ++rr)
      if (hp->p2t[rr] >= 0)
        CHECK(t_count_nonfinite(y + rr * H, H) == 0, "%s: permuted row %lld not written", what,
              (long long)rr);
  }
  t_weights_free(&w);
  free(y);
  free(out);
  free(hid);
  free(w1);
  free(w2);
}

static void test_35(void) {
  moe_runner *r = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU);
  if (!r) return;
  uint16_t logits[20];
  for (int t = 0; t < 5; ++t)
    for (int e = 0; e < 4; ++e) logits[t * 4 + e] = f32_to_bf16(L35[t][e]);
  uint16_t wts[10];
  for (int i = 0; i < 10; ++i) wts[i] = f32_to_bf16(W35[i]);
  /* The packed table of the reference encodes exactly these ids and weights. */
  for (int i = 0; i < 10; ++i)
    CHECK(gen_pack(IDS35[i], wts[i]) == PACKED35[i], "packed[%d] 0x%08x", i, PACKED35[i]);

  for (size_t gi = 0; gi < sizeof GOLD35 / sizeof GOLD35[0]; ++gi) {
    const gold *g = &GOLD35[gi];
    moe_problem p;
    t_problem(&p, 4, 5, 2, g->offset, g->local, 64, 64);
    int32_t cfg = t_find_config(r, &p, g->tile, g->cluster);
    CHECK(cfg >= 0, "%s: no config with tile %d, C %d", g->name, g->tile, g->cluster);
    if (cfg < 0) continue;
    t_ws ws;
    if (CHECK_OK(t_ws_alloc(r, MOE_BACKEND_CPU, &p, cfg, &ws))) continue;
    static const char *names[] = {"logits", "ids+weights", "packed", "ids+fp32 weights"};
    for (int kind = 0; kind < 4; ++kind) {
      t_route in;
      t_route_init(&in);
      in.method = MOE_ROUTING_RENORMALIZE;
      float wf[10];
      for (int i = 0; i < 10; ++i) wf[i] = W35[i];
      if (kind == 0) {
        in.input = T_INPUT_LOGITS;
        in.logits = logits;
      } else if (kind == 1 || kind == 3) {
        in.input = T_INPUT_IDS;
        in.ids = IDS35;
        in.weights = kind == 1 ? (const void *)wts : (const void *)wf;
        in.weights_f32 = kind == 3;
      } else {
        in.input = T_INPUT_PACKED;
        in.packed = PACKED35;
      }
      tmem_poison(MOE_BACKEND_CPU, ws.ptr, ws.bytes);
      moe_plan plan;
      if (CHECK_OK(t_prepare(r, MOE_BACKEND_CPU, &p, &in, cfg, &ws, &plan))) continue;
      host_plan hp;
      if (t_read_plan(r, &plan, &ws, 4, &hp) == 0) {
        check_gold(g, &hp, &plan, names[kind]);
        if (kind == 0) {
          char what[128];
          snprintf(what, sizeof what, "%s finalize", g->name);
          check_finalize(r, &p, cfg, &ws, &plan, &hp, what);
        }
      }
      t_free_plan(&hp);
    }
    t_ws_free(&ws);
  }
  moe_runner_destroy(r);
}

static void test_36(void) {
  moe_runner *r = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU);
  if (!r) return;
  const float logits[8] = {0, 1, 2, -1, 0.5f, 0.5f, -2, 3};
  const float bias_f[8] = {0, 0, 0, 0, 0, 0, 0.10009765625f, -0.5f};
  uint16_t bias_b[8];
  for (int e = 0; e < 8; ++e) bias_b[e] = f32_to_bf16(bias_f[e]);
  moe_problem p;
  t_problem(&p, 8, 1, 2, 0, 8, 64, 64);
  int32_t cfg = t_find_config(r, &p, 8, 1);
  CHECK(cfg >= 0, "3.6: no tile 8 C 1 config");
  t_ws ws;
  if (cfg < 0 || CHECK_OK(t_ws_alloc(r, MOE_BACKEND_CPU, &p, cfg, &ws))) {
    moe_runner_destroy(r);
    return;
  }
  for (int bias_kind = 1; bias_kind <= 2; ++bias_kind) {
    t_route in;
    t_route_init(&in);
    in.method = MOE_ROUTING_DEEPSEEK_V3;
    in.input = T_INPUT_LOGITS;
    in.logits_f32 = 1;
    in.logits = logits;
    in.bias_dtype = bias_kind;
    in.bias = bias_kind == 1 ? (const void *)bias_b : (const void *)bias_f;
    in.n_group = 4;
    in.topk_group = 2;
    in.scale = 2.5f;
    moe_plan plan;
    tmem_poison(MOE_BACKEND_CPU, ws.ptr, ws.bytes);
    if (CHECK_OK(t_prepare(r, MOE_BACKEND_CPU, &p, &in, cfg, &ws, &plan))) continue;
    host_plan hp;
    if (t_read_plan(r, &plan, &ws, 8, &hp) == 0) {
      const char *what = bias_kind == 1 ? "3.6 (bf16 bias)" : "3.6 (fp32 bias)";
      CHECK(hp.topk_ids[0] == 1 && hp.topk_ids[1] == 4, "%s: ids [%d, %d], expected [1, 4]", what,
            hp.topk_ids[0], hp.topk_ids[1]);
      CHECK(hp.weights[0] == f32_to_bf16(1.3515625f) && hp.weights[1] == f32_to_bf16(1.1484375f),
            "%s: weights [%g, %g], expected [1.3515625, 1.1484375]", what,
            bf16_to_f32(hp.weights[0]), bf16_to_f32(hp.weights[1]));
      static const int32_t e2p[] = {0, 8}, batch[] = {1, 4}, mnl[] = {1, 9};
      static const int32_t p2t[] = {0, X, X, X, X, X, X, X, 0, X, X, X, X, X, X, X};
      static const int32_t p2x[] = {0, X, X, X, X, X, X, X, 1, X, X, X, X, X, X, X};
      static const int32_t cnt[] = {0, 1, 0, 0, 1, 0, 0, 0};
      CHECK(hp.num_ctas == 2 && hp.permuted_size == 16, "%s: N %d P %d, expected 2, 16", what,
            hp.num_ctas, hp.permuted_size);
      expect_i32(what, "expanded_to_permuted", hp.e2p, hp.tk, e2p, 2);
      expect_i32(what, "permuted_to_token", hp.p2t, hp.cnt[3], p2t, 16);
      expect_i32(what, "permuted_to_expanded", hp.p2x, hp.cnt[4], p2x, 16);
      expect_i32(what, "cta_to_batch", hp.batch, hp.cnt[5], batch, 2);
      expect_i32(what, "cta_to_mn_limit", hp.mn_limit, hp.cnt[6], mnl, 2);
      expect_i32(what, "expert_counts", hp.counts, hp.cnt[9], cnt, 8);
    }
    t_free_plan(&hp);
  }
  t_ws_free(&ws);
  moe_runner_destroy(r);
}

int main(void) {
  test_35();
  test_36();
  return tc_summary("test_golden");
}
