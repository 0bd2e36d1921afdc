/*
 * test_moe.c - the CPU MoE (GEMM1 + activation, GEMM2, finalize) against an independent
 * double-precision reference written here from canonical weights (no prepared layout), and,
 * with a CUDA device, the CUDA backend against the CPU backend.
 *
 * Two references per case, both in double from the canonical W1 [E_l, f*I, H] / W2 [E_l, H, I]
 * and the routing read back from the plan (routing itself is verified by test_routing):
 *  - exact: no intermediate rounding. Bound ||cpu - ref|| / ||ref|| <= 1e-2 (the bf16 bound).
 *  - rounded: the docs/formats.md rounding points (activation output and GEMM2 output rounded
 *    to bf16, finalize summed in fp32 in slot order, rounded once). The library differs from
 *    it only by fp32-vs-double accumulation (relative ~1e-6 per dot product), which flips an
 *    intermediate bf16 rounding (2^-8) only rarely, so the bound is 1e-3 (largest seen: 2e-4).
 * Outputs are poisoned (NaN) first; every output element (finalize) or every valid permuted
 * row (no finalize) must be written and finite; tokens without a local slot must be exactly 0.
 *
 * GPU: every valid config x every activation against the CPU backend (||gpu - cpu|| / ||cpu||
 * <= 1e-2, all written and finite), T = 0 and 1, EP, finalize 0 / 1, both GEMM1 token paths
 * (gathered rows, and the permuted copy from 256 tokens per expert), and two runs bitwise
 * identical.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

#define BOUND_EXACT 1e-2
#define BOUND_ROUNDED 1e-3
#define BOUND_GPU 1e-2

static const int k_acts[] = {MOE_ACTIVATION_SWIGLU, MOE_ACTIVATION_GEGLU, MOE_ACTIVATION_RELU2,
                             MOE_ACTIVATION_IDENTITY};

typedef struct mcase {
  int act, method, input, gemm_bias, swiglu_params, finalize;
  int all_remote; /* routed ids 0..K-1 for every token: none local when o >= K */
  int32_t E, K, o, El, tile, C;
  int64_t T, H, I;
  uint64_t seed;
} mcase;

typedef struct mdata {
  uint16_t *logits, *pw;
  int32_t *ids, *packed;
  t_expert_data x; /* hidden, weights, biases, SwiGLU parameters */
} mdata;

static void make_data(const mcase *c, mdata *d) {
  const int64_t T = c->T, E = c->E, K = c->K, H = c->H, I = c->I, El = c->El;
  const int64_t f = t_gated(c->act) ? 2 : 1;
  memset(d, 0, sizeof *d);
  d->logits = t_xmalloc((size_t)(T * E) * 2);
  gen_fill_bf16(c->seed, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_BF16, d->logits, T * E);
  d->ids = t_xmalloc((size_t)(T * K) * 4);
  d->pw = t_xmalloc((size_t)(T * K) * 2);
  gen_routed(c->seed, T, (int32_t)K, (int32_t)E, d->ids, d->pw);
  if (c->all_remote)
    for (int64_t x = 0; x < T * K; ++x) d->ids[x] = (int32_t)(x % K);
  d->packed = t_xmalloc((size_t)(T * K) * 4);
  for (int64_t x = 0; x < T * K; ++x) d->packed[x] = gen_pack(d->ids[x], d->pw[x]);
  t_expert_data_gen(c->seed, T, El, H, I, f == 2, c->gemm_bias, c->swiglu_params, &d->x);
}

static void free_data(mdata *d) {
  free(d->logits);
  t_expert_data_free(&d->x);
  free(d->pw);
  free(d->ids);
  free(d->packed);
}

static void to_route(const mcase *c, const mdata *d, t_route *r) {
  t_route_init(r);
  r->method = c->method;
  r->input = c->input;
  r->logits = d->logits;
  r->ids = d->ids;
  r->weights = d->pw;
  r->packed = d->packed;
  if (c->method == MOE_ROUTING_DEEPSEEK_V3) r->scale = 2.5f;
}

static t_moe_in to_in(const mdata *d) {
  t_moe_in in = t_expert_data_in(&d->x);
  return in;
}

/* ---- reference ---------------------------------------------------------------------------- */
static double rnd(double v, int round) {
  return round ? bf16_to_f32(f32_to_bf16((float)v)) : v;
}

static double act_gated(int act, double up, double gate, const mdata *d, int64_t el) {
  if (act == MOE_ACTIVATION_GEGLU) return up * 0.5 * gate * (1.0 + erf(gate / sqrt(2.0)));
  double alpha = d->x.alpha ? d->x.alpha[el] : 1.0, beta = d->x.beta ? d->x.beta[el] : 0.0;
  if (d->x.clamp) {
    double L = d->x.clamp[el];
    up = up < -L ? -L : up > L ? L : up;
    gate = gate > L ? L : gate;
  }
  return gate / (1.0 + exp(-alpha * gate)) * (up + beta);
}

/*
 * y[x, :] for every local slot x (unweighted FFN rows), and the finalized out [T, H].
 * round = 1 applies the library's rounding points.
 */
static void reference(const mcase *c, const mdata *d, const host_plan *hp, int round, double *y,
                      double *out) {
  const int64_t T = c->T, K = c->K, H = c->H, I = c->I, f = t_gated(c->act) ? 2 : 1;
  double *h1 = t_xmalloc((size_t)(f * I) * sizeof(double));
  double *a = t_xmalloc((size_t)I * sizeof(double));
  float *acc32 = t_xmalloc((size_t)H * sizeof(float)); /* per token; any H */
  double *accd = t_xmalloc((size_t)H * sizeof(double));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      acc32[h] = 0.0f;
      accd[h] = 0.0;
    }
    for (int64_t k = 0; k < K; ++k) {
      int64_t x = t * K + k;
      int32_t e = hp->topk_ids[x];
      if (e < c->o || e >= c->o + c->El) continue;
      int64_t el = e - c->o;
      const uint16_t *W1 = d->x.w1 + el * f * I * c->H, *W2 = d->x.w2 + el * H * I;
      const uint16_t *xr = d->x.hidden + t * H;
      for (int64_t r = 0; r < f * I; ++r) {
        double s = 0;
        for (int64_t h = 0; h < H; ++h)
          s += (double)bf16_to_f32(xr[h]) * bf16_to_f32(W1[r * H + h]);
        if (d->x.b1) s += d->x.b1[el * f * I + r];
        h1[r] = s;
      }
      for (int64_t i = 0; i < I; ++i) {
        double v;
        if (f == 2)
          v = act_gated(c->act, h1[i], h1[I + i], d, el);
        else if (c->act == MOE_ACTIVATION_RELU2)
          v = h1[i] > 0 ? h1[i] * h1[i] : 0.0;
        else
          v = h1[i];
        a[i] = rnd(v, round);
      }
      double w = bf16_to_f32(hp->weights[x]);
      for (int64_t h = 0; h < H; ++h) {
        double s = 0;
        for (int64_t i = 0; i < I; ++i) s += a[i] * bf16_to_f32(W2[h * I + i]);
        if (d->x.b2) s += d->x.b2[el * H + h];
        s = rnd(s, round);
        y[x * H + h] = s;
        acc32[h] += (float)w * (float)s;
        accd[h] += w * s;
      }
    }
    for (int64_t h = 0; h < H; ++h) out[t * H + h] = round ? rnd(acc32[h], 1) : accd[h];
  }
  free(h1);
  free(a);
  free(acc32);
  free(accd);
}

/* ---- comparison of a library result with the references ------------------------------------ */
static double g_max_err[2]; /* largest error seen against the exact / rounded reference */

static void check_result(const mcase *c, const host_plan *hp, const moe_plan *plan,
                         const uint16_t *got, const double *y_ref, const double *out_ref,
                         double bound, const char *what) {
  const int64_t T = c->T, K = c->K, H = c->H;
  if (c->finalize) {
    CHECK(t_count_nonfinite(got, T * H) == 0, "%s: %lld output elements not written / not finite",
          what, (long long)t_count_nonfinite(got, T * H));
    for (int64_t t = 0; t < T; ++t) {
      int any = 0;
      for (int64_t k = 0; k < K; ++k) any |= hp->e2p[t * K + k] >= 0;
      if (!any)
        for (int64_t h = 0; h < H; ++h)
          CHECK(bf16_to_f32(got[t * H + h]) == 0.0f,
                "%s: token %lld has no local slot but out[%lld] = %g", what, (long long)t,
                (long long)h, bf16_to_f32(got[t * H + h]));
    }
    double err = t_rel_err_ref(got, out_ref, T * H);
    if (err > g_max_err[bound < BOUND_EXACT]) g_max_err[bound < BOUND_EXACT] = err;
    CHECK(err <= bound, "%s: ||out - ref|| / ||ref|| = %.3g > %.1g", what, err, bound);
  } else {
    /* gather the valid permuted rows in slot order */
    int64_t n = 0;
    for (int64_t x = 0; x < T * K; ++x) n += hp->e2p[x] >= 0;
    uint16_t *g = t_xmalloc((size_t)(n * H) * 2 + 2);
    double *r = t_xmalloc((size_t)(n * H) * sizeof(double) + 8);
    int64_t j = 0;
    for (int64_t x = 0; x < T * K; ++x) {
      int32_t p = hp->e2p[x];
      if (p < 0) continue;
      CHECK(p < plan->max_padded_rows, "%s: row %d beyond capacity", what, p);
      memcpy(g + j * H, got + (int64_t)p * H, (size_t)H * 2);
      memcpy(r + j * H, y_ref + x * H, (size_t)H * sizeof(double));
      ++j;
    }
    CHECK(t_count_nonfinite(g, n * H) == 0, "%s: %lld permuted elements not written / not finite",
          what, (long long)t_count_nonfinite(g, n * H));
    double err = t_rel_err_ref(g, r, n * H);
    if (err > g_max_err[bound < BOUND_EXACT]) g_max_err[bound < BOUND_EXACT] = err;
    CHECK(err <= bound, "%s: ||permuted - ref|| / ||ref|| = %.3g > %.1g", what, err, bound);
    free(g);
    free(r);
  }
}

static void case_str(const mcase *c, char *buf, size_t n) {
  snprintf(buf, n,
           "act=%d method=%d input=%d T=%lld E=%d K=%d o=%d El=%d H=%lld I=%lld tile=%d C=%d "
           "gemm_bias=%d swiglu=%d finalize=%d seed=%llu",
           c->act, c->method, c->input, (long long)c->T, c->E, c->K, c->o, c->El, (long long)c->H,
           (long long)c->I, c->tile, c->C, c->gemm_bias, c->swiglu_params, c->finalize,
           (unsigned long long)c->seed);
}

static moe_runner *g_cpu[8];
static long g_cases;

static moe_runner *cpu_runner(int act) {
  return g_cpu[act];
}

/* Prepare + run a case on one backend; returns 0 and fills @p out and @p hp on success. */
static int run_backend(moe_runner *r, int backend, const mcase *c, const mdata *d, int32_t cfg,
                       host_plan *hp, moe_plan *plan, uint16_t **out, int repeat_check) {
  moe_problem p;
  t_problem(&p, c->E, c->T, c->K, c->o, c->El, c->H, c->I);
  t_ws ws;
  int rc = 1;
  memset(hp, 0, sizeof *hp);
  *out = NULL;
  if (CHECK_OK(t_ws_alloc(r, backend, &p, cfg, &ws))) return 1;
  t_route rt;
  to_route(c, d, &rt);
  t_moe_in in = to_in(d);
  t_weights w = {NULL, NULL};
  if (CHECK_OK(t_prepare(r, backend, &p, &rt, cfg, &ws, plan))) goto done;
  if (t_read_plan(r, plan, &ws, c->E, hp)) goto done;
  if (CHECK_OK(t_weights_prepare(r, backend, &p, c->act, &in, &w))) goto done;
  int64_t rows = c->finalize ? c->T : plan->max_padded_rows;
  *out = t_xmalloc((size_t)(rows * c->H) * 2 + 2);
  if (CHECK_OK(t_run(r, backend, &p, c->act, &in, &w, cfg, plan, &ws, c->finalize, *out)))
    goto done;
  if (repeat_check) { /* bitwise identical run to run */
    uint16_t *again = t_xmalloc((size_t)(rows * c->H) * 2 + 2);
    if (!CHECK_OK(t_run(r, backend, &p, c->act, &in, &w, cfg, plan, &ws, c->finalize, again))) {
      int same = 1;
      if (c->finalize) {
        same = memcmp(again, *out, (size_t)(rows * c->H) * 2) == 0;
      } else {
        for (int64_t x = 0; x < c->T * c->K; ++x)
          if (hp->e2p[x] >= 0)
            same &= memcmp(again + (int64_t)hp->e2p[x] * c->H, *out + (int64_t)hp->e2p[x] * c->H,
                           (size_t)c->H * 2) == 0;
      }
      CHECK(same, "backend %d: two runs differ", backend);
    }
    free(again);
  }
  rc = 0;
done:
  t_weights_free(&w);
  t_ws_free(&ws);
  return rc;
}

static void cpu_case(const mcase *c) {
  char cs[400];
  case_str(c, cs, sizeof cs);
  ++g_cases;
  mdata d;
  make_data(c, &d);
  moe_runner *r = cpu_runner(c->act);
  moe_problem p;
  t_problem(&p, c->E, c->T, c->K, c->o, c->El, c->H, c->I);
  int32_t cfg = t_find_config(r, &p, c->tile, c->C);
  CHECK(cfg >= 0, "%s: no config", cs);
  host_plan hp;
  moe_plan plan;
  uint16_t *out = NULL;
  if (cfg >= 0 && run_backend(r, MOE_BACKEND_CPU, c, &d, cfg, &hp, &plan, &out, 1) == 0) {
    double *y = t_xmalloc((size_t)(c->T * c->K * c->H) * sizeof(double) + 8);
    double *o = t_xmalloc((size_t)(c->T * c->H) * sizeof(double) + 8);
    char what[460];
    reference(c, &d, &hp, 0, y, o);
    snprintf(what, sizeof what, "%s (exact ref)", cs);
    check_result(c, &hp, &plan, out, y, o, BOUND_EXACT, what);
    reference(c, &d, &hp, 1, y, o);
    snprintf(what, sizeof what, "%s (rounded ref)", cs);
    check_result(c, &hp, &plan, out, y, o, BOUND_ROUNDED, what);
    free(y);
    free(o);
  }
  free(out);
  t_free_plan(&hp);
  free_data(&d);
}

static void cpu_suite(void) {
  t_rng g = {2024};
  mcase c;
  /* every activation x gemm bias x swiglu params x EP x finalize, routing varied */
  for (int ai = 0; ai < 4; ++ai)
    for (int gb = 0; gb < 2; ++gb)
      for (int sp = 0; sp < 2; ++sp)
        for (int ep = 0; ep < 2; ++ep)
          for (int fin = 0; fin < 2; ++fin) {
            if (sp && k_acts[ai] != MOE_ACTIVATION_SWIGLU) continue;
            memset(&c, 0, sizeof c);
            c.act = k_acts[ai];
            c.gemm_bias = gb;
            c.swiglu_params = sp;
            c.finalize = fin;
            c.method = (int)((int64_t[]){MOE_ROUTING_RENORMALIZE, MOE_ROUTING_TOPK,
                                         MOE_ROUTING_DEEPSEEK_V3,
                                         MOE_ROUTING_RENORMALIZE_NAIVE})[t_rng_range(&g, 0, 3)];
            c.input = (int)t_rng_range(&g, 0, 2);
            c.E = 16;
            c.K = (int32_t)t_rng_range(&g, 1, 4);
            c.El = 16;
            if (ep) {
              c.o = (int32_t)t_rng_range(&g, 0, 8);
              c.El = (int32_t)t_rng_range(&g, 1, 16 - c.o);
            }
            c.T = t_rng_range(&g, 1, 70);
            c.H = 64 * t_rng_range(&g, 1, 4);
            c.I = 64 * t_rng_range(&g, 1, 3);
            c.C = (int32_t)((int64_t[]){1, 2, 4})[t_rng_range(&g, 0, 2)];
            c.tile = 8 * c.C * (int32_t)((int64_t[]){1, 2, 4})[t_rng_range(&g, 0, 2)];
            c.seed = t_rng_next(&g) >> 1;
            cpu_case(&c);
          }
  /* T = 0 and 1, K = 1, and a DeepSeek-like shape with many experts */
  for (int ai = 0; ai < 4; ++ai)
    for (int ti = 0; ti < 3; ++ti) {
      memset(&c, 0, sizeof c);
      c.act = k_acts[ai];
      c.method = MOE_ROUTING_RENORMALIZE;
      c.E = ti == 2 ? 64 : 8;
      c.K = ti == 2 ? 6 : 2;
      c.El = c.E;
      c.T = ((int64_t[]){0, 1, 33})[ti];
      c.H = 128;
      c.I = 64;
      c.tile = 16;
      c.C = 2;
      c.finalize = ti != 1 || ai % 2;
      c.gemm_bias = ai % 2;
      c.seed = 55 + ai * 3 + ti;
      cpu_case(&c);
    }
}

/* The CPU backend's results do not depend on its thread count (digests rely on it). */
static void thread_determinism(void) {
  mcase c;
  memset(&c, 0, sizeof c);
  c.act = MOE_ACTIVATION_SWIGLU;
  c.method = MOE_ROUTING_DEEPSEEK_V3;
  c.E = 32;
  c.K = 6;
  c.El = 32;
  c.T = 301;
  c.H = 128;
  c.I = 192;
  c.tile = 32;
  c.C = 2;
  c.gemm_bias = 1;
  c.swiglu_params = 1;
  c.seed = 31337;
  mdata d;
  make_data(&c, &d);
  uint16_t *ref = NULL;
  for (int i = 0; i < 3; ++i) {
    int threads = ((int[]){1, 3, 7})[i];
    moe_runner_options o;
    moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
    o.backend = MOE_BACKEND_CPU;
    o.activation = c.act;
    o.num_threads = threads;
    moe_runner *r = NULL;
    if (CHECK_OK(moe_runner_create(&o, &r))) break;
    moe_problem p;
    t_problem(&p, c.E, c.T, c.K, c.o, c.El, c.H, c.I);
    host_plan hp;
    moe_plan plan;
    uint16_t *out = NULL;
    if (run_backend(r, MOE_BACKEND_CPU, &c, &d, t_find_config(r, &p, c.tile, c.C), &hp, &plan, &out,
                    0) == 0) {
      if (!ref)
        ref = out;
      else {
        CHECK(memcmp(ref, out, (size_t)(c.T * c.H) * 2) == 0,
              "CPU output with %d threads differs from 1 thread", threads);
        free(out);
      }
    }
    t_free_plan(&hp);
    moe_runner_destroy(r);
  }
  free(ref);
  free_data(&d);
}

/* moe_forward (default config) equals routing_prepare + run with that config, bit for bit. */
/*
 * moe_runner_autotune on the CPU backend: times every valid config once, returns each exactly
 * once, fastest first; and, since the CPU result does not depend on the config (same per-token
 * sums, only the padding differs), the output it leaves equals the default config's.
 */
static void autotune_matches(moe_runner *r, const moe_problem *p, const moe_routing_args *ra,
                             const moe_run_args *rn, ttensor *out, const uint16_t *ref) {
  int32_t valid[64], nv = 0, cfgs[64], n = 0;
  float us[64];
  size_t need = 0, b = 0;
  if (CHECK_OK(moe_runner_get_valid_configs(r, p, valid, 64, &nv))) return;
  for (int32_t i = 0; i < nv; ++i)
    if (!CHECK_OK(moe_runner_get_workspace_size(r, p, valid[i], &b)) && b > need) need = b;
  void *ws = aligned_alloc(256, (need + 255) / 256 * 256);
  CHECK(ws != NULL, "workspace allocation");
  if (!ws) return;
  CHECK(moe_runner_autotune(r, p, ra, rn, ws, need - 1, 1, cfgs, us, 64, &n, NULL) ==
            MOE_STATUS_INSUFFICIENT_WORKSPACE,
        "autotune with a workspace too small for one config");
  tmem_poison(MOE_BACKEND_CPU, out->t.data, out->bytes);
  if (!CHECK_OK(moe_runner_autotune(r, p, ra, rn, ws, need, 1, cfgs, us, 64, &n, NULL))) {
    CHECK(n == nv, "autotune returned %d configs, %d are valid", n, nv);
    for (int32_t i = 0; i < n && i < 64; ++i) {
      int found = 0;
      for (int32_t j = 0; j < nv; ++j) found += valid[j] == cfgs[i];
      for (int32_t j = 0; j < i; ++j) found += cfgs[j] == cfgs[i] ? 10 : 0;
      CHECK(found == 1, "autotune config %d at rank %d: not valid or repeated", cfgs[i], i);
      CHECK(us[i] > 0.0f && (i == 0 || us[i] >= us[i - 1]), "autotune times not ascending");
    }
    CHECK(memcmp(out->t.data, ref, (size_t)(p->num_tokens * p->hidden_size) * 2) == 0,
          "output after autotune differs from the default config's");
  }
  free(ws);
}

static void forward_matches(void) {
  mcase c;
  memset(&c, 0, sizeof c);
  c.act = MOE_ACTIVATION_GEGLU;
  c.method = MOE_ROUTING_RENORMALIZE;
  c.E = 16;
  c.K = 3;
  c.o = 2;
  c.El = 9;
  c.T = 45;
  c.H = 128;
  c.I = 64;
  c.gemm_bias = 1;
  c.finalize = 1;
  c.seed = 4711;
  mdata d;
  make_data(&c, &d);
  moe_runner *r = cpu_runner(c.act);
  moe_problem p;
  t_problem(&p, c.E, c.T, c.K, c.o, c.El, c.H, c.I);
  int32_t cfg = -1;
  moe_config_info info;
  memset(&info, 0, sizeof info);
  info.version = MOE_CONFIG_INFO_VERSION;
  if (CHECK_OK(moe_runner_get_default_config(r, &p, &cfg)) ||
      CHECK_OK(moe_runner_describe_config(r, cfg, &info))) {
    free_data(&d);
    return;
  }
  c.tile = info.tile;
  c.C = info.cluster_size;
  host_plan hp;
  moe_plan plan;
  uint16_t *ref = NULL;
  if (run_backend(r, MOE_BACKEND_CPU, &c, &d, cfg, &hp, &plan, &ref, 0) == 0) {
    t_ws ws;
    t_moe_in in = to_in(&d);
    t_weights w = {NULL, NULL};
    if (!CHECK_OK(t_ws_alloc(r, MOE_BACKEND_CPU, &p, cfg, &ws)) &&
        !CHECK_OK(t_weights_prepare(r, MOE_BACKEND_CPU, &p, c.act, &in, &w))) {
      ttensor *lg = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){c.T, c.E}, d.logits);
      ttensor *hid = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){c.T, c.H}, d.x.hidden);
      ttensor *b1 = tt_from_host(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){c.El, 2 * c.I}, d.x.b1);
      ttensor *b2 = tt_from_host(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){c.El, c.H}, d.x.b2);
      ttensor *out = tt_new(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){c.T, c.H});
      tmem_poison(MOE_BACKEND_CPU, out->t.data, out->bytes);
      moe_routing_args ra;
      moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
      ra.logits = &lg->t;
      moe_run_args rn;
      moe_run_args_init(&rn, MOE_RUN_ARGS_VERSION);
      rn.hidden_states = &hid->t;
      rn.gemm1_weights = &w.w1->t;
      rn.gemm2_weights = &w.w2->t;
      rn.gemm1_bias = &b1->t;
      rn.gemm2_bias = &b2->t;
      rn.output = &out->t;
      if (!CHECK_OK(moe_forward(r, &p, &ra, &rn, ws.ptr, ws.bytes, NULL)))
        CHECK(memcmp(out->t.data, ref, (size_t)(c.T * c.H) * 2) == 0,
              "moe_forward differs from prepare + run with the default config");
      autotune_matches(r, &p, &ra, &rn, out, ref);
      tt_free(lg);
      tt_free(hid);
      tt_free(b1);
      tt_free(b2);
      tt_free(out);
    }
    t_weights_free(&w);
    t_ws_free(&ws);
  }
  free(ref);
  t_free_plan(&hp);
  free_data(&d);
}

#ifdef MOE_TEST_WITH_CUDA
static void gpu_case(moe_runner *gr, const mcase *c, int32_t cfg) {
  char cs[400];
  case_str(c, cs, sizeof cs);
  mdata d;
  make_data(c, &d);
  host_plan hc, hg;
  moe_plan pc, pg;
  uint16_t *oc = NULL, *og = NULL;
  if (run_backend(cpu_runner(c->act), MOE_BACKEND_CPU, c, &d, cfg, &hc, &pc, &oc, 0) == 0 &&
      run_backend(gr, MOE_BACKEND_CUDA, c, &d, cfg, &hg, &pg, &og, 1) == 0) {
    char what[460];
    snprintf(what, sizeof what, "GPU vs CPU plan %s", cs);
    t_compare_plans(&hg, &hc, what);
    int64_t n = 0, H = c->H;
    uint16_t *a, *b;
    if (c->finalize) {
      n = c->T * H;
      a = og;
      b = oc;
    } else {
      int64_t rows = 0;
      for (int64_t x = 0; x < c->T * c->K; ++x) rows += hc.e2p[x] >= 0;
      a = t_xmalloc((size_t)(rows * H) * 2 + 2);
      b = t_xmalloc((size_t)(rows * H) * 2 + 2);
      for (int64_t x = 0; x < c->T * c->K; ++x) {
        if (hc.e2p[x] < 0) continue;
        memcpy(a + n, og + (int64_t)hg.e2p[x] * H, (size_t)H * 2);
        memcpy(b + n, oc + (int64_t)hc.e2p[x] * H, (size_t)H * 2);
        n += H;
      }
    }
    CHECK(t_count_nonfinite(a, n) == 0, "%s: GPU left %lld elements unwritten / not finite", cs,
          (long long)t_count_nonfinite(a, n));
    double err = t_rel_err_bf16(a, b, n);
    CHECK(err <= BOUND_GPU, "%s: ||gpu - cpu|| / ||cpu|| = %.3g", cs, err);
    if (c->finalize)
      for (int64_t t = 0; t < c->T; ++t) {
        int any = 0;
        for (int64_t k = 0; k < c->K; ++k) any |= hc.e2p[t * c->K + k] >= 0;
        if (!any)
          for (int64_t h = 0; h < H; ++h)
            CHECK(bf16_to_f32(og[t * H + h]) == 0.0f,
                  "%s: GPU token %lld without local slot "
                  "not 0",
                  cs, (long long)t);
      }
    if (!c->finalize) {
      free(a);
      free(b);
    }
  }
  free(oc);
  free(og);
  t_free_plan(&hc);
  t_free_plan(&hg);
  free_data(&d);
}

/* gpu_case with every expert local (o = 0, E_l = 16) and the given T, K, H, I; K, H and I return
 * to the suite's 4, 256 and 128 afterwards. */
static void gpu_case_shape(moe_runner *gr, mcase *c, int32_t cfg, int64_t T, int32_t K, int64_t H,
                           int64_t I) {
  c->T = T;
  c->K = K;
  c->H = H;
  c->I = I;
  c->o = 0;
  c->El = 16;
  gpu_case(gr, c, cfg);
  c->K = 4;
  c->H = 256;
  c->I = 128;
}

static void gpu_suite(void) {
  moe_runner *gr[8] = {0};
  long n = 0;
  t_rng g = {99};
  for (int ai = 0; ai < 4; ++ai) {
    int act = k_acts[ai];
    gr[act] = t_runner(MOE_BACKEND_CUDA, act);
    if (!gr[act]) continue;
    if (ai == 0) t_check_gpu_config_names(&gr[act], 1);
    mcase c;
    memset(&c, 0, sizeof c);
    c.act = act;
    c.method = MOE_ROUTING_RENORMALIZE;
    c.E = 16;
    c.K = 4;
    c.El = 16;
    c.T = 200;
    c.H = 256;
    c.I = 128;
    c.finalize = 1;
    int k10_done = 0;
    moe_problem p;
    t_problem(&p, c.E, c.T, c.K, 0, c.El, c.H, c.I);
    int32_t cfgs[64], nc = 0;
    CHECK_OK(moe_runner_get_valid_configs(gr[act], &p, cfgs, 64, &nc));
    for (int32_t i = 0; i < nc && i < 64; ++i) {
      if (!t_gpu_config_selected(gr[act], cfgs[i])) continue;
      moe_config_info info;
      memset(&info, 0, sizeof info);
      info.version = MOE_CONFIG_INFO_VERSION;
      CHECK_OK(moe_runner_describe_config(gr[act], cfgs[i], &info));
      c.tile = info.tile;
      c.C = info.cluster_size;
      c.gemm_bias = (int)(i % 2);
      c.swiglu_params = act == MOE_ACTIVATION_SWIGLU && i % 3 == 0;
      c.seed = t_rng_next(&g) >> 1;
      c.T = 200;
      c.o = 0;
      c.El = 16;
      c.finalize = 1;
      gpu_case(gr[act], &c, cfgs[i]);
      ++n;
      /* T = 1, EP and no finalize on the same config */
      c.T = 1;
      gpu_case(gr[act], &c, cfgs[i]);
      c.T = 77;
      c.o = 4;
      c.El = 8;
      c.finalize = 0;
      gpu_case(gr[act], &c, cfgs[i]);
      c.finalize = 1;
      c.input = T_INPUT_PACKED;
      gpu_case(gr[act], &c, cfgs[i]);
      c.input = T_INPUT_LOGITS;
      c.T = 0;
      gpu_case(gr[act], &c, cfgs[i]);
      n += 4;
      /* Finalize with few slots: tokens without a local slot among those with one, and a
       * batch without any (every GEMM CTA leaves at once; the output must still be all
       * zeros). */
      c.T = 16;
      gpu_case(gr[act], &c, cfgs[i]);
      c.T = 3;
      c.input = T_INPUT_IDS;
      c.all_remote = 1;
      gpu_case(gr[act], &c, cfgs[i]);
      c.all_remote = 0;
      c.input = T_INPUT_LOGITS;
      n += 2;
      /* The cases above have T*K < 256 E_l, where GEMM1 gathers its token rows; from there on,
       * configs with a CTA tile >= 64 read a permuted copy instead (kernels/gemm/launch.cu).
       * T = 1100 (a = 275) covers that path once per config (it does not depend on the
       * activation). With H = 1536, the C = 1 configs with one CTA per SM run GEMM2 as a
       * persistent kernel (sm90_bf16_gemm2_persistent.cuh) with more tiles than resident CTAs
       * (t192: 32 token CTAs x 6 M tiles; 132 SMs on an H100), so CTAs walk several tiles. */
      if (info.cta_tile >= 64 && act == MOE_ACTIVATION_SWIGLU) {
        gpu_case_shape(gr[act], &c, cfgs[i], 1100, 4, 1536, 640);
        ++n;
      }
      /* A partly filled tile's main loop covers only its live rows while K <= 64 k-blocks
       * (kTrimMaxKBlocks, kernels/gemm/sm90_bf16_grouped.cuh), which every case above has;
       * past that it keeps the full width with the trimmed epilogue. GEMM1 with K = H = 4160
       * and GEMM2 with K = I = 4160 (65 k-blocks), once each per config whose CTA tile is
       * wider than the 32-row trim step (T = 200: ~50 rows an expert, a partly filled tile).
       * K = I = 4160 is also past kPersistentGemm2MaxKBlocks (kernels/gemm/launch.cu): the
       * configs with a persistent GEMM2 run their one-tile GEMM2 there, so that case runs for
       * every config. */
      if (info.cta_tile > 32 && act == MOE_ACTIVATION_SWIGLU) {
        gpu_case_shape(gr[act], &c, cfgs[i], 200, 4, 4160, 64);
        ++n;
      }
      if (act == MOE_ACTIVATION_SWIGLU) {
        gpu_case_shape(gr[act], &c, cfgs[i], 200, 4, 64, 4160);
        ++n;
      }
      /* K = 10 (Renormalize's largest) is more slots than the finalize loads in one batch (8,
       * kernels/finalize.cu): the second batch, partly past top_k. Once per activation; the
       * finalize does not depend on the config. */
      if (!k10_done) {
        gpu_case_shape(gr[act], &c, cfgs[i], 40, 10, 256, 128);
        k10_done = 1;
        ++n;
      }
    }
    moe_runner_destroy(gr[act]);
  }
  printf("GPU: %ld MoE cases compared with the CPU backend\n", n);
}
#endif

/* The default config of the presets follows the measured heuristic of core/configs.c
 * (docs/performance.md): a change to the ranking must change this table deliberately. */
static void default_configs(void) {
  static const struct {
    const char *name;
    int32_t E, K;
    int64_t T, H, I;
    int32_t tile, C, block_m;
  } k[] = {
      {"deepseek-v3 T=1", 256, 8, 1, 7168, 2048, 8, 1, 128},
      {"llama4-maverick T=32", 128, 1, 32, 5120, 8192, 8, 1, 128},
      {"deepseek-v3 T=16384", 256, 8, 16384, 7168, 2048, 192, 1, 256},
      {"mixtral-8x7b T=8192", 8, 2, 8192, 4096, 14336, 192, 1, 256},
      {"qwen3-235b T=16384", 128, 8, 16384, 4096, 1536, 192, 1, 256},
      {"gpt-oss-120b T=8192", 128, 4, 8192, 2880, 2880, 192, 1, 256},
      {"qwen3-30b T=2048", 128, 8, 2048, 2048, 768, 192, 1, 256},
      {"llama4-maverick T=8192", 128, 1, 8192, 5120, 8192, 128, 1, 256},
      {"qwen3-30b T=512", 128, 8, 512, 2048, 768, 64, 1, 128},
      {"deepseek-v3 T=128", 256, 8, 128, 7168, 2048, 64, 1, 128},
      {"gpt-oss-120b T=32", 128, 4, 32, 2880, 2880, 64, 1, 128},
      {"qwen3-235b T=8", 128, 8, 8, 4096, 1536, 8, 1, 128},
  };
  moe_runner *r = cpu_runner(MOE_ACTIVATION_SWIGLU);
  for (size_t i = 0; i < sizeof k / sizeof k[0]; ++i) {
    moe_problem p;
    t_problem(&p, k[i].E, k[i].T, k[i].K, 0, k[i].E, k[i].H, k[i].I);
    int32_t cfg = -1;
    moe_config_info info;
    memset(&info, 0, sizeof info);
    info.version = MOE_CONFIG_INFO_VERSION;
    if (CHECK_OK(moe_runner_get_default_config(r, &p, &cfg)) ||
        CHECK_OK(moe_runner_describe_config(r, cfg, &info)))
      continue;
    CHECK(
        info.tile == k[i].tile && info.cluster_size == k[i].C && info.gemm1_block_m == k[i].block_m,
        "%s: default config %s, expected tile %d C %d block_m %d", k[i].name, info.name, k[i].tile,
        k[i].C, k[i].block_m);
  }
}

int main(void) {
  for (int ai = 0; ai < 4; ++ai) {
    g_cpu[k_acts[ai]] = t_runner(MOE_BACKEND_CPU, k_acts[ai]);
    if (!g_cpu[k_acts[ai]]) return tc_summary("test_moe");
  }
  cpu_suite();
  printf(
      "CPU: %ld MoE cases checked against the double reference; largest relative error "
      "%.3g (exact reference, bound %.0e), %.3g (rounded reference, bound %.0e)\n",
      g_cases, g_max_err[0], BOUND_EXACT, g_max_err[1], BOUND_ROUNDED);
  thread_determinism();
  forward_matches();
  default_configs();
#ifdef MOE_TEST_WITH_CUDA
  if (!t_have_cuda())
    printf("SKIP: no CUDA device\n");
  else
    gpu_suite();
#else
  printf("SKIP: no CUDA device (CPU-only build)\n");
#endif
  for (int ai = 0; ai < 4; ++ai) moe_runner_destroy(g_cpu[k_acts[ai]]);
  return tc_summary("test_moe");
}
