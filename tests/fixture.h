/*
 * fixture.h - one small valid MoE call (runner, problem, logits, hidden states, prepared
 * weights, output, workspace) on either backend, for the misuse tests to change one thing of,
 * and an expect() that checks a status and that the message names the argument.
 */
#ifndef MOE_TEST_FIXTURE_H_
#define MOE_TEST_FIXTURE_H_

#include "common.h"

typedef struct fx {
  int backend;
  moe_runner *r;
  moe_problem p;                            /* E 8, K 2, H 64, I 64, T as given */
  int32_t cfg;                              /* the config of the given tile and cluster size */
  t_ws ws;                                  /* sized for p (T_max = T) and cfg, poisoned */
  ttensor *logits, *hidden, *w1, *w2, *out; /* w1 / w2 prepared */
  moe_plan plan;
} fx;

/* SwiGLU runner on @p backend; returns 0 on success (failures are counted as checks). */
int fx_init(fx *f, int backend, int64_t T, int32_t tile, int32_t cluster, uint64_t seed);
void fx_free(fx *f);
moe_routing_args fx_rargs(const fx *f);
moe_run_args fx_runargs(const fx *f);
/* Prepare routing for @p p (NULL = f->p) from f->logits (T rows used) into f->ws. */
moe_status_t fx_prepare(fx *f, const moe_problem *p, moe_plan *plan);
/* Run @p plan with f's tensors (problem f->p) into f->out. */
moe_status_t fx_run(fx *f, const moe_plan *plan);

/* Any status other than the one expected fails; so does a message without @p needle. */
#define FX_ANY (-100)
void fx_expect(moe_status_t got, moe_status_t want, moe_status_t want2, const char *needle,
               const char *call, const char *file, int line);
#define EXPECT(call, st, needle) \
  fx_expect((call), (st), FX_ANY, (needle), #call, __FILE__, __LINE__)
#define EXPECT2(call, st, st2, needle) \
  fx_expect((call), (st), (st2), (needle), #call, __FILE__, __LINE__)
#define IA MOE_STATUS_INVALID_ARGUMENT
#define NS MOE_STATUS_NOT_SUPPORTED
#define IC MOE_STATUS_INVALID_CONFIG

#endif /* MOE_TEST_FIXTURE_H_ */
