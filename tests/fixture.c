/*
 * fixture.c - see fixture.h.
 */
#include "fixture.h"

#include <stdlib.h>
#include <string.h>

#include "conformance/gen.h"

enum { FX_E = 8, FX_K = 2, FX_H = 64, FX_I = 64 };

int fx_init(fx *f, int backend, int64_t T, int32_t tile, int32_t cluster, uint64_t seed) {
  memset(f, 0, sizeof *f);
  f->backend = backend;
  f->r = t_runner(backend, MOE_ACTIVATION_SWIGLU);
  if (!f->r) return 1;
  t_problem(&f->p, FX_E, T, FX_K, 0, 0, FX_H, FX_I);
  f->cfg = t_find_config(f->r, &f->p, tile, cluster);
  CHECK(f->cfg >= 0, "fixture: no valid config with tile %d, C %d", tile, cluster);
  if (f->cfg < 0 || CHECK_OK(t_ws_alloc(f->r, backend, &f->p, f->cfg, &f->ws))) return 1;
  const int64_t n = T > 0 ? T : 1;
  uint16_t *lg = t_xmalloc((size_t)(n * FX_E) * 2), *hid = t_xmalloc((size_t)(n * FX_H) * 2);
  gen_fill_bf16(seed, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_BF16, lg, n * FX_E);
  gen_fill_bf16(seed, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, hid, n * FX_H);
  f->logits = tt_from_host(backend, DT_BF16, 2, (int64_t[]){T, FX_E}, lg);
  f->hidden = tt_from_host(backend, DT_BF16, 2, (int64_t[]){T, FX_H}, hid);
  free(lg);
  free(hid);
  t_expert_data d;
  t_expert_data_gen(seed, 0, FX_E, FX_H, FX_I, 1, 0, 0, &d);
  t_moe_in in = t_expert_data_in(&d);
  t_weights w;
  moe_status_t s = t_weights_prepare(f->r, backend, &f->p, MOE_ACTIVATION_SWIGLU, &in, &w);
  t_expert_data_free(&d);
  f->w1 = w.w1;
  f->w2 = w.w2;
  f->out = tt_new(backend, DT_BF16, 2, (int64_t[]){T, FX_H});
  moe_plan_init(&f->plan, MOE_PLAN_VERSION);
  return CHECK_OK(s) ? 1 : 0;
}

void fx_free(fx *f) {
  tt_free(f->logits);
  tt_free(f->hidden);
  tt_free(f->w1);
  tt_free(f->w2);
  tt_free(f->out);
  t_ws_free(&f->ws);
  moe_runner_destroy(f->r);
  memset(f, 0, sizeof *f);
}

moe_routing_args fx_rargs(const fx *f) {
  moe_routing_args a;
  moe_routing_args_init(&a, MOE_ROUTING_ARGS_VERSION);
  a.logits = &f->logits->t;
  return a;
}

moe_run_args fx_runargs(const fx *f) {
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.hidden_states = &f->hidden->t;
  a.gemm1_weights = &f->w1->t;
  a.gemm2_weights = &f->w2->t;
  a.output = &f->out->t;
  return a;
}

moe_status_t fx_prepare(fx *f, const moe_problem *p, moe_plan *plan) {
  if (!p) p = &f->p;
  /* logits with the problem's T rows (a view of the first rows of f->logits) */
  DLTensor lg = f->logits->t;
  int64_t shape[2] = {p->num_tokens, f->p.num_experts};
  lg.shape = shape;
  moe_routing_args a = fx_rargs(f);
  a.logits = &lg;
  return moe_routing_prepare(f->r, p, &a, f->cfg, f->ws.ptr, f->ws.bytes, plan, NULL);
}

moe_status_t fx_run(fx *f, const moe_plan *plan) {
  moe_run_args a = fx_runargs(f);
  return moe_runner_run(f->r, &f->p, &a, f->cfg, plan, f->ws.ptr, f->ws.bytes, NULL);
}

void fx_expect(moe_status_t got, moe_status_t want, moe_status_t want2, const char *needle,
               const char *call, const char *file, int line) {
  ++tc_checks;
  if (got != want && got != want2) {
    tc_fail(file, line, "%s -> %d (%s), expected %d (%s); message: %s", call, (int)got,
            moe_status_string(got), (int)want, moe_status_string(want), moe_get_last_error());
    return;
  }
  const char *m = moe_get_last_error();
  ++tc_checks;
  if (!m || !strstr(m, needle))
    tc_fail(file, line, "%s: message \"%s\" does not name \"%s\"", call, m ? m : "(null)", needle);
}
