/*
 * test_grouped.c - moe_runner_run_grouped (external token layouts, docs/ep.md) and the SM budget.
 * CPU (always):
 *  - CONTIGUOUS and MASKED rows equal, bit for bit, the unweighted rows moe_runner_run writes
 *    (do_finalize = 0, permuted_output) for the same tokens and experts, on an EP slice
 *    (local experts [o, o + E_l) of E), with gemm biases and SwiGLU parameters, for several
 *    configs; rows the counts do not cover stay untouched;
 *  - T = 0 and T = 1 (N = 0, all counts 0; one token);
 *  - FP8 runners (PER_TENSOR, BLOCK) with bf16 or e4m3 hidden states (+ 1x128 scales), both
 *    layouts, N = 0 and 1: the same bit-for-bit comparison with moe_runner_run's rows (same
 *    runner, config and input);
 *  - misuse: bad counts (negative, past capacity, sum past N), shapes, dtypes, layout,
 *    capacity, version, reserved, workspace, stream; FP8 scales missing, misshapen, of the
 *    wrong dtype or not taken (BF16 runner, mode), e4m3 hidden without scales, grouped args
 *    versions 1-2 -> the status, a message naming the argument (expected and given values),
 *    and nothing written; MXFP4 runners -> NOT_SUPPORTED;
 *  - moe_runner_options.sm_budget: bad values -> INVALID_ARGUMENT naming opts->sm_budget, the
 *    expected and the given value; version-2 options still accepted; a CPU runner with a
 *    budget gives the same rows;
 *  - a CUDA runner without a device (sm_version 90, where the build has CUDA): the host checks
 *    of the CUDA path (E_l past the plan builder's limit -> NOT_SUPPORTED, host counts ->
 *    INVALID_ARGUMENT, FP8 runners: a missing scale -> INVALID_ARGUMENT), then NO_DEVICE.
 * GPU (skipped with a printed reason when no device is present):
 *  - both layouts x every activation x every valid config (cluster sizes 1, 2, 4; tiles 8..256;
 *    weight tiles of 64, 128, 256 rows), skewed counts (a zero count, the largest count ==
 *    capacity): rows bit-identical to the GPU's moe_runner_run (do_finalize = 0, same config);
 *    within the library's GPU-vs-CPU bound (relative L2 <= 1e-2, every row written and finite,
 *    as test_moe) of the CPU backend's grouped rows; rows past the counts untouched; status 0;
 *  - T = 0 and T = 1; invalid device counts -> clamped, their status bits, nothing written
 *    outside the clamped rows (compute-sanitizer memcheck: scripts/gpu-check.sh);
 *  - an SM budget (1 and 8 SMs) leaves grouped and routed outputs bit-identical;
 *  - CUDA graph: a captured call replayed after new device counts equals a direct call;
 *  - FP8 runners (PER_TENSOR and BLOCK, bf16 and e4m3 hidden states with their scales, both
 *    layouts, every valid config: C = 1, 2, 4; PER_TENSOR with its gathering GEMM1 (N < 256
 *    rows per local expert) and, at N >= 256 rows per local expert, every config with a
 *    permuted-input GEMM1 (CTA tile >= 64)): rows bit-identical to the GPU's moe_runner_run
 *    (same runner, config and input), within test_fp8's FP8 GPU bound (relative L2 <= 1e-2, all
 *    finite) of the CPU backend's grouped rows, plans bit for bit, a second call bitwise equal,
 *    rows past the counts untouched; T = 0 and 1; clamped invalid counts; graph replay.
 * MOE_TEST_GPU_CASES=n runs every n-th valid config of each GPU case.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fp8_ref.h"
#ifdef MOE_TEST_WITH_CUDA
#include <cuda_runtime.h>
#endif

#define B MOE_BACKEND_CPU
#define DT_E4M3 ((DLDataType){kDLFloat8_e4m3fn, 8, 1})
#define POISON 0xFFFFu

/* Fixture: a routed reference for T tokens (pre-routed ids) and the grouping of its local
 * slots. */
typedef struct fx {
  int b; /* backend */
  int32_t E, K, o, El;
  int64_t T, H, I;
  int activation;
  int skew; /* local expert 1 gets no slot (its draws go to local expert 0) */
  moe_runner *r;
  t_expert_data d;
  t_moe_in in;
  t_weights w;
  int32_t *ids;       /* [T, K] */
  float *wts;         /* [T, K] routing weights (unused by the rows) */
  int32_t counts[64]; /* local slots per local expert */
  int64_t nlocal;     /* sum of counts */
  int64_t *slot;      /* [nlocal] slot x of each grouped row (experts ascending, x ascending) */
  uint16_t *ref;      /* [nlocal, H] the reference rows */
  /* FP8 runners (mode MOE_SCALING_PER_TENSOR or BLOCK; 0 = the BF16 runner) */
  int mode;
  int e4m3_in;  /* the hidden states are given as e4m3 (else bf16, quantized by the library) */
  uint8_t *xq;  /* [T, H] e4m3 hidden states (e4m3_in) */
  float *xs;    /* [T, H/128] their scales (e4m3_in, BLOCK) */
  float s12[2]; /* PER_TENSOR: gemm1_input_scale, gemm2_input_scale */
} fx;

static void fx_free(fx *f) {
  t_weights_free(&f->w);
  t_expert_data_free(&f->d);
  free(f->ids);
  free(f->wts);
  free(f->slot);
  free(f->ref);
  free(f->xq);
  free(f->xs);
  moe_runner_destroy(f->r);
}

/* The fixture's routing: its pre-routed ids and weights. */
static t_route fx_route(const fx *f) {
  t_route in;
  t_route_init(&in);
  in.method = MOE_ROUTING_TOPK;
  in.input = T_INPUT_IDS;
  in.ids = f->ids;
  in.weights_f32 = 1;
  in.weights = f->wts;
  return in;
}

/* Keep each local slot's permuted row of moe_runner_run (do_finalize = 0, config @p cfg, -1 =
 * the default) as the reference, with the grouping (counts, slot order) it implies. */
static int fx_reference(fx *f, int32_t cfg) {
  const int64_t T = f->T, H = f->H;
  const int32_t K = f->K;
  moe_problem p;
  t_problem(&p, f->E, T, K, f->o, f->El, H, f->I);
  const t_route in = fx_route(f);
  t_ws ws = {0};
  moe_plan plan;
  host_plan hp;
  memset(&hp, 0, sizeof hp);
  int bad = (cfg < 0 && CHECK_OK(moe_runner_get_default_config(f->r, &p, &cfg))) ||
            CHECK_OK(t_ws_alloc(f->r, f->b, &p, cfg, &ws)) ||
            CHECK_OK(t_prepare(f->r, f->b, &p, &in, cfg, &ws, &plan));
  uint16_t *perm = NULL;
  if (!bad) {
    perm = t_xmalloc(sizeof(uint16_t) * (size_t)(plan.max_padded_rows * H + 1));
    const int block_in = f->e4m3_in && f->mode == MOE_SCALING_BLOCK;
    bad = CHECK_OK(t_run_fp8(f->r, f->b, &p, f->activation, &f->in, &f->w, cfg, &plan, &ws, 0,
                             f->mode == MOE_SCALING_PER_TENSOR ? f->s12 : NULL,
                             f->e4m3_in ? f->xq : NULL, block_in ? f->xs : NULL, perm)) ||
          t_read_plan(f->r, &plan, &ws, f->E, &hp);
  }
  if (!bad) {
    if (!f->slot) f->slot = t_xmalloc(sizeof(int64_t) * (size_t)(T * K + 1));
    if (!f->ref) f->ref = t_xmalloc(sizeof(uint16_t) * (size_t)((T * K + 1) * H));
    f->nlocal = 0;
    for (int32_t e = 0; e < f->El; ++e) {
      f->counts[e] = 0;
      for (int64_t x = 0; x < T * K; ++x)
        if (f->ids[x] == f->o + e) {
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
  t_ws_free(&ws);
  return bad;
}

/* FP8 inputs of the fixture: PER_TENSOR's static scales (s1 from the hidden states' amax, s2 a
 * fixed guess: the rows are compared bit for bit, whatever saturates) and, with e4m3_in, the
 * hidden states quantized by the test (BLOCK: per token per 128 columns; PER_TENSOR: s1). */
static void fx_fp8_inputs(fx *f) {
  const int64_t T = f->T, H = f->H, n = T * H;
  float *x = t_xmalloc(sizeof(float) * (size_t)(n + 1));
  for (int64_t i = 0; i < n; ++i) x[i] = bf16_to_f32(f->in.hidden[i]);
  f->s12[0] = ref_fp8_scale_of(x, n, 1);
  f->s12[1] = 1.0f / 64.0f;
  if (f->e4m3_in) {
    const int block = f->mode == MOE_SCALING_BLOCK;
    f->xq = t_xmalloc((size_t)(n + 1));
    f->xs = t_xmalloc(sizeof(float) * (size_t)(T * (H / REF_FP8_BLOCK) + 1));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t g = 0; g < H / REF_FP8_BLOCK; ++g) {
        const float *row = x + t * H + g * REF_FP8_BLOCK;
        const float sc = block ? ref_fp8_scale_of(row, REF_FP8_BLOCK, 1) : f->s12[0];
        f->xs[t * (H / REF_FP8_BLOCK) + g] = sc;
        for (int64_t k = 0; k < REF_FP8_BLOCK; ++k)
          f->xq[t * H + g * REF_FP8_BLOCK + k] = ref_fp8_quantize(row[k], sc);
      }
  }
  free(x);
}

/* Route T tokens on backend @p b with ids drawn from [0, E) (some not local), run the plain
 * forward with do_finalize = 0 and keep each local slot's permuted row as the reference. A BF16
 * runner (mode 0) or an FP8 runner of scaling @p mode, bf16 or (e4m3_in) e4m3 hidden states. */
static int fx_init_prec(fx *f, int b, int activation, int skew, int mode, int e4m3_in,
                        uint64_t seed, int32_t E, int32_t o, int32_t El, int64_t T, int32_t K,
                        int64_t H, int64_t I) {
  memset(f, 0, sizeof *f);
  f->b = b, f->E = E, f->K = K, f->o = o, f->El = El, f->T = T, f->H = H, f->I = I;
  f->activation = activation;
  f->skew = skew;
  f->mode = mode;
  f->e4m3_in = e4m3_in;
  f->r = mode ? t_fp8_runner(b, mode, activation, 0) : t_runner(b, f->activation);
  if (!f->r) return 1;
  t_expert_data_gen(seed, T, El, H, I, t_gated(activation), 1, activation == MOE_ACTIVATION_SWIGLU,
                    &f->d);
  f->in = t_expert_data_in(&f->d);
  if (mode) fx_fp8_inputs(f);
  moe_problem p;
  t_problem(&p, E, T, K, o, El, H, I);
  if (CHECK_OK(t_weights_prepare(f->r, b, &p, f->activation, &f->in, &f->w))) return 1;
  t_rng rng = {seed * 7919 + 1};
  f->ids = t_xmalloc(sizeof(int32_t) * (size_t)(T * K + 1));
  f->wts = t_xmalloc(sizeof(float) * (size_t)(T * K + 1));
  for (int64_t t = 0; t < T; ++t)
    for (int32_t k = 0; k < K; ++k) { /* distinct ids per token */
      int32_t id;
      int dup;
      do {
        id = (int32_t)t_rng_range(&rng, 0, E - 1);
        if (skew && El > 1 && id == o + 1) id = o;
        dup = 0;
        for (int32_t j = 0; j < k; ++j) dup |= f->ids[t * K + j] == id;
      } while (dup);
      f->ids[t * K + k] = id;
      f->wts[t * K + k] = 0.5f;
    }
  return fx_reference(f, -1);
}

static int fx_init_on(fx *f, int b, int activation, int skew, uint64_t seed, int32_t E, int32_t o,
                      int32_t El, int64_t T, int32_t K, int64_t H, int64_t I) {
  return fx_init_prec(f, b, activation, skew, 0, 0, seed, E, o, El, T, K, H, I);
}

static int fx_init(fx *f, uint64_t seed, int32_t E, int32_t o, int32_t El, int64_t T, int32_t K,
                   int64_t H, int64_t I) {
  return fx_init_on(f, B, MOE_ACTIVATION_SWIGLU, 0, seed, E, o, El, T, K, H, I);
}

typedef struct grouped_call {
  int32_t layout;
  int64_t capacity, N;
  const int32_t *counts;
  const void *hidden;  /* host, the layout's shape: bf16, or e4m3 (fixture's e4m3_in) */
  int32_t cfg;         /* -1 = default */
  int32_t *status;     /* host copy of args->count_status, or NULL: none passed */
  uint8_t **ws_copy;   /* NULL, or gets a host copy of the workspace after the call */
  const float *hscale; /* host [N, H/128] scales of e4m3 hidden (BLOCK), or NULL */
} grouped_call;

/* Run grouped on the fixture's backend with tensors built from host data; output poisoned
 * first, copied to out_host ([N, H]). Returns the status. */
static moe_status_t run_grouped(fx *f, const grouped_call *c, uint16_t *out_host) {
  moe_problem p;
  t_problem(&p, f->E, c->N, 1, f->o, f->El, f->H, f->I);
  const int b = f->b;
  const int64_t H = f->H, El = f->El, fI = (t_gated(f->activation) ? 2 : 1) * f->I;
  const int masked = c->layout == MOE_LAYOUT_MASKED;
  const int64_t dm[3] = {El, c->capacity, H}, dc[2] = {c->N, H};
  ttensor *hid =
      tt_from_host(b, f->e4m3_in ? DT_E4M3 : DT_BF16, masked ? 3 : 2, masked ? dm : dc, c->hidden);
  const int per_tensor = f->mode == MOE_SCALING_PER_TENSOR;
  ttensor *hs = f->e4m3_in && f->mode == MOE_SCALING_BLOCK
                    ? tt_from_host(b, DT_F32, 2, (int64_t[]){c->N, H / 128}, c->hscale)
                    : NULL;
  ttensor *s1 = per_tensor ? tt_from_host(b, DT_F32, 1, (int64_t[]){1}, &f->s12[0]) : NULL;
  ttensor *s2 = per_tensor ? tt_from_host(b, DT_F32, 1, (int64_t[]){1}, &f->s12[1]) : NULL;
  ttensor *out = tt_new(b, DT_BF16, masked ? 3 : 2, masked ? dm : dc);
  tmem_poison(b, out->t.data, out->bytes);
  ttensor *cnt = tt_from_host(b, DT_I32, 1, (int64_t[]){El}, c->counts);
  ttensor *st = tt_new(b, DT_I32, 1, (int64_t[]){1});
  tmem_poison(b, st->t.data, st->bytes);
  const t_moe_in *in = &f->in;
  ttensor *b1 = in->bias1 ? tt_from_host(b, DT_F32, 2, (int64_t[]){El, fI}, in->bias1) : NULL;
  ttensor *b2 = in->bias2 ? tt_from_host(b, DT_F32, 2, (int64_t[]){El, H}, in->bias2) : NULL;
  ttensor *al = in->alpha ? tt_from_host(b, DT_F32, 1, (int64_t[]){El}, in->alpha) : NULL;
  ttensor *be = in->beta ? tt_from_host(b, DT_F32, 1, (int64_t[]){El}, in->beta) : NULL;
  ttensor *cl =
      in->clamp_limit ? tt_from_host(b, DT_F32, 1, (int64_t[]){El}, in->clamp_limit) : NULL;
  moe_grouped_args a;
  CHECK_OK(moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION));
  a.layout = c->layout;
  a.capacity = c->capacity;
  a.hidden_states = &hid->t;
  a.expert_counts = &cnt->t;
  a.gemm1_weights = &f->w.w1->t;
  a.gemm2_weights = &f->w.w2->t;
  a.gemm1_bias = b1 ? &b1->t : NULL;
  a.gemm2_bias = b2 ? &b2->t : NULL;
  a.gemm1_alpha = al ? &al->t : NULL;
  a.gemm1_beta = be ? &be->t : NULL;
  a.gemm1_clamp_limit = cl ? &cl->t : NULL;
  a.output = &out->t;
  a.count_status = c->status ? &st->t : NULL;
  a.hidden_states_scale = hs ? &hs->t : NULL;
  a.gemm1_input_scale = s1 ? &s1->t : NULL;
  a.gemm2_input_scale = s2 ? &s2->t : NULL;
  int32_t cfg = c->cfg;
  moe_status_t s = MOE_STATUS_SUCCESS;
  if (cfg < 0) s = CHECK_OK(moe_runner_get_default_config(f->r, &p, &cfg));
  size_t bytes = 0;
  if (!s) s = CHECK_OK(moe_runner_get_grouped_workspace_size(f->r, &p, cfg, &bytes));
  void *ws = tmem_alloc(b, bytes);
  if (!s) s = moe_runner_run_grouped(f->r, &p, &a, cfg, ws, bytes, NULL);
  tmem_download(b, out_host, out->t.data, out->bytes);
  if (c->status) tmem_download(b, c->status, st->t.data, sizeof(int32_t));
  if (c->ws_copy) {
    *c->ws_copy = t_xmalloc(bytes + 1);
    tmem_download(b, *c->ws_copy, ws, bytes);
  }
  tmem_free(b, ws);
  tt_free(hid), tt_free(out), tt_free(cnt), tt_free(st), tt_free(b1), tt_free(b2), tt_free(al),
      tt_free(be), tt_free(cl), tt_free(hs), tt_free(s1), tt_free(s2);
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

/* Host rows of both layouts from the fixture's grouping: row g of the grouping gets row
 * slot[g] / K of @p src ([T, row_bytes]); the other rows are 0xff bytes (NaN in bf16, e4m3
 * and fp32: never read). MASKED when cap >= 0 (N = E_l * cap), else CONTIGUOUS. */
static void *grouped_rows(const fx *f, int64_t cap, int64_t N, const void *src, size_t row_bytes) {
  uint8_t *h = t_xmalloc(row_bytes * (size_t)N + 1);
  memset(h, 0xff, row_bytes * (size_t)N);
  int64_t g = 0;
  for (int32_t e = 0; e < f->El; ++e)
    for (int32_t i = 0; i < f->counts[e]; ++i, ++g) {
      const int64_t at = cap >= 0 ? e * cap + i : g;
      memcpy(h + (size_t)at * row_bytes,
             (const uint8_t *)src + (size_t)(f->slot[g] / f->K) * row_bytes, row_bytes);
    }
  return h;
}

/* The hidden states (bf16, or the fixture's e4m3) and their BLOCK scales (NULL unless given
 * with e4m3 hidden) of a layout. */
static void *layout_hidden(const fx *f, int64_t cap, int64_t N) {
  return f->e4m3_in ? grouped_rows(f, cap, N, f->xq, (size_t)f->H)
                    : grouped_rows(f, cap, N, f->in.hidden, sizeof(uint16_t) * (size_t)f->H);
}

static float *layout_scales(const fx *f, int64_t cap, int64_t N) {
  if (!f->e4m3_in || f->mode != MOE_SCALING_BLOCK) return NULL;
  return grouped_rows(f, cap, N, f->xs, sizeof(float) * (size_t)(f->H / REF_FP8_BLOCK));
}

static uint16_t *contiguous_hidden(fx *f, int64_t N) {
  return layout_hidden(f, -1, N);
}

static uint16_t *masked_hidden(fx *f, int64_t cap) {
  return layout_hidden(f, cap, f->El * cap);
}

/* Both layouts' rows against moe_runner_run's, for up to @p max_cfgs valid configs, on a BF16
 * runner (mode 0) or an FP8 runner of scaling @p mode with bf16 or (e4m3_in) e4m3 hidden. */
static void test_equal_prec(int mode, int e4m3_in, int max_cfgs, uint64_t seed, int32_t E,
                            int32_t o, int32_t El, int64_t T, int32_t K, int64_t H, int64_t I) {
  fx f;
  char what[200], prec[48];
  snprintf(prec, sizeof prec, "mode %d %s hidden", mode, e4m3_in ? "e4m3" : "bf16");
  if (fx_init_prec(&f, B, MOE_ACTIVATION_SWIGLU, 0, mode, e4m3_in, seed, E, o, El, T, K, H, I)) {
    CHECK(0, "fixture T=%lld %s failed", (long long)T, prec);
    fx_free(&f);
    return;
  }
  int32_t maxc = 0;
  for (int32_t e = 0; e < El; ++e) maxc = f.counts[e] > maxc ? f.counts[e] : maxc;
  /* configs: the default and every other valid config of the grouped problem */
  moe_problem p;
  const int64_t slack = 3, Nc = f.nlocal + slack;
  t_problem(&p, E, Nc, 1, o, El, H, I);
  int32_t cfgs[64], n = 0;
  CHECK_OK(moe_runner_get_valid_configs(f.r, &p, cfgs, 64, &n));
  if (n > 64) n = 64;
  for (int32_t i = 0; i < n && i < max_cfgs; ++i) {
    void *hc = layout_hidden(&f, -1, Nc);
    float *sc = layout_scales(&f, -1, Nc);
    uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)(Nc * H + 1));
    grouped_call c = {MOE_LAYOUT_CONTIGUOUS,
                      0,
                      Nc,
                      f.counts,
                      hc,
                      cfgs[i * (n > max_cfgs ? n / max_cfgs : 1)],
                      NULL,
                      NULL,
                      sc};
    snprintf(what, sizeof what, "contiguous %s T=%lld K=%d E=%d o=%d El=%d cfg=%d", prec,
             (long long)T, K, E, o, El, c.cfg);
    if (!CHECK_OK(run_grouped(&f, &c, out))) check_rows(&f, &c, out, what);
    free(hc);
    free(sc);
    free(out);
    const int64_t cap = maxc + 2;
    void *hm = masked_hidden(&f, cap);
    float *sm = layout_scales(&f, cap, El * cap);
    out = t_xmalloc(sizeof(uint16_t) * (size_t)(El * cap * H + 1));
    grouped_call m = {MOE_LAYOUT_MASKED, cap, El * cap, f.counts, hm, c.cfg, NULL, NULL, sm};
    snprintf(what, sizeof what, "masked %s T=%lld K=%d E=%d o=%d El=%d cap=%lld cfg=%d", prec,
             (long long)T, K, E, o, El, (long long)cap, m.cfg);
    if (!CHECK_OK(run_grouped(&f, &m, out))) check_rows(&f, &m, out, what);
    free(hm);
    free(sm);
    free(out);
  }
  fx_free(&f);
}

static void test_equal_to_run(uint64_t seed, int32_t E, int32_t o, int32_t El, int64_t T, int32_t K,
                              int64_t H, int64_t I) {
  test_equal_prec(0, 0, 6, seed, E, o, El, T, K, H, I);
}

/* N = 0 exactly (empty buffers, all counts 0) in both layouts, and N = 1 (one row, no slack);
 * BF16 runner (mode 0) or FP8 (bf16 or e4m3 hidden). */
static void test_edge_n_prec(int mode, int e4m3_in, int64_t I) {
  fx f;
  if (fx_init_prec(&f, B, MOE_ACTIVATION_SWIGLU, 0, mode, e4m3_in, 21, 8, 2, 4, 1, 1, 128, I)) {
    CHECK(0, "edge fixture (mode %d) failed", mode); /* T = 1, K = 1 */
    fx_free(&f);
    return;
  }
  char what[96];
  int32_t zeros[64] = {0};
  uint16_t out1[1];
  grouped_call c0 = {MOE_LAYOUT_CONTIGUOUS, 0, 0, zeros, NULL, -1, NULL, NULL, NULL};
  CHECK_OK(run_grouped(&f, &c0, out1)); /* nothing to compare: no rows */
  grouped_call m0 = {MOE_LAYOUT_MASKED, 0, 0, zeros, NULL, -1, NULL, NULL, NULL};
  CHECK_OK(run_grouped(&f, &m0, out1));
  /* T = 1, K = 1, a seed whose token is local: N = 1, and a masked capacity 1 */
  void *hc = layout_hidden(&f, -1, f.nlocal);
  float *sc = layout_scales(&f, -1, f.nlocal);
  uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)((f.El + 1) * f.H));
  grouped_call c1 = {MOE_LAYOUT_CONTIGUOUS, 0, f.nlocal, f.counts, hc, -1, NULL, NULL, sc};
  snprintf(what, sizeof what, "contiguous N = T = 1, mode %d e4m3 %d", mode, e4m3_in);
  if (!CHECK_OK(run_grouped(&f, &c1, out))) check_rows(&f, &c1, out, what);
  void *hm = layout_hidden(&f, 1, f.El);
  float *sm = layout_scales(&f, 1, f.El);
  grouped_call m1 = {MOE_LAYOUT_MASKED, 1, f.El, f.counts, hm, -1, NULL, NULL, sm};
  snprintf(what, sizeof what, "masked capacity 1, mode %d e4m3 %d", mode, e4m3_in);
  if (!CHECK_OK(run_grouped(&f, &m1, out))) check_rows(&f, &m1, out, what);
  CHECK(f.nlocal == 1, "T = 1, K = 1: %lld local slots, expected 1", (long long)f.nlocal);
  free(hc);
  free(hm);
  free(sc);
  free(sm);
  free(out);
  fx_free(&f);
}

static void test_edge_n(void) {
  test_edge_n_prec(0, 0, 64);
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
  grouped_call c = {MOE_LAYOUT_CONTIGUOUS, 0, N, cnt, hc, -1, NULL, NULL, NULL};
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
  grouped_call m = {MOE_LAYOUT_MASKED, cap, El * cap, mc, hm, -1, NULL, NULL, NULL};
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

/* One misuse call: @p want, a message naming @p arg with "expected" and "given" (and @p also
 * when not NULL), output untouched. */
static void fp8_expect(fx *f, const moe_problem *p, const moe_grouped_args *a, int32_t cfg,
                       void *ws, size_t bytes, ttensor *out, moe_status_t want, const char *arg,
                       const char *also, const char *what) {
  tmem_poison(B, out->t.data, out->bytes);
  const moe_status_t s = moe_runner_run_grouped(f->r, p, a, cfg, ws, bytes, NULL);
  const char *msg = moe_get_last_error();
  CHECK(s == want, "%s: expected status %d, given %d (%s)", what, want, s, msg);
  CHECK(strstr(msg, arg) && strstr(msg, "expected") && strstr(msg, "given") &&
            (!also || strstr(msg, also)),
        "%s: message '%s' does not name %s (%s) with the expected and given values", what, msg, arg,
        also ? also : "");
  const uint16_t *o = (const uint16_t *)out->t.data;
  int64_t touched = 0;
  for (int64_t k = 0; k < tt_numel(out); ++k) touched += o[k] != POISON;
  CHECK(touched == 0, "%s: %lld output elements written on failure", what, (long long)touched);
}

/* FP8 misuse on each runner precision: missing scales, wrong scale shapes and dtypes, scales
 * that the mode or runner does not take, e4m3 hidden without scales, an old args version. */
static void test_fp8_misuse(void) {
  const int modes[3] = {MOE_SCALING_BLOCK, MOE_SCALING_PER_TENSOR, 0};
  for (int mi = 0; mi < 3; ++mi) {
    const int mode = modes[mi];
    fx f;
    if (fx_init_prec(&f, B, MOE_ACTIVATION_SWIGLU, 0, mode, 0, 61, 8, 2, 4, 12, 2, 128, 128)) {
      CHECK(0, "FP8 misuse fixture (mode %d) failed", mode);
      fx_free(&f);
      continue;
    }
    const int64_t H = f.H, El = f.El, N = f.nlocal + 2, cap = 5;
    moe_problem p, pm;
    t_problem(&p, f.E, N, 1, f.o, El, H, f.I);
    t_problem(&pm, f.E, El * cap, 1, f.o, El, H, f.I);
    int32_t cfg = 0;
    size_t bytes = 0, bm = 0;
    CHECK_OK(moe_runner_get_default_config(f.r, &p, &cfg));
    CHECK_OK(moe_runner_get_grouped_workspace_size(f.r, &p, cfg, &bytes));
    CHECK_OK(moe_runner_get_grouped_workspace_size(f.r, &pm, cfg, &bm));
    if (bm > bytes) bytes = bm;
    void *ws = tmem_alloc(B, bytes);
    float one = 1.0f, two[2] = {1.0f, 1.0f};
    ttensor *hid = tt_new(B, DT_BF16, 2, (int64_t[]){N, H});
    ttensor *hq = tt_new(B, DT_E4M3, 2, (int64_t[]){N, H});
    ttensor *hqm = tt_new(B, DT_E4M3, 3, (int64_t[]){El, cap, H});
    ttensor *hs = tt_new(B, DT_F32, 2, (int64_t[]){N, H / 128});
    ttensor *hs_rows = tt_new(B, DT_F32, 2, (int64_t[]){N - 1, H / 128});
    ttensor *hs_bf16 = tt_new(B, DT_BF16, 2, (int64_t[]){N, H / 128});
    ttensor *hs_m = tt_new(B, DT_F32, 2, (int64_t[]){El * cap, H / 128});
    ttensor *hs_m3 = tt_new(B, DT_F32, 3, (int64_t[]){El, cap, H / 128});
    ttensor *s1 = tt_from_host(B, DT_F32, 1, (int64_t[]){1}, &one);
    ttensor *s2 = tt_from_host(B, DT_F32, 1, (int64_t[]){1}, &one);
    ttensor *s_two = tt_from_host(B, DT_F32, 1, (int64_t[]){2}, two);
    ttensor *out = tt_new(B, DT_BF16, 2, (int64_t[]){N, H});
    ttensor *outm = tt_new(B, DT_BF16, 3, (int64_t[]){El, cap, H});
    ttensor *cn = tt_from_host(B, DT_I32, 1, (int64_t[]){El}, f.counts);
    int32_t zeros[64] = {0};
    ttensor *cz = tt_from_host(B, DT_I32, 1, (int64_t[]){El}, zeros);
    memset(hid->t.data, 0, hid->bytes);
    memset(hq->t.data, 0, hq->bytes);
    memset(hqm->t.data, 0, hqm->bytes);
    for (int64_t k = 0; k < tt_numel(hs); ++k) ((float *)hs->t.data)[k] = 1.0f;
    for (int64_t k = 0; k < tt_numel(hs_m); ++k) ((float *)hs_m->t.data)[k] = 1.0f;
    char what[96];
    moe_grouped_args a, base;
    /* the valid call of the mode: bf16 hidden (+ s1, s2 in PER_TENSOR) */
    valid_args(&base, hid, cn, &f.w, out);
    if (mode == MOE_SCALING_PER_TENSOR) base.gemm1_input_scale = &s1->t;
    if (mode == MOE_SCALING_PER_TENSOR) base.gemm2_input_scale = &s2->t;
    CHECK_OK(moe_runner_run_grouped(f.r, &p, &base, cfg, ws, bytes, NULL));
#define FP8_CASE(arg, also, setup)                                                             \
  do {                                                                                         \
    a = base;                                                                                  \
    setup;                                                                                     \
    snprintf(what, sizeof what, "mode %d: %s", mode, #setup);                                  \
    fp8_expect(&f, &p, &a, cfg, ws, bytes, out, MOE_STATUS_INVALID_ARGUMENT, arg, also, what); \
  } while (0)
    if (mode == MOE_SCALING_BLOCK) {
      char shape[48];
      snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)N, (long long)(H / 128));
      FP8_CASE("args->hidden_states_scale", shape, a.hidden_states = &hq->t);
      FP8_CASE("args->hidden_states_scale", NULL,
               (a.hidden_states = &hq->t, a.hidden_states_scale = &hs_rows->t));
      FP8_CASE("args->hidden_states_scale", NULL,
               (a.hidden_states = &hq->t, a.hidden_states_scale = &hs_bf16->t));
      FP8_CASE("args->hidden_states_scale", "quantized by the library",
               a.hidden_states_scale = &hs->t);
      FP8_CASE("args->gemm1_input_scale", "BLOCK", a.gemm1_input_scale = &s1->t);
      FP8_CASE("args->gemm2_input_scale", "BLOCK", a.gemm2_input_scale = &s2->t);
      /* versions 1 and 2 have no scales: e4m3 hidden cannot be read */
      FP8_CASE("args->hidden_states_scale", "use version 3",
               (a.version = 2, a.hidden_states = &hq->t, a.hidden_states_scale = &hs->t));
      /* MASKED: scales [E_l * capacity, H/128], not [E_l, capacity, H/128] */
      a = base;
      a.layout = MOE_LAYOUT_MASKED;
      a.capacity = cap;
      a.hidden_states = &hqm->t;
      a.expert_counts = &cz->t;
      a.output = &outm->t;
      a.hidden_states_scale = &hs_m3->t;
      fp8_expect(&f, &pm, &a, cfg, ws, bytes, outm, MOE_STATUS_INVALID_ARGUMENT,
                 "args->hidden_states_scale", "2 dimensions", "masked 3-D scales");
      a.hidden_states_scale = &hs_m->t;
      CHECK_OK(moe_runner_run_grouped(f.r, &pm, &a, cfg, ws, bytes, NULL));
      /* the valid e4m3 call */
      a = base;
      a.hidden_states = &hq->t;
      a.hidden_states_scale = &hs->t;
      CHECK_OK(moe_runner_run_grouped(f.r, &p, &a, cfg, ws, bytes, NULL));
    } else if (mode == MOE_SCALING_PER_TENSOR) {
      FP8_CASE("args->gemm1_input_scale", "given NULL", a.gemm1_input_scale = NULL);
      FP8_CASE("args->gemm2_input_scale", "given NULL", a.gemm2_input_scale = NULL);
      FP8_CASE("args->gemm2_input_scale", "given NULL",
               (a.hidden_states = &hq->t, a.gemm2_input_scale = NULL));
      FP8_CASE("args->gemm1_input_scale", "[1]", a.gemm1_input_scale = &s_two->t);
      FP8_CASE("args->gemm2_input_scale", "float32", a.gemm2_input_scale = &hs_bf16->t);
      FP8_CASE("args->hidden_states_scale", "static", a.hidden_states_scale = &hs->t);
      FP8_CASE("args->gemm1_input_scale", "use version 3", a.version = 1);
      a = base;
      a.hidden_states = &hq->t;
      CHECK_OK(moe_runner_run_grouped(f.r, &p, &a, cfg, ws, bytes, NULL));
    } else {
      FP8_CASE("args->hidden_states_scale", "BF16 runner", a.hidden_states_scale = &hs->t);
      FP8_CASE("args->gemm1_input_scale", "BF16 runner", a.gemm1_input_scale = &s1->t);
      FP8_CASE("args->gemm2_input_scale", "BF16 runner", a.gemm2_input_scale = &s2->t);
      FP8_CASE("args->hidden_states", "bfloat16", a.hidden_states = &hq->t);
      /* older args versions keep working on a BF16 runner */
      for (uint32_t v = 1; v <= 2; ++v) {
        a = base;
        a.version = v;
        CHECK_OK(moe_runner_run_grouped(f.r, &p, &a, cfg, ws, bytes, NULL));
      }
    }
#undef FP8_CASE
    tt_free(hid), tt_free(hq), tt_free(hqm), tt_free(hs), tt_free(hs_rows), tt_free(hs_bf16),
        tt_free(hs_m), tt_free(hs_m3), tt_free(s1), tt_free(s2), tt_free(s_two), tt_free(out),
        tt_free(outm), tt_free(cn), tt_free(cz);
    tmem_free(B, ws);
    fx_free(&f);
  }
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

/* MXFP4 runners: NOT_SUPPORTED with a message, nothing read. */
static void test_not_supported(void) {
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = B;
  o.weight_dtype = MOE_DTYPE_MXFP4;
  o.scaling_mode = MOE_SCALING_MX;
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
    CHECK(s == MOE_STATUS_NOT_SUPPORTED, "MXFP4 runner: expected NOT_SUPPORTED, given %d", s);
    CHECK(strstr(moe_get_last_error(), "MXFP4") != NULL, "MXFP4 runner message: '%s'",
          moe_get_last_error());
    moe_runner_destroy(r);
  }
}

/* A CUDA runner sized without a device (sm_version 90), where the build has CUDA: the host
 * checks of the CUDA path run before the device is needed. The tensors carry kDLCUDA metadata
 * and aligned addresses that are never dereferenced. */
static void test_cuda_fp8(moe_runner *r, int mode, const moe_problem *p, int32_t cfg, size_t bytes,
                          const DLTensor *w1, const DLTensor *w2, const DLTensor *cnt);

/* The same runner and tensors for an FP8 runner of scaling @p mode (0: the BF16 runner). */
static void test_cuda_host_checks(int mode) {
  if (t_have_cuda()) return; /* the GPU suite runs the CUDA path for real */
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = MOE_BACKEND_CUDA;
  o.sm_version = 90;
  if (mode) {
    o.activation_dtype = o.weight_dtype = MOE_DTYPE_FP8_E4M3;
    o.scaling_mode = mode;
  }
  moe_runner *r = NULL;
  if (moe_runner_create(&o, &r) != MOE_STATUS_SUCCESS) {
    printf("test_grouped: no CUDA runner in this build; CUDA host checks skipped\n");
    return;
  }
  const int64_t H = 128, I = 128, El = 8, N = 16;
  moe_problem p;
  t_problem(&p, 8, N, 1, 0, (int32_t)El, H, I);
  int32_t cfg = 0;
  size_t bytes = 0, b1 = 0, b2 = 0;
  CHECK_OK(moe_runner_get_default_config(r, &p, &cfg));
  CHECK_OK(moe_runner_get_grouped_workspace_size(r, &p, cfg, &bytes));
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM1, &b1));
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &b2));
  int64_t sh[2] = {N, H}, sc[1] = {El}, s1[1] = {(int64_t)b1}, s2[1] = {(int64_t)b2};
  void *fake = (void *)(uintptr_t)0x100000; /* 256-byte aligned, never read */
  const DLDevice dev = {kDLCUDA, 0}, host = {kDLCPU, 0};
  DLTensor hid = {fake, dev, 2, DT_BF16, sh, NULL, 0}, out = hid;
  DLTensor cnt = {fake, dev, 1, DT_I32, sc, NULL, 0}, cnt_host = cnt;
  cnt_host.device = host;
  DLTensor w1 = {fake, dev, 1, DT_U8, s1, NULL, 0}, w2 = {fake, dev, 1, DT_U8, s2, NULL, 0};
  if (mode) {
    test_cuda_fp8(r, mode, &p, cfg, bytes, &w1, &w2, &cnt);
    moe_runner_destroy(r);
    return;
  }
  moe_grouped_args a;
  moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION);
  a.hidden_states = &hid;
  a.expert_counts = &cnt_host;
  a.gemm1_weights = &w1;
  a.gemm2_weights = &w2;
  a.output = &out;
  moe_status_t s = moe_runner_run_grouped(r, &p, &a, cfg, fake, bytes, NULL);
  CHECK(s == MOE_STATUS_INVALID_ARGUMENT,
        "CUDA runner, host counts: expected INVALID_ARGUMENT, "
        "given %d (%s)",
        s, moe_get_last_error());
  CHECK(strstr(moe_get_last_error(), "args->expert_counts") != NULL,
        "CUDA runner, host counts: message '%s'", moe_get_last_error());
  a.expert_counts = &cnt;
  s = moe_runner_run_grouped(r, &p, &a, cfg, fake, bytes, NULL);
  CHECK(s == MOE_STATUS_NO_DEVICE,
        "CUDA runner without a device: expected NO_DEVICE, given %d (%s)", s, moe_get_last_error());
  /* E_l past the device plan builder's limit */
  moe_problem big;
  t_problem(&big, 4096, 4096, 1, 0, 4096, H, I);
  if (!CHECK_OK(moe_runner_get_default_config(r, &big, &cfg)) &&
      !CHECK_OK(moe_runner_get_grouped_workspace_size(r, &big, cfg, &bytes))) {
    s = moe_runner_run_grouped(r, &big, &a, cfg, fake, bytes, NULL);
    CHECK(s == MOE_STATUS_NOT_SUPPORTED, "E_l = 4096 on CUDA: expected NOT_SUPPORTED, given %d", s);
    CHECK(strstr(moe_get_last_error(), "problem->local_num_experts") != NULL &&
              strstr(moe_get_last_error(), "2048") != NULL && strstr(moe_get_last_error(), "4096"),
          "E_l = 4096 on CUDA: message '%s'", moe_get_last_error());
  }
  moe_runner_destroy(r);
}

/* FP8 runners on CUDA without a device: the host checks run before the device is needed (the
 * addresses are fake, never read): valid FP8 arguments of the mode (e4m3 hidden with its
 * scales) -> NO_DEVICE; a missing scale -> INVALID_ARGUMENT naming it. */
static void test_cuda_fp8(moe_runner *r, int mode, const moe_problem *p, int32_t cfg, size_t bytes,
                          const DLTensor *w1, const DLTensor *w2, const DLTensor *cnt) {
  const int64_t N = p->num_tokens, H = p->hidden_size;
  int64_t sh[2] = {N, H}, one[1] = {1}, hs[2] = {N, H / 128};
  const DLDevice dev = cnt->device;
  DLTensor hid = {cnt->data, dev, 2, DT_E4M3, sh, NULL, 0};
  DLTensor out = {cnt->data, dev, 2, DT_BF16, sh, NULL, 0};
  DLTensor sc1 = {cnt->data, dev, 1, DT_F32, one, NULL, 0}, sc2 = sc1;
  DLTensor hsc = {cnt->data, dev, 2, DT_F32, hs, NULL, 0};
  moe_grouped_args a;
  moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION);
  a.hidden_states = &hid;
  a.expert_counts = cnt;
  a.gemm1_weights = w1;
  a.gemm2_weights = w2;
  a.output = &out;
  if (mode == MOE_SCALING_BLOCK) {
    a.hidden_states_scale = &hsc;
  } else {
    a.gemm1_input_scale = &sc1;
    a.gemm2_input_scale = &sc2;
  }
  moe_status_t s = moe_runner_run_grouped(r, p, &a, cfg, cnt->data, bytes, NULL);
  CHECK(s == MOE_STATUS_NO_DEVICE, "CUDA FP8 runner (mode %d): expected NO_DEVICE, given %d (%s)",
        mode, s, moe_get_last_error());
  const char *arg;
  if (mode == MOE_SCALING_BLOCK) {
    a.hidden_states_scale = NULL;
    arg = "args->hidden_states_scale";
  } else {
    a.gemm1_input_scale = NULL;
    arg = "args->gemm1_input_scale";
  }
  s = moe_runner_run_grouped(r, p, &a, cfg, cnt->data, bytes, NULL);
  const char *m = moe_get_last_error();
  CHECK(s == MOE_STATUS_INVALID_ARGUMENT && strstr(m, arg) && strstr(m, "expected") &&
            strstr(m, "given"),
        "CUDA FP8 runner (mode %d) without %s: status %d, message '%s'", mode, arg, s, m);
}

/* moe_runner_options.sm_budget: validated at creation; version 2 still accepted; no effect on
 * the CPU backend's rows. */
static void test_sm_budget_option(void) {
  const int32_t bad[] = {-1, -65536, 65536, 1 << 30};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    moe_runner_options o;
    moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
    o.backend = B;
    o.sm_budget = bad[i];
    moe_runner *r = (moe_runner *)(uintptr_t)1;
    moe_status_t s = moe_runner_create(&o, &r);
    char given[32];
    snprintf(given, sizeof given, "given %d", bad[i]);
    CHECK(s == MOE_STATUS_INVALID_ARGUMENT, "sm_budget %d: expected INVALID_ARGUMENT, given %d",
          bad[i], s);
    CHECK(r == NULL, "sm_budget %d: runner not NULL on failure", bad[i]);
    const char *m = moe_get_last_error();
    CHECK(strstr(m, "opts->sm_budget") && strstr(m, "expected") && strstr(m, "65535") &&
              strstr(m, given),
          "sm_budget %d: message '%s' must name opts->sm_budget, the expected range and the "
          "given value",
          bad[i], m);
  }
  /* version 2 (no sm_budget field read) and valid budgets */
  moe_runner_options o2;
  CHECK_OK(moe_runner_options_init(&o2, 2));
  o2.backend = B;
  moe_runner *r = NULL;
  if (!CHECK_OK(moe_runner_create(&o2, &r))) moe_runner_destroy(r);
  const int32_t good[] = {0, 1, 8, 132, 65535};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; ++i) {
    moe_runner_options o;
    moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
    CHECK(o.sm_budget == 0, "default sm_budget %d, expected 0", o.sm_budget);
    o.backend = B;
    o.sm_budget = good[i];
    r = NULL;
    if (!CHECK_OK(moe_runner_create(&o, &r))) moe_runner_destroy(r);
  }
  /* a CPU runner with a budget: the same rows */
  fx f;
  if (fx_init(&f, 31, 8, 2, 4, 20, 2, 128, 64)) {
    CHECK(0, "sm_budget fixture failed");
    fx_free(&f);
    return;
  }
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = B;
  o.sm_budget = 2;
  moe_runner *rb = NULL;
  if (!CHECK_OK(moe_runner_create(&o, &rb))) {
    moe_runner *keep = f.r;
    f.r = rb;
    const int64_t N = f.nlocal + 1;
    uint16_t *hc = contiguous_hidden(&f, N);
    uint16_t *out = t_xmalloc(sizeof(uint16_t) * (size_t)(N * f.H + 1));
    grouped_call c = {MOE_LAYOUT_CONTIGUOUS, 0, N, f.counts, hc, -1, NULL, NULL, NULL};
    if (!CHECK_OK(run_grouped(&f, &c, out))) check_rows(&f, &c, out, "CPU, sm_budget 2");
    free(hc);
    free(out);
    f.r = keep;
    moe_runner_destroy(rb);
  }
  fx_free(&f);
}

#ifdef MOE_TEST_WITH_CUDA
static const int k_acts[] = {MOE_ACTIVATION_SWIGLU, MOE_ACTIVATION_GEGLU, MOE_ACTIVATION_RELU2,
                             MOE_ACTIVATION_IDENTITY};
#define BOUND_GPU 1e-2     /* test_moe's GPU-vs-CPU bound for bf16 outputs */
#define FP8_GPU_BOUND 1e-2 /* test_fp8's GPU-vs-CPU bound for FP8 runners */

static double g_worst_err; /* the largest GPU-vs-CPU error of compare_gpu_cpu so far */

/* GPU grouped rows against the CPU backend's (same grouping): relative L2 and finiteness over
 * the rows the counts cover. */
static void compare_gpu_cpu(const fx *g, const grouped_call *c, const uint16_t *out_gpu,
                            const uint16_t *out_cpu, const char *what) {
  const int64_t H = g->H;
  int64_t rows = 0;
  for (int32_t e = 0; e < g->El; ++e) rows += c->counts[e];
  if (rows == 0) return;
  uint16_t *a = t_xmalloc(sizeof(uint16_t) * (size_t)(rows * H));
  uint16_t *b = t_xmalloc(sizeof(uint16_t) * (size_t)(rows * H));
  int64_t n = 0;
  for (int32_t e = 0; e < g->El; ++e) {
    const int64_t first = c->layout == MOE_LAYOUT_MASKED ? e * c->capacity : n;
    memcpy(a + n * H, out_gpu + first * H, sizeof(uint16_t) * (size_t)(c->counts[e] * H));
    memcpy(b + n * H, out_cpu + first * H, sizeof(uint16_t) * (size_t)(c->counts[e] * H));
    n += c->counts[e];
  }
  CHECK(t_count_nonfinite(a, n * H) == 0, "%s: %lld GPU elements not finite", what,
        (long long)t_count_nonfinite(a, n * H));
  const double err = t_rel_err_bf16(a, b, n * H), bound = g->mode ? FP8_GPU_BOUND : BOUND_GPU;
  CHECK(err <= bound, "%s: ||gpu - cpu|| / ||cpu|| = %.3g (bound %.0e)", what, err, bound);
  if (err > g_worst_err) g_worst_err = err;
  free(a);
  free(b);
}

/*
 * The grouped plans in a GPU and a CPU workspace after the same call (counts: the valid or
 * clamped counts the plan follows), read with core/grouped.c's layout: permuted_to_token
 * [max_rows], cta_to_batch and cta_to_mn_limit [max_ctas], then num_ctas and permuted_size, each
 * region 256-byte aligned, max_rows = tile * max_cgas(N, 1, E_l, tile), max_ctas = C * max_cgas.
 * Bit for bit (DESIGN §6: plan tables bit-exact), with the sizes the counts imply.
 */
static void compare_plans(const fx *g, const grouped_call *c, const int32_t *counts,
                          const uint8_t *wg, const uint8_t *wc, const char *what) {
  moe_config_info info;
  memset(&info, 0, sizeof info);
  info.version = MOE_CONFIG_INFO_VERSION;
  if (CHECK_OK(moe_runner_describe_config(g->r, c->cfg, &info))) return;
  const int64_t tile = info.tile, C = info.cluster_size;
  const int64_t cg = t_max_cgas(c->N, 1, g->El, tile);
#define AL256(x) (((x) + 255) / 256 * 256)
  const int64_t ob = AL256(4 * cg * tile), om = ob + AL256(4 * cg * C), os = om + AL256(4 * cg * C);
#undef AL256
  int64_t cgas = 0;
  for (int32_t e = 0; e < g->El; ++e) cgas += (counts[e] + tile - 1) / tile;
  int32_t sg[2], sc[2];
  memcpy(sg, wg + os, sizeof sg);
  memcpy(sc, wc + os, sizeof sc);
  CHECK(sg[0] == C * cgas && sg[1] == tile * cgas,
        "%s: GPU plan num_ctas %d permuted_size %d, expected %lld and %lld", what, sg[0], sg[1],
        (long long)(C * cgas), (long long)(tile * cgas));
  CHECK(sc[0] == sg[0] && sc[1] == sg[1], "%s: CPU plan num_ctas %d permuted_size %d, GPU %d %d",
        what, sc[0], sc[1], sg[0], sg[1]);
  if (sg[0] != C * cgas || sg[1] != tile * cgas || sc[0] != sg[0] || sc[1] != sg[1]) return;
  CHECK(memcmp(wg, wc, 4 * (size_t)sg[1]) == 0, "%s: permuted_to_token differs from the CPU's",
        what);
  CHECK(memcmp(wg + ob, wc + ob, 4 * (size_t)sg[0]) == 0, "%s: cta_to_batch differs", what);
  CHECK(memcmp(wg + om, wc + om, 4 * (size_t)sg[0]) == 0, "%s: cta_to_mn_limit differs", what);
}

/* Is @p cfg valid for the routed problem of the fixture (its reference run)? */
static int valid_for_routed(const fx *f, int32_t cfg) {
  moe_problem p;
  t_problem(&p, f->E, f->T, f->K, f->o, f->El, f->H, f->I);
  int32_t cfgs[64], n = 0;
  if (CHECK_OK(moe_runner_get_valid_configs(f->r, &p, cfgs, 64, &n))) return 0;
  for (int32_t i = 0; i < n && i < 64; ++i)
    if (cfgs[i] == cfg) return 1;
  return 0;
}

/* One call on the GPU fixture @p g and the CPU fixture @p cpu (same data) with @p counts on the
 * GPU and @p expect (= counts, or their clamped form) on the CPU: the CPU's count status 0, the
 * GPU's @p want_status; the plans bit for bit; the rows within the bound; nothing outside the
 * rows written (g->ref bitwise too when @p bitwise); FP8 runners: a second GPU call gives the
 * same output bit for bit. c->cfg < 0: the default config. */
static void gpu_vs_cpu(fx *g, fx *cpu, grouped_call c, const int32_t *expect, int32_t want_status,
                       int bitwise, const char *what) {
  const int64_t H = g->H;
  if (c.cfg < 0) {
    moe_problem p;
    t_problem(&p, g->E, c.N, 1, g->o, g->El, H, g->I);
    if (CHECK_OK(moe_runner_get_default_config(g->r, &p, &c.cfg))) return;
  }
  uint16_t *og = t_xmalloc(sizeof(uint16_t) * (size_t)(c.N * H + 1));
  uint16_t *oc = t_xmalloc(sizeof(uint16_t) * (size_t)(c.N * H + 1));
  uint8_t *wg = NULL, *wc = NULL;
  int32_t status = -1, status_cpu = -1;
  grouped_call cc = c;
  c.status = &status;
  c.ws_copy = &wg;
  cc.counts = expect;
  cc.status = &status_cpu;
  cc.ws_copy = &wc;
  if (!CHECK_OK(run_grouped(g, &c, og)) && !CHECK_OK(run_grouped(cpu, &cc, oc))) {
    CHECK(status == want_status, "%s: count status %d, expected %d", what, status, want_status);
    CHECK(status_cpu == 0, "%s: CPU count status %d", what, status_cpu);
    compare_plans(g, &c, expect, wg, wc, what);
    compare_gpu_cpu(g, &cc, og, oc, what);
    if (g->mode) { /* run to run: the whole output, poisoned rows included */
      uint16_t *o2 = t_xmalloc(sizeof(uint16_t) * (size_t)(c.N * H + 1));
      grouped_call again = c;
      again.status = NULL;
      again.ws_copy = NULL;
      if (!CHECK_OK(run_grouped(g, &again, o2)))
        CHECK(memcmp(og, o2, sizeof(uint16_t) * (size_t)(c.N * H)) == 0,
              "%s: a second GPU call differs bitwise", what);
      free(o2);
    }
    if (bitwise) {
      check_rows(g, &c, og, what);
    } else { /* rows outside the expected rows untouched */
      int64_t touched = 0, src = 0;
      for (int32_t e = 0; e < g->El; ++e) {
        const int64_t first = c.layout == MOE_LAYOUT_MASKED ? e * c.capacity : src;
        const int64_t end = c.layout == MOE_LAYOUT_MASKED ? (e + 1) * c.capacity
                            : e + 1 == g->El              ? c.N
                                                          : first + expect[e];
        for (int64_t r = first + expect[e]; r < end; ++r)
          for (int64_t h = 0; h < H; ++h) touched += og[r * H + h] != POISON;
        src += expect[e];
      }
      CHECK(touched == 0, "%s: %lld elements written outside the rows", what, (long long)touched);
    }
  }
  free(og), free(oc), free(wg), free(wc);
}

/* Both layouts on the GPU for one config (-1: the routed default): rows bitwise against the GPU's
 * routed rows of the same config (g->ref), plans bitwise and rows within the bound against the
 * CPU's (cpu: same seed and grouping). */
static void gpu_layouts(fx *g, fx *cpu, int32_t cfg, const char *tag) {
  char what[200];
  if (cfg < 0) { /* the routed problem's default, for the reference and the grouped calls */
    moe_problem p;
    t_problem(&p, g->E, g->T, g->K, g->o, g->El, g->H, g->I);
    if (CHECK_OK(moe_runner_get_default_config(g->r, &p, &cfg))) return;
  }
  if (fx_reference(g, cfg)) return;
  int32_t maxc = 0;
  for (int32_t e = 0; e < g->El; ++e) maxc = g->counts[e] > maxc ? g->counts[e] : maxc;
  const int64_t Nc = g->nlocal + 5, cap = maxc; /* the largest count == capacity */
  for (int l = 0; l < 2; ++l) {
    const int masked = l == 1;
    const int64_t N = masked ? g->El * cap : Nc;
    uint16_t *hid = masked ? masked_hidden(g, cap) : contiguous_hidden(g, Nc);
    float *sc = layout_scales(g, masked ? cap : -1, N);
    grouped_call c = {masked ? MOE_LAYOUT_MASKED : MOE_LAYOUT_CONTIGUOUS,
                      masked ? cap : 0,
                      N,
                      g->counts,
                      hid,
                      cfg,
                      NULL,
                      NULL,
                      sc};
    snprintf(what, sizeof what, "GPU %s %s cfg %d", masked ? "masked" : "contiguous", tag, cfg);
    gpu_vs_cpu(g, cpu, c, g->counts, 0, 1, what);
    free(hid);
    free(sc);
  }
}

/* The clamping rule of the device plan builder (kernels/routing/grouped_plan.cu), on the host. */
static void clamp_counts(const int32_t *in, int32_t El, int masked, int64_t cap, int64_t N,
                         int32_t *out) {
  int64_t P = 0;
  for (int32_t e = 0; e < El; ++e) {
    const int64_t q = in[e] < 0 ? 0 : in[e];
    if (masked) {
      out[e] = (int32_t)(q < cap ? q : cap);
    } else {
      const int64_t lo = P < N ? P : N, hi = P + q < N ? P + q : N;
      out[e] = (int32_t)(hi - lo);
      P += q;
    }
  }
}

/* Rows [from, to) of layout hidden states in the fixture's dtype (bf16, or e4m3 codes of
 * seeded values; BLOCK: with their scales in @p scales, [rows, H/128]). */
static void fill_rows(const fx *f, void *hidden, float *scales, int64_t from, int64_t to,
                      uint64_t seed) {
  const int64_t H = f->H, G = H / REF_FP8_BLOCK;
  const float s = f->mode == MOE_SCALING_BLOCK ? 1.0f / 256.0f : f->s12[0];
  t_rng rng = {seed};
  for (int64_t r = from; r < to; ++r) {
    for (int64_t h = 0; h < H; ++h) {
      const float x = (float)t_rng_range(&rng, -64, 64) / 64.0f + 0.01f;
      if (f->e4m3_in)
        ((uint8_t *)hidden)[r * H + h] = ref_fp8_quantize(x, s);
      else
        ((uint16_t *)hidden)[r * H + h] = f32_to_bf16(x);
    }
    if (scales)
      for (int64_t gi = 0; gi < G; ++gi) scales[r * G + gi] = s;
  }
}

/* Invalid device counts: clamped on the device, reported in the status word; the plan equals
 * the CPU's for the clamped counts, the rows are within the bound of its rows, nothing outside
 * the clamped rows is written. */
static void gpu_bad_counts(fx *g, fx *cpu, const char *tag) {
  char what[160];
  const int64_t H = g->H, El = g->El, N = g->nlocal + 2, cap = 3;
  int32_t cnt[64], clamped[64];
  memcpy(cnt, g->counts, sizeof cnt);
  cnt[1] = -5;
  cnt[El - 1] += 1000;
  void *hc = contiguous_hidden(g, N);
  float *sc = layout_scales(g, -1, N);
  fill_rows(g, hc, sc, g->nlocal, N, 5); /* the rows the clamped counts reach */
  clamp_counts(cnt, g->El, 0, 0, N, clamped);
  const grouped_call c = {MOE_LAYOUT_CONTIGUOUS, 0, N, cnt, hc, -1, NULL, NULL, sc};
  snprintf(what, sizeof what, "%s contiguous bad counts", tag);
  gpu_vs_cpu(g, cpu, c, clamped, MOE_GROUPED_COUNTS_NEGATIVE | MOE_GROUPED_COUNTS_SUM_OVER_ROWS, 0,
             what);
  /* every row of the masked buffer (the fixture's counts exceed this capacity) */
  const size_t eb = g->e4m3_in ? 1 : sizeof(uint16_t);
  void *hm = t_xmalloc(eb * (size_t)(El * cap * H) + 1);
  float *sm = g->e4m3_in && g->mode == MOE_SCALING_BLOCK
                  ? t_xmalloc(sizeof(float) * (size_t)(El * cap * (H / REF_FP8_BLOCK)) + 1)
                  : NULL;
  fill_rows(g, hm, sm, 0, El * cap, 77);
  int32_t mc[64] = {0};
  mc[0] = -1;
  mc[1] = cap + 7;
  mc[2] = cap;
  clamp_counts(mc, g->El, 1, cap, El * cap, clamped);
  const grouped_call m = {MOE_LAYOUT_MASKED, cap, El * cap, mc, hm, -1, NULL, NULL, sm};
  snprintf(what, sizeof what, "%s masked bad counts", tag);
  gpu_vs_cpu(g, cpu, m, clamped, MOE_GROUPED_COUNTS_NEGATIVE | MOE_GROUPED_COUNTS_OVER_CAPACITY, 0,
             what);
  free(hc);
  free(hm);
  free(sc);
  free(sm);
}

/* The routed forward (finalized) of the fixture's data on runner @p r. */
static int routed_output(fx *f, moe_runner *r, int32_t cfg, uint16_t *out) {
  moe_problem p;
  t_problem(&p, f->E, f->T, f->K, f->o, f->El, f->H, f->I);
  const t_route in = fx_route(f);
  t_ws ws = {0};
  moe_plan plan;
  int bad = CHECK_OK(t_ws_alloc(r, f->b, &p, cfg, &ws)) ||
            CHECK_OK(t_prepare(r, f->b, &p, &in, cfg, &ws, &plan)) ||
            CHECK_OK(t_run(r, f->b, &p, f->activation, &f->in, &f->w, cfg, &plan, &ws, 1, out));
  t_ws_free(&ws);
  return bad;
}

/* An SM budget never changes results: grouped (contiguous) and routed outputs bitwise equal
 * with budgets of 1 and 8 SMs, for a config of each cluster size. */
static void gpu_sm_budget(fx *g) {
  const int32_t budgets[] = {1, 8};
  moe_problem p;
  const int64_t H = g->H, N = g->nlocal + 3;
  t_problem(&p, g->E, N, 1, g->o, g->El, H, g->I);
  int32_t cfgs[64], n = 0;
  CHECK_OK(moe_runner_get_valid_configs(g->r, &p, cfgs, 64, &n));
  int seen[5] = {0};
  uint16_t *hc = contiguous_hidden(g, N);
  uint16_t *o0 = t_xmalloc(sizeof(uint16_t) * (size_t)(N * H + 1));
  uint16_t *o1 = t_xmalloc(sizeof(uint16_t) * (size_t)(N * H + 1));
  uint16_t *r0 = t_xmalloc(sizeof(uint16_t) * (size_t)(g->T * H + 1));
  uint16_t *r1 = t_xmalloc(sizeof(uint16_t) * (size_t)(g->T * H + 1));
  for (int32_t i = 0; i < n && i < 64; ++i) {
    int32_t C = 0;
    CHECK_OK(moe_runner_get_cluster_size(g->r, cfgs[i], &C));
    if (C < 1 || C > 4 || seen[C] || !valid_for_routed(g, cfgs[i])) continue;
    seen[C] = 1;
    grouped_call c = {MOE_LAYOUT_CONTIGUOUS, 0, N, g->counts, hc, cfgs[i], NULL, NULL, NULL};
    if (CHECK_OK(run_grouped(g, &c, o0)) || routed_output(g, g->r, cfgs[i], r0)) continue;
    for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; ++k) {
      moe_runner_options o;
      moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
      o.backend = MOE_BACKEND_CUDA;
      o.activation = g->activation;
      o.sm_budget = budgets[k];
      moe_runner *rb = NULL;
      if (CHECK_OK(moe_runner_create(&o, &rb))) continue;
      moe_runner *keep = g->r;
      g->r = rb;
      if (!CHECK_OK(run_grouped(g, &c, o1)))
        CHECK(memcmp(o0, o1, sizeof(uint16_t) * (size_t)(N * H)) == 0,
              "grouped cfg %d: sm_budget %d changed the output", cfgs[i], budgets[k]);
      if (!routed_output(g, rb, cfgs[i], r1))
        CHECK(memcmp(r0, r1, sizeof(uint16_t) * (size_t)(g->T * H)) == 0,
              "routed cfg %d: sm_budget %d changed the output", cfgs[i], budgets[k]);
      g->r = keep;
      moe_runner_destroy(rb);
    }
  }
  free(hc), free(o0), free(o1), free(r0), free(r1);
}

/* CUDA graph: capture one masked call, change the device counts, replay: equal to a direct call
 * with the new counts (so nothing read the counts on the host at capture). */
static void gpu_graph(fx *g, const char *tag) {
  int32_t maxc = 0;
  for (int32_t e = 0; e < g->El; ++e) maxc = g->counts[e] > maxc ? g->counts[e] : maxc;
  const int64_t H = g->H, El = g->El, cap = maxc, N = El * cap;
  moe_problem p;
  t_problem(&p, g->E, N, 1, g->o, g->El, H, g->I);
  int32_t cfg = 0;
  size_t bytes = 0;
  if (CHECK_OK(moe_runner_get_default_config(g->r, &p, &cfg)) ||
      CHECK_OK(moe_runner_get_grouped_workspace_size(g->r, &p, cfg, &bytes)))
    return;
  uint16_t *hm = masked_hidden(g, cap);
  float *sm = layout_scales(g, cap, N);
  int32_t c2[64];
  memcpy(c2, g->counts, sizeof c2);
  c2[0] /= 2;
  c2[El - 1] = 0;
  uint16_t *direct = t_xmalloc(sizeof(uint16_t) * (size_t)(N * H + 1));
  uint16_t *replay = t_xmalloc(sizeof(uint16_t) * (size_t)(N * H + 1));
  grouped_call c = {MOE_LAYOUT_MASKED, cap, N, c2, hm, cfg, NULL, NULL, sm};
  CHECK_OK(run_grouped(g, &c, direct));

  const int64_t dm[3] = {El, cap, H};
  const int cu = MOE_BACKEND_CUDA, per_tensor = g->mode == MOE_SCALING_PER_TENSOR;
  ttensor *hid = tt_from_host(cu, g->e4m3_in ? DT_E4M3 : DT_BF16, 3, dm, hm);
  ttensor *hs = sm ? tt_from_host(cu, DT_F32, 2, (int64_t[]){N, H / 128}, sm) : NULL;
  ttensor *s1 = per_tensor ? tt_from_host(cu, DT_F32, 1, (int64_t[]){1}, &g->s12[0]) : NULL;
  ttensor *s2 = per_tensor ? tt_from_host(cu, DT_F32, 1, (int64_t[]){1}, &g->s12[1]) : NULL;
  ttensor *out = tt_new(cu, DT_BF16, 3, dm);
  ttensor *cnt = tt_from_host(cu, DT_I32, 1, (int64_t[]){El}, g->counts);
  const int64_t fI = (t_gated(g->activation) ? 2 : 1) * g->I;
  ttensor *b1 = tt_from_host(cu, DT_F32, 2, (int64_t[]){El, fI}, g->in.bias1);
  ttensor *b2 = tt_from_host(cu, DT_F32, 2, (int64_t[]){El, H}, g->in.bias2);
  void *ws = tmem_alloc(cu, bytes);
  moe_grouped_args a;
  moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION);
  a.layout = MOE_LAYOUT_MASKED;
  a.capacity = cap;
  a.hidden_states = &hid->t;
  a.expert_counts = &cnt->t;
  a.gemm1_weights = &g->w.w1->t;
  a.gemm2_weights = &g->w.w2->t;
  a.gemm1_bias = &b1->t;
  a.gemm2_bias = &b2->t;
  a.output = &out->t;
  a.hidden_states_scale = hs ? &hs->t : NULL;
  a.gemm1_input_scale = s1 ? &s1->t : NULL;
  a.gemm2_input_scale = s2 ? &s2->t : NULL;
  if (g->in.alpha) {
    CHECK(0, "gpu_graph: expects a fixture without SwiGLU parameters");
  }
  cudaStream_t st = NULL;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  int ok = cudaStreamCreate(&st) == cudaSuccess;
  ok = ok && cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  if (ok) {
    moe_status_t s = moe_runner_run_grouped(g->r, &p, &a, cfg, ws, bytes, (moe_cuda_stream_t)st);
    CHECK(s == MOE_STATUS_SUCCESS, "%s graph capture: status %d (%s)", tag, s,
          moe_get_last_error());
    ok = cudaStreamEndCapture(st, &graph) == cudaSuccess && s == MOE_STATUS_SUCCESS;
  }
  ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  CHECK(ok, "%s graph capture / instantiate failed: %s", tag,
        cudaGetErrorString(cudaGetLastError()));
  if (ok) {
    tmem_upload(MOE_BACKEND_CUDA, cnt->t.data, c2, sizeof(int32_t) * (size_t)El);
    tmem_poison(MOE_BACKEND_CUDA, out->t.data, out->bytes);
    CHECK(cudaGraphLaunch(exec, st) == cudaSuccess && cudaStreamSynchronize(st) == cudaSuccess,
          "%s graph replay failed", tag);
    tmem_download(MOE_BACKEND_CUDA, replay, out->t.data, out->bytes);
    CHECK(memcmp(direct, replay, sizeof(uint16_t) * (size_t)(N * H)) == 0,
          "%s graph replay with new device counts differs from a direct call", tag);
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  if (st) cudaStreamDestroy(st);
  tmem_free(MOE_BACKEND_CUDA, ws);
  tt_free(hid), tt_free(out), tt_free(cnt), tt_free(b1), tt_free(b2), tt_free(hs), tt_free(s1),
      tt_free(s2);
  free(hm), free(sm), free(direct), free(replay);
}

/* The CTA tile (tile / cluster size) of config @p cfg, or 0. */
static int32_t cta_tile_of(const moe_runner *r, int32_t cfg) {
  moe_config_info info;
  memset(&info, 0, sizeof info);
  info.version = MOE_CONFIG_INFO_VERSION;
  if (CHECK_OK(moe_runner_describe_config(r, cfg, &info)) || info.cluster_size < 1) return 0;
  return info.tile / info.cluster_size;
}

/*
 * FP8 runners on the GPU: per case, both layouts for every @p every-th valid config (of those
 * with a CTA tile >= min_cta), each against the GPU's routed rows (bitwise) and the CPU's grouped
 * rows (FP8_GPU_BOUND), twice bitwise equal (gpu_vs_cpu); per scaling mode and hidden dtype once
 * clamped counts, once a graph replay; T = 0 and 1.
 */
static long gpu_suite_fp8(int every) {
  static const struct {
    const char *tag;
    int mode, e4m3_in, act, skew;
    int32_t E, o, El;
    int64_t T;
    int32_t K;
    int64_t H, I;
    int32_t min_cta; /* configs with a CTA tile >= this (64: those with a permuted GEMM1) */
    int permuted;    /* N >= 256 E_l rows in both layouts: PER_TENSOR's permuted GEMM1 */
    int extras;      /* 1: bad counts and a graph replay on this fixture */
  } k[] = {
      /* an EP slice, local experts [4, 12) of 16, skewed (local expert 1 gets no row):
       * N < 256 E_l, so PER_TENSOR's GEMM1 gathers its rows; BLOCK always permutes */
      {"tensor bf16-in", MOE_SCALING_PER_TENSOR, 0, MOE_ACTIVATION_SWIGLU, 1, 16, 4, 8, 150, 4, 256,
       128, 0, 0, 1},
      {"tensor e4m3-in", MOE_SCALING_PER_TENSOR, 1, MOE_ACTIVATION_RELU2, 1, 16, 4, 8, 150, 4, 256,
       128, 0, 0, 1},
      {"block bf16-in", MOE_SCALING_BLOCK, 0, MOE_ACTIVATION_GEGLU, 1, 16, 4, 8, 150, 4, 256, 128,
       0, 0, 1},
      {"block e4m3-in", MOE_SCALING_BLOCK, 1, MOE_ACTIVATION_SWIGLU, 1, 16, 4, 8, 150, 4, 256, 256,
       0, 0, 1},
      /* local experts [2, 4) of 4, T = 700, K = 2: N >= 256 E_l rows in both layouts, so the
       * configs with a permuted-input GEMM1 read the permute's copy (bf16 quantized on the
       * way, or e4m3 copied) */
      {"tensor bf16-in permuted", MOE_SCALING_PER_TENSOR, 0, MOE_ACTIVATION_GEGLU, 0, 4, 2, 2, 700,
       2, 256, 128, 64, 1, 0},
      {"tensor e4m3-in permuted", MOE_SCALING_PER_TENSOR, 1, MOE_ACTIVATION_IDENTITY, 0, 4, 2, 2,
       700, 2, 128, 256, 64, 1, 0},
      {"block e4m3-in many rows", MOE_SCALING_BLOCK, 1, MOE_ACTIVATION_RELU2, 0, 4, 2, 2, 700, 2,
       128, 128, 0, 0, 0},
  };
  long cases = 0;
  for (size_t ci = 0; ci < sizeof k / sizeof k[0]; ++ci) {
    fx g, c;
    memset(&c, 0, sizeof c); /* freed even when g's fixture fails first */
    const uint64_t seed = 300 + (uint64_t)ci;
    if (fx_init_prec(&g, MOE_BACKEND_CUDA, k[ci].act, k[ci].skew, k[ci].mode, k[ci].e4m3_in, seed,
                     k[ci].E, k[ci].o, k[ci].El, k[ci].T, k[ci].K, k[ci].H, k[ci].I) ||
        fx_init_prec(&c, MOE_BACKEND_CPU, k[ci].act, k[ci].skew, k[ci].mode, k[ci].e4m3_in, seed,
                     k[ci].E, k[ci].o, k[ci].El, k[ci].T, k[ci].K, k[ci].H, k[ci].I)) {
      CHECK(0, "GPU FP8 fixture %s failed", k[ci].tag);
      fx_free(&g);
      fx_free(&c);
      continue;
    }
    if (k[ci].skew)
      CHECK(g.counts[1] == 0, "%s: skewed fixture: local expert 1 has %d rows", k[ci].tag,
            g.counts[1]);
    int32_t maxc = 0;
    for (int32_t e = 0; e < g.El; ++e) maxc = g.counts[e] > maxc ? g.counts[e] : maxc;
    if (k[ci].permuted) /* gpu_layouts: N = nlocal + 5 (contiguous), E_l * max count (masked) */
      CHECK(g.nlocal + 5 >= 256 * g.El && (int64_t)maxc >= 256,
            "%s: %lld rows, largest count %d: below 256 per local expert, the permuted GEMM1 "
            "is not reached",
            k[ci].tag, (long long)g.nlocal, maxc);
    moe_problem p;
    t_problem(&p, g.E, g.nlocal + 5, 1, g.o, g.El, g.H, g.I);
    int32_t cfgs[64], n = 0;
    CHECK_OK(moe_runner_get_valid_configs(g.r, &p, cfgs, 64, &n));
    char tag[96];
    snprintf(tag, sizeof tag, "FP8 %s act %d T %lld", k[ci].tag, k[ci].act, (long long)k[ci].T);
    /* the configs of the case, then every every-th of them (at least one) */
    int32_t use[64], nu = 0;
    for (int32_t i = 0; i < n && i < 64; ++i)
      if (valid_for_routed(&g, cfgs[i]) && cta_tile_of(g.r, cfgs[i]) >= k[ci].min_cta)
        use[nu++] = cfgs[i];
    int seen_c[5] = {0}, ran = 0;
    g_worst_err = 0;
    for (int32_t i = nu ? (int32_t)(ci % (size_t)every) % nu : 0; i < nu; i += every) {
      int32_t C = 0;
      CHECK_OK(moe_runner_get_cluster_size(g.r, use[i], &C));
      if (C >= 1 && C <= 4) seen_c[C] = 1;
      gpu_layouts(&g, &c, use[i], tag);
      ++ran;
      ++cases;
    }
    printf("GPU %s: %d configs (cluster sizes%s%s%s), worst rel L2 vs CPU %.3e (bound %.0e)\n", tag,
           ran, seen_c[1] ? " 1" : "", seen_c[2] ? " 2" : "", seen_c[4] ? " 4" : "", g_worst_err,
           FP8_GPU_BOUND);
    CHECK(ran > 0, "%s: no valid config ran", tag);
    if (every == 1 && !k[ci].min_cta)
      CHECK(seen_c[1] && seen_c[2] && seen_c[4], "%s: cluster sizes 1, 2 and 4 not all run", tag);
    if (k[ci].extras) {
      gpu_bad_counts(&g, &c, tag);
      if (k[ci].act != MOE_ACTIVATION_SWIGLU) gpu_graph(&g, tag); /* no SwiGLU parameters */
    }
    fx_free(&g);
    fx_free(&c);
  }
  /* T = 1 and T = 0 (N = 0 in both layouts), each scaling mode and hidden dtype */
  for (int m = 0; m < 4; ++m)
    for (int64_t T = 0; T <= 1; ++T) {
      const int mode = m < 2 ? MOE_SCALING_PER_TENSOR : MOE_SCALING_BLOCK, e4 = m % 2;
      const uint64_t seed = 400 + (uint64_t)(2 * m + T);
      fx g, c;
      memset(&c, 0, sizeof c);
      if (fx_init_prec(&g, MOE_BACKEND_CUDA, MOE_ACTIVATION_SWIGLU, 0, mode, e4, seed, 8, 0, 8, T,
                       1, 128, 128) ||
          fx_init_prec(&c, MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU, 0, mode, e4, seed, 8, 0, 8, T, 1,
                       128, 128)) {
        CHECK(0, "GPU FP8 T = %lld fixture (mode %d, e4m3 %d) failed", (long long)T, mode, e4);
      } else {
        char tag[64];
        snprintf(tag, sizeof tag, "FP8 mode %d e4m3 %d T %lld", mode, e4, (long long)T);
        gpu_layouts(&g, &c, -1, tag);
        int32_t zeros[64] = {0}, status = -1;
        uint16_t dummy[1];
        grouped_call z = {MOE_LAYOUT_MASKED, 0, 0, zeros, NULL, -1, &status, NULL, NULL};
        CHECK_OK(run_grouped(&g, &z, dummy));
        CHECK(status == 0, "%s: N = 0: status %d", tag, status);
        ++cases;
      }
      fx_free(&g);
      fx_free(&c);
    }
  return cases;
}

static void gpu_suite(void) {
  long cases = 0;
  /* MOE_TEST_GPU_CASES=n: every n-th valid config (scripts/gpu-check.sh's sanitizer steps) */
  const char *every_env = getenv("MOE_TEST_GPU_CASES");
  const int every = every_env && atoi(every_env) > 0 ? atoi(every_env) : 1;
  for (int ai = 0; ai < 4; ++ai) {
    const int act = k_acts[ai];
    fx g, c;
    /* an EP slice, local experts [4, 12) of 16, K = 4, skewed: local expert 1 gets no token */
    const uint64_t seed = 100 + (uint64_t)ai;
    if (fx_init_on(&g, MOE_BACKEND_CUDA, act, 1, seed, 16, 4, 8, 150, 4, 256, 128) ||
        fx_init_on(&c, MOE_BACKEND_CPU, act, 1, seed, 16, 4, 8, 150, 4, 256, 128)) {
      CHECK(0, "GPU fixture failed (activation %d)", act);
      fx_free(&g);
      fx_free(&c);
      continue;
    }
    CHECK(g.counts[1] == 0 && c.counts[1] == 0, "skewed fixture: local expert 1 has %d rows",
          g.counts[1]);
    moe_problem p;
    t_problem(&p, g.E, g.nlocal + 5, 1, g.o, g.El, g.H, g.I);
    int32_t cfgs[64], n = 0;
    CHECK_OK(moe_runner_get_valid_configs(g.r, &p, cfgs, 64, &n));
    char tag[64];
    snprintf(tag, sizeof tag, "act %d T 150", act);
    for (int32_t i = ai % every; i < n && i < 64; i += every) {
      if (!valid_for_routed(&g, cfgs[i])) continue;
      gpu_layouts(&g, &c, cfgs[i], tag);
      ++cases;
    }
    if (act == MOE_ACTIVATION_SWIGLU) {
      gpu_bad_counts(&g, &c, "BF16");
      gpu_sm_budget(&g);
    }
    if (act == MOE_ACTIVATION_RELU2) gpu_graph(&g, "BF16");
    fx_free(&g);
    fx_free(&c);
  }
  /* T = 1 and T = 0 (N = 0 in both layouts) */
  for (int64_t T = 0; T <= 1; ++T) {
    fx g, c;
    if (fx_init_on(&g, MOE_BACKEND_CUDA, MOE_ACTIVATION_SWIGLU, 0, 7 + (uint64_t)T, 8, 0, 8, T, 1,
                   128, 64) ||
        fx_init_on(&c, MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU, 0, 7 + (uint64_t)T, 8, 0, 8, T, 1,
                   128, 64)) {
      CHECK(0, "GPU T = %lld fixture failed", (long long)T);
    } else {
      char tag[32];
      snprintf(tag, sizeof tag, "T %lld", (long long)T);
      gpu_layouts(&g, &c, -1, tag);
      int32_t zeros[64] = {0}, status = -1;
      uint16_t dummy[1];
      grouped_call z = {MOE_LAYOUT_MASKED, 0, 0, zeros, NULL, -1, &status, NULL, NULL};
      CHECK_OK(run_grouped(&g, &z, dummy));
      CHECK(status == 0, "N = 0: status %d", status);
      ++cases;
    }
    fx_free(&g);
    fx_free(&c);
  }
  const long fp8_cases = gpu_suite_fp8(every);
  printf("GPU: %ld grouped cases, %ld of them FP8 (both layouts each) checked\n", cases + fp8_cases,
         fp8_cases);
}
#endif

int main(void) {
  /* an EP slice: local experts [2, 6) of 8; K = 2; H, I with SwiGLU and biases */
  test_equal_to_run(1, 8, 2, 4, 40, 2, 128, 64);
  test_equal_to_run(2, 16, 12, 4, 100, 4, 64, 128); /* last slice */
  test_equal_to_run(3, 8, 0, 8, 33, 1, 128, 64);    /* no EP: all experts local */
  test_equal_to_run(4, 8, 2, 4, 1, 2, 128, 64);     /* T = 1 */
  test_equal_to_run(5, 8, 2, 4, 0, 2, 128, 64);     /* T = 0: N = 0 */
  test_edge_n();
  /* FP8 runners: both scaling modes, bf16 and e4m3 hidden, both layouts */
  for (int m = 0; m < 2; ++m)
    for (int e4 = 0; e4 < 2; ++e4) {
      const int mode = m ? MOE_SCALING_BLOCK : MOE_SCALING_PER_TENSOR;
      test_equal_prec(mode, e4, 3, 31 + (uint64_t)(2 * m + e4), 8, 2, 4, 40, 2, 256, 128);
      test_equal_prec(mode, e4, 2, 41 + (uint64_t)(2 * m + e4), 8, 0, 8, 33, 1, 128, 256);
      test_equal_prec(mode, e4, 1, 51 + (uint64_t)(2 * m + e4), 8, 2, 4, 0, 2, 128, 128);
      test_edge_n_prec(mode, e4, 128);
    }
  test_misuse();
  test_fp8_misuse();
  test_sizing_monotone();
  test_not_supported();
  test_cuda_host_checks(0);
  test_cuda_host_checks(MOE_SCALING_PER_TENSOR);
  test_cuda_host_checks(MOE_SCALING_BLOCK);
  test_sm_budget_option();
#ifdef MOE_TEST_WITH_CUDA
  if (!t_have_cuda())
    printf("SKIP: GPU grouped suite: no CUDA device\n");
  else
    gpu_suite();
#else
  printf("SKIP: GPU grouped suite: CPU-only build\n");
#endif
  return tc_summary("test_grouped");
}
