/*
 * test_independence.c - results depend on the inputs only (issue 23, config and workspace
 * independence), on the CPU backend:
 *  - every valid config gives the same output, bit for bit (the plan's padding and CTA split
 *    differ; the sums do not), for several token counts, activations, biases and SwiGLU
 *    parameters;
 *  - workspace contents never change results: each workspace is filled with seeded random
 *    garbage before prepare, and reused across calls of other token counts and configs (what
 *    earlier calls left behind) without refilling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

enum { E = 8, K = 3, H = 128, I = 64, TMAX = 70 };

static void fill_garbage(void *p, size_t bytes, t_rng *rng) {
  unsigned char *b = (unsigned char *)p;
  for (size_t i = 0; i < bytes; ++i) b[i] = (unsigned char)(t_rng_next(rng) >> 56);
}

typedef struct setup {
  moe_runner *r;
  int activation;
  t_expert_data d;
  t_moe_in in;
  t_weights w;
  int32_t valid[64], nv;
  size_t ws_bytes; /* the largest of the valid configs' sizes for TMAX */
} setup;

static int setup_init(setup *s, int activation, int extras) {
  memset(s, 0, sizeof *s);
  s->activation = activation;
  s->r = t_runner(MOE_BACKEND_CPU, activation);
  if (!s->r) return 1;
  moe_problem p;
  t_problem(&p, E, TMAX, K, 0, 0, H, I);
  if (CHECK_OK(moe_runner_get_valid_configs(s->r, &p, s->valid, 64, &s->nv))) return 1;
  for (int32_t i = 0; i < s->nv; ++i) {
    size_t b = 0;
    if (CHECK_OK(moe_runner_get_workspace_size(s->r, &p, s->valid[i], &b))) return 1;
    if (b > s->ws_bytes) s->ws_bytes = b;
  }
  t_expert_data_gen(77, TMAX, E, H, I, t_gated(activation), extras,
                    extras && activation == MOE_ACTIVATION_SWIGLU, &s->d);
  s->in = t_expert_data_in(&s->d);
  return CHECK_OK(t_weights_prepare(s->r, MOE_BACKEND_CPU, &p, activation, &s->in, &s->w)) ? 1 : 0;
}

static void setup_free(setup *s) {
  t_weights_free(&s->w);
  t_expert_data_free(&s->d);
  moe_runner_destroy(s->r);
}

/* prepare + run T tokens with config cfg in the workspace ws (contents as they are). */
static moe_status_t forward(setup *s, int64_t T, int32_t cfg, void *ws, const uint16_t *logits,
                            uint16_t *out) {
  moe_problem p;
  t_problem(&p, E, T, K, 0, 0, H, I);
  t_route rt;
  t_route_init(&rt);
  rt.logits = logits;
  t_ws w = {MOE_BACKEND_CPU, ws, s->ws_bytes};
  moe_plan plan;
  moe_plan_init(&plan, MOE_PLAN_VERSION);
  moe_status_t st = t_prepare(s->r, MOE_BACKEND_CPU, &p, &rt, cfg, &w, &plan);
  if (st) return st;
  return t_run(s->r, MOE_BACKEND_CPU, &p, s->activation, &s->in, &s->w, cfg, &plan, &w, 1, out);
}

static void check_setup(int activation, int extras) {
  setup s;
  if (setup_init(&s, activation, extras)) {
    setup_free(&s);
    return;
  }
  uint16_t *logits = t_xmalloc((size_t)TMAX * E * 2);
  gen_fill_bf16(78, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_BF16, logits, TMAX * E);
  uint16_t *ref = t_xmalloc((size_t)TMAX * H * 2), *out = t_xmalloc((size_t)TMAX * H * 2);
  void *ws = tmem_alloc(MOE_BACKEND_CPU, s.ws_bytes);
  t_rng rng = {0xC0FFEE + (uint64_t)activation * 2 + (uint64_t)extras};
  const int64_t tokens[] = {1, 7, 33, TMAX};
  for (size_t ti = 0; ti < sizeof tokens / sizeof tokens[0]; ++ti) {
    const int64_t T = tokens[ti];
    /* the first valid config, in a fresh garbage workspace, is the reference */
    fill_garbage(ws, s.ws_bytes, &rng);
    if (CHECK_OK(forward(&s, T, s.valid[0], ws, logits, ref))) continue;
    CHECK(t_count_nonfinite(ref, T * H) == 0, "act %d T %lld: non-finite output", activation,
          (long long)T);
    for (int32_t i = 0; i < s.nv; ++i) {
      /* fresh garbage, then what the previous call left (no refill) */
      for (int reuse = 0; reuse < 2; ++reuse) {
        if (!reuse) fill_garbage(ws, s.ws_bytes, &rng);
        if (CHECK_OK(forward(&s, T, s.valid[i], ws, logits, out))) continue;
        CHECK(memcmp(out, ref, (size_t)(T * H) * 2) == 0,
              "act %d extras %d T %lld: config %d (%s workspace) differs from config %d",
              activation, extras, (long long)T, s.valid[i], reuse ? "reused" : "garbage",
              s.valid[0]);
      }
    }
    /* a larger call with another config in the same workspace, then this T again */
    int32_t other = s.valid[s.nv - 1];
    if (!CHECK_OK(forward(&s, TMAX, other, ws, logits, out)) &&
        !CHECK_OK(forward(&s, T, s.valid[0], ws, logits, out)))
      CHECK(memcmp(out, ref, (size_t)(T * H) * 2) == 0,
            "act %d T %lld: result changed after a T = %d call with config %d", activation,
            (long long)T, TMAX, other);
  }
  tmem_free(MOE_BACKEND_CPU, ws);
  free(logits);
  free(ref);
  free(out);
  setup_free(&s);
}

int main(void) {
  check_setup(MOE_ACTIVATION_SWIGLU, 1); /* gemm biases, alpha / beta / clamp */
  check_setup(MOE_ACTIVATION_SWIGLU, 0);
  check_setup(MOE_ACTIVATION_GEGLU, 1);
  check_setup(MOE_ACTIVATION_RELU2, 0);
  return tc_summary("test_independence");
}
