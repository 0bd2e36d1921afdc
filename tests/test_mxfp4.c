/*
 * test_mxfp4.c - MXFP4 weights (docs/formats.md, "MXFP4") on the CPU reference backend:
 *   1. decoding (kernels/mxfp4_math.h): all 16 e2m1 codes x a set of ue8m0 scales against a
 *      table, exact; the NaN scale code.
 *   2. the gpt-oss clamped SwiGLU: the activation of the CPU backend with alpha 1.702, beta 1,
 *      limit 7 equals a direct implementation of gpt-oss's formula bit for bit (fp32) on random
 *      inputs past the limit; and end to end through the API with W1 = the identity in the
 *      checkpoint's interleaved gate/up row order.
 *   3. the prepared layout: prepare, then read the bytes back with the documented layout
 *      (sections, row order, zero pads); the interleaved checkpoint order gives the same bytes;
 *      with a GPU, its preparation gives the CPU's bytes.
 *   4. forward W4A16 and W4A8 against a float64 reference on the dequantized weights, with
 *      biases (fp32, bf16), the clamp, EP slices, T = 0 and 1, H = I = 2880 and K not a
 *      multiple of 128; W4A16 equals a BF16 runner on the dequantized weights bit for bit.
 *      With a GPU: the CUDA W4A16 kernels on the GPU cases (weights prepared on the GPU from
 *      the same checkpoint bytes), every valid config (MOE_TEST_GPU_CONFIGS picks some),
 *      against the CPU backend (relative L2 <= 1e-2) and float64, bitwise run to run.
 *   5. run-to-run and thread-count determinism.
 *   6. misuse: clear errors naming the argument, nothing written; the CUDA backend's answers
 *      (the sm90_w4a16_* catalogue and its shape rule, W4A8 and bf16 biases NOT_SUPPORTED).
 */
#define _POSIX_C_SOURCE 200809L /* setenv, strdup: test_gpu_config_selection */

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/cpu/activation.h"
#include "fp8_ref.h"
#include "kernels/mxfp4_math.h"
#include "mx_layout.h"

#define DT_E4M3 ((DLDataType){kDLFloat8_e4m3fn, 8, 1})
#define DT_E8M0 ((DLDataType){kDLFloat8_e8m0fnu, 8, 1})
#define DT_FP4X2 ((DLDataType){kDLFloat4_e2m1fn, 4, 2})
#define IA MOE_STATUS_INVALID_ARGUMENT
#define NS MOE_STATUS_NOT_SUPPORTED
#define GPT_OSS_ALPHA 1.702f
#define GPT_OSS_LIMIT 7.0f

#define EXPECT_ERR(call, st, needle)                                                              \
  do {                                                                                            \
    const moe_status_t s_ = (call);                                                               \
    CHECK(s_ == (st), "%s -> %d, expected %d (%s)", #call, (int)s_, (int)(st),                    \
          moe_get_last_error());                                                                  \
    CHECK(strstr(moe_get_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", #call, \
          moe_get_last_error(), needle);                                                          \
  } while (0)

static const double k_e2m1[8] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};

/* The value of e2m1 code c (low 4 bits) times 2^(s - 127), in double (exact). */
static double ref_mx(uint32_t c, uint32_t s) {
  const double v = k_e2m1[c & 7u] * ldexp(1.0, (int)s - 127);
  return (c & 8u) ? -v : v;
}

static moe_runner *mx_runner(int backend, int act_dtype, int activation, int32_t threads) {
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = backend;
  o.activation = activation;
  o.num_threads = threads;
  o.activation_dtype = act_dtype;
  o.weight_dtype = MOE_DTYPE_MXFP4;
  o.scaling_mode = MOE_SCALING_MX;
  if (backend == MOE_BACKEND_CUDA) o.sm_version = 90;
  moe_runner *r = NULL;
  if (CHECK_OK(moe_runner_create(&o, &r))) return NULL;
  return r;
}

static int still_poisoned(const void *p, size_t n, uint8_t poison) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < n; ++i)
    if (b[i] != poison) return 0;
  return 1;
}

/* ---- 1. decoding ------------------------------------------------------------------------- */

static void test_decode(void) {
  const uint32_t scales[] = {0, 1, 2, 100, 120, 126, 127, 128, 140, 200, 252, 253, 254};
  int n = 0;
  for (size_t i = 0; i < sizeof scales / sizeof scales[0]; ++i)
    for (uint32_t c = 0; c < 16; ++c, ++n) {
      const float got = moe_e2m1_to_f32(c) * moe_ue8m0_to_f32(scales[i]);
      const double want = ref_mx(c, scales[i]);
      const int fits = fabs(want) <= 3.4028234663852886e38;
      CHECK(fits ? (double)got == want && (signbit(got) != 0) == ((c & 8u) != 0)
                 : isinf(got) && (got < 0) == ((c & 8u) != 0),
            "decode(code %u, scale %u): expected %.9g, given %.9g", c, scales[i], want,
            (double)got);
    }
  CHECK(isnan(moe_ue8m0_to_f32(0xFF)), "ue8m0 0xFF is NaN");
  CHECK(moe_ue8m0_to_f32(0) == ldexpf(1.0f, -127) && moe_ue8m0_to_f32(254) == ldexpf(1.0f, 127),
        "ue8m0 extremes 2^-127, 2^127");
  printf("decode: %d (code, scale) pairs exact\n", n);
}

/*
 * The prepared bit order (docs/formats.md, "Bit order of a block") as the CUDA kernel reads it:
 * for every code in every place of a block, the kernel's extraction of its part (a mask, a
 * shift; parts 2 and 3 magnitude and sign apart) must give the bf16 bits of its e2m1 value
 * times 2^-126; and moe_mx_block_code and moe_mx_unpack_block must read back every code of
 * random blocks.
 */
static void test_bit_order(void) {
  static const uint32_t shift_mag[4] = {0, 3, 6, 0}, shift_sign[4] = {0, 3, 2, 1};
  int n = 0;
  for (int t = 0; t < 4; ++t)
    for (int q = 0; q < 4; ++q)
      for (int h = 0; h < 2; ++h)
        for (uint32_t c = 0; c < 16; ++c, ++n) {
          uint8_t canon[16] = {0}, prep[16];
          canon[q + 4 * t] = (uint8_t)(c << (4 * h));
          moe_mx_pack_block(canon, prep);
          const uint32_t w = moe_mx_block_word(prep, q);
          const uint32_t mag = (t == 3 ? w >> 3 : w << shift_mag[t]) & 0x01C001C0u;
          const uint32_t sign = (w << shift_sign[t]) & 0x80008000u;
          const uint32_t bits = ((mag | sign) >> (16 * h)) & 0xFFFFu;
          const double got = ldexp(bf16_to_f32((uint16_t)bits), 126);
          CHECK(got == k_e2m1[c & 7u] * (c & 8u ? -1 : 1) && (bits >> 15) == (c >> 3) &&
                    ((mag | sign) >> (16 * (1 - h)) & 0xFFFFu) == 0,
                "bit order: code %u, part %d, word %d, half %d: bf16 0x%04x reads %g", c, t, q, h,
                bits, got);
          int others = 0; /* the rest of the block is code 0 */
          for (int k = 0; k < 32; ++k)
            others += k != 2 * (q + 4 * t) + h && moe_mx_block_code(prep, k) != 0;
          CHECK(moe_mx_block_code(prep, 2 * (q + 4 * t) + h) == c && others == 0,
                "bit order: code %u, part %d, word %d, half %d does not read back alone", c, t, q,
                h);
        }
  t_rng rng = {77};
  long bad = 0;
  for (int i = 0; i < 1000; ++i) {
    uint8_t canon[16], prep[16];
    for (int b = 0; b < 16; ++b) canon[b] = (uint8_t)t_rng_next(&rng);
    moe_mx_pack_block(canon, prep);
    uint8_t codes[32];
    moe_mx_unpack_block(prep, codes);
    for (int k = 0; k < 32; ++k) {
      const uint32_t want = (uint32_t)(canon[k / 2] >> (4 * (k % 2))) & 15u;
      bad += moe_mx_block_code(prep, k) != want;
      bad += codes[k] != want;
    }
  }
  CHECK(bad == 0, "bit order: %ld codes of 1000 random blocks read back wrong", bad);
  printf("bit order: %d (code, place) pairs are bf16 x 2^-126, 1000 random blocks read back\n", n);
}

/* ---- 2. the gpt-oss SwiGLU ------------------------------------------------------------------ */

/* gpt-oss (torch reference): x_glu = clamp(x_glu, max=limit); x_linear = clamp(x_linear,
 * -limit, limit); out = x_glu * sigmoid(alpha * x_glu) * (x_linear + 1), in fp32, the sigmoid
 * being the library's portable one. */
static float gpt_oss_swiglu(float glu, float linear) {
  glu = glu > GPT_OSS_LIMIT ? GPT_OSS_LIMIT : glu;
  linear = linear > GPT_OSS_LIMIT    ? GPT_OSS_LIMIT
           : linear < -GPT_OSS_LIMIT ? -GPT_OSS_LIMIT
                                     : linear;
  const float out_glu = glu * moe_sigmoidf(GPT_OSS_ALPHA * glu);
  return out_glu * (linear + 1.0f);
}

static float rnd_sym(t_rng *r, float m) { /* uniform in [-m, m) */
  return m * ((float)(t_rng_next(r) >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
}

static void test_swiglu_formula(void) {
  t_rng rng = {0x60055ull};
  long n = 0, bad = 0;
  for (int i = 0; i < 200000; ++i, ++n) {
    const float glu = rnd_sym(&rng, i % 2 ? 12.0f : 40.0f), lin = rnd_sym(&rng, 12.0f);
    const float want = gpt_oss_swiglu(glu, lin);
    /* the library: x1 = up = linear, x2 = gate = glu; alpha, beta 1, clamp limit */
    const float got =
        moe_cpu_act_gated(MOE_ACTIVATION_SWIGLU, lin, glu, GPT_OSS_ALPHA, 1.0f, 1, GPT_OSS_LIMIT);
    uint32_t a, b;
    memcpy(&a, &want, 4);
    memcpy(&b, &got, 4);
    bad += a != b;
  }
  const float edges[][2] = {{7.0f, 7.0f},   {7.0f, -7.0f}, {-7.0f, 8.0f}, {100.0f, -100.0f},
                            {-80.0f, 3.0f}, {0.0f, -1.0f}, {-0.0f, 0.5f}, {6.9999995f, 7.0000005f}};
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; ++i, ++n) {
    const float want = gpt_oss_swiglu(edges[i][0], edges[i][1]);
    const float got = moe_cpu_act_gated(MOE_ACTIVATION_SWIGLU, edges[i][1], edges[i][0],
                                        GPT_OSS_ALPHA, 1.0f, 1, GPT_OSS_LIMIT);
    bad += memcmp(&want, &got, 4) != 0;
  }
  CHECK(bad == 0, "gpt-oss SwiGLU: %ld of %ld inputs differ from the formula", bad, n);
  printf("gpt-oss swiglu: %ld inputs (|gate| to 40, |linear| to 12) bit-identical to the formula\n",
         n);
}

/*
 * End to end: H = 2I, W1 in the checkpoint's interleaved order = the identity (row 2f reads
 * hidden column 2f as gate f, row 2f+1 column 2f+1 as linear f), W2 = [I_I; 0], K = 1 (weight
 * 1): output[t, f] = bf16(swiglu(x[t, 2f], x[t, 2f+1])) for f < I, 0 past I.
 */
static void test_swiglu_end_to_end(void) {
  const int64_t I = 64, H = 2 * I, T = 37;
  moe_runner *r = mx_runner(MOE_BACKEND_CPU, MOE_DTYPE_BF16, MOE_ACTIVATION_SWIGLU, 2);
  if (!r) return;
  moe_problem p;
  t_problem(&p, 1, T, 1, 0, 1, H, I);
  uint8_t *w1 = (uint8_t *)calloc((size_t)(2 * I * H / 2), 1);
  uint8_t *s1 = (uint8_t *)t_xmalloc((size_t)(2 * I * H / 32));
  uint8_t *w2 = (uint8_t *)calloc((size_t)(H * I / 2), 1);
  uint8_t *s2 = (uint8_t *)t_xmalloc((size_t)(H * I / 32));
  memset(s1, 127, (size_t)(2 * I * H / 32));
  memset(s2, 127, (size_t)(H * I / 32));
  for (int64_t row = 0; row < 2 * I; ++row) /* code 2 = 1.0 at column row */
    w1[row * (H / 2) + row / 2] = (uint8_t)(row % 2 ? 0x20 : 0x02);
  for (int64_t h = 0; h < I; ++h) w2[h * (I / 2) + h / 2] = (uint8_t)(h % 2 ? 0x20 : 0x02);
  uint16_t *x = (uint16_t *)t_xmalloc((size_t)(T * H) * 2);
  t_rng rng = {77};
  for (int64_t i = 0; i < T * H; ++i) x[i] = f32_to_bf16(rnd_sym(&rng, 12.0f));
  float alpha = GPT_OSS_ALPHA, beta = 1.0f, limit = GPT_OSS_LIMIT;
  size_t b1 = 0, b2 = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM1, &b1));
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &b2));
  ttensor *tw1 = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){1, 2 * I, H / 2}, w1);
  ttensor *ts1 = tt_from_host(MOE_BACKEND_CPU, DT_E8M0, 3, (int64_t[]){1, 2 * I, H / 32}, s1);
  /* W2 as float4_e2m1fn x 2 lanes (one byte an element), the other accepted dtype */
  ttensor *tw2 = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){1, H, I / 2}, w2);
  tw2->t.dtype = DT_FP4X2;
  ttensor *ts2 = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){1, H, I / 32}, s2);
  ttensor *pw1 = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)b1});
  ttensor *pw2 = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)b2});
  CHECK_OK(moe_weights_prepare_scaled(r, &p, MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED, &tw1->t,
                                      &ts1->t, &pw1->t, NULL));
  CHECK_OK(moe_weights_prepare_scaled(r, &p, MOE_WEIGHTS_GEMM2, &tw2->t, &ts2->t, &pw2->t, NULL));
  ttensor *thid = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H}, x);
  ttensor *ta = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){1}, &alpha);
  ttensor *tb = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){1}, &beta);
  ttensor *tl = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){1}, &limit);
  ttensor *tout = tt_new(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H});
  int32_t cfg = 0;
  t_ws ws = {0};
  float *logits = (float *)t_xmalloc(sizeof(float) * (size_t)T);
  for (int64_t t = 0; t < T; ++t) logits[t] = 1.0f;
  moe_plan plan;
  t_route rt;
  t_route_init(&rt);
  rt.logits_f32 = 1;
  rt.logits = logits;
  if (!CHECK_OK(moe_runner_get_default_config(r, &p, &cfg)) &&
      !CHECK_OK(t_ws_alloc(r, MOE_BACKEND_CPU, &p, cfg, &ws)) &&
      !CHECK_OK(t_prepare(r, MOE_BACKEND_CPU, &p, &rt, cfg, &ws, &plan))) {
    moe_run_args a;
    moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
    a.hidden_states = &thid->t;
    a.gemm1_weights = &pw1->t;
    a.gemm2_weights = &pw2->t;
    a.gemm1_alpha = &ta->t;
    a.gemm1_beta = &tb->t;
    a.gemm1_clamp_limit = &tl->t;
    a.output = &tout->t;
    tmem_poison(MOE_BACKEND_CPU, tout->t.data, tout->bytes);
    if (!CHECK_OK(moe_runner_run(r, &p, &a, cfg, &plan, ws.ptr, ws.bytes, NULL))) {
      const uint16_t *o = (const uint16_t *)tout->t.data;
      long bad = 0, past = 0;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          if (h >= I) {
            bad += o[t * H + h] != 0;
            continue;
          }
          const float y =
              gpt_oss_swiglu(bf16_to_f32(x[t * H + 2 * h]), bf16_to_f32(x[t * H + 2 * h + 1]));
          past += fabsf(bf16_to_f32(x[t * H + 2 * h])) > GPT_OSS_LIMIT ||
                  fabsf(bf16_to_f32(x[t * H + 2 * h + 1])) > GPT_OSS_LIMIT;
          bad += o[t * H + h] != f32_to_bf16(y);
        }
      CHECK(bad == 0, "gpt-oss SwiGLU through the API: %ld outputs differ", bad);
      CHECK(past > 0, "no input past the limit");
      printf(
          "gpt-oss swiglu end to end (interleaved W1 identity): %lld outputs bit-identical, "
          "%ld with an input past the limit\n",
          (long long)(T * I), past);
    }
  }
  free(logits);
  if (ws.ptr) t_ws_free(&ws);
  tt_free(tw1);
  tt_free(ts1);
  tt_free(tw2);
  tt_free(ts2);
  tt_free(pw1);
  tt_free(pw2);
  tt_free(thid);
  tt_free(ta);
  tt_free(tb);
  tt_free(tl);
  tt_free(tout);
  free(w1);
  free(s1);
  free(w2);
  free(s2);
  free(x);
  moe_runner_destroy(r);
}

/* ---- shared: random MXFP4 weights ---------------------------------------------------------- */

/* Canonical (library row order) weights of [El, R, C]: random codes, scales around 2^sb. */
typedef struct mxw {
  int64_t El, R, C;
  uint8_t *q; /* [El, R, C/2] */
  uint8_t *s; /* [El, R, C/32] */
} mxw;

/* wide: every fourth row's scales 2^8 larger (128..131 at gpt-oss's K), past the bf16 range
 * of the kernel's one-multiply factor 2^(s - 1), beside rows that are not */
static void mxw_gen(t_rng *rng, int64_t El, int64_t R, int64_t C, int wide, mxw *w) {
  w->El = El;
  w->R = R;
  w->C = C;
  w->q = (uint8_t *)t_xmalloc((size_t)(El * R * C / 2));
  w->s = (uint8_t *)t_xmalloc((size_t)(El * R * C / 32));
  /* sums of C products of magnitude ~2 * 2^(s-127): keep them O(1..10) */
  const int base = 127 - (int)lround(0.5 * log2((double)C)) - 1;
  for (int64_t i = 0; i < El * R * C / 2; ++i) w->q[i] = (uint8_t)t_rng_next(rng);
  for (int64_t i = 0; i < El * R * C / 32; ++i) {
    const int big = wide && (i / (C / 32)) % 4 == 1;
    w->s[i] = (uint8_t)(base + (big ? 8 : 0) + t_rng_range(rng, -2, 1));
  }
}

static void mxw_free(mxw *w) {
  free(w->q);
  free(w->s);
}

/* ref_mx of every (scale, code), so that the float64 references (run once per GPU config)
 * read a weight with one load. */
static double g_mx_value[256][16];

static void mx_value_init(void) {
  static int done;
  if (done) return;
  for (uint32_t s = 0; s < 256; ++s)
    for (uint32_t c = 0; c < 16; ++c) g_mx_value[s][c] = ref_mx(c, s);
  done = 1;
}

/* Weight [e, r, k] in double. */
static double mxw_at(const mxw *w, int64_t e, int64_t r, int64_t k) {
  const uint8_t b = w->q[(e * w->R + r) * (w->C / 2) + k / 2];
  return g_mx_value[w->s[(e * w->R + r) * (w->C / 32) + k / 32]][k % 2 ? b >> 4 : b & 15u];
}

/* The checkpoint (gpt-oss interleaved) rows of a gated W1: row 2f = gate f, 2f+1 = up f. */
static void interleave_rows(const mxw *w, uint8_t *q, uint8_t *s) {
  const int64_t I = w->R / 2, vb = w->C / 2, sb = w->C / 32;
  for (int64_t e = 0; e < w->El; ++e)
    for (int64_t f = 0; f < I; ++f)
      for (int half = 0; half < 2; ++half) {
        const int64_t src = e * w->R + half * I + f, dst = e * w->R + 2 * f + (half == 0);
        memcpy(q + dst * vb, w->q + src * vb, (size_t)vb);
        memcpy(s + dst * sb, w->s + src * sb, (size_t)sb);
      }
}

/* Prepare @p w (interleaved: from the checkpoint order) into a new prepared tensor on
 * @p backend (the runner's). */
static ttensor *prepare_on(int backend, moe_runner *r, const moe_problem *p, int32_t which,
                           const mxw *w, int interleaved) {
  size_t bytes = 0;
  if (CHECK_OK(moe_weights_prepared_size(r, p, which, &bytes))) return NULL;
  ttensor *out = tt_new(backend, DT_U8, 1, (int64_t[]){(int64_t)bytes});
  tmem_poison(backend, out->t.data, bytes); /* the pads must come out zero */
  const uint8_t *q = w->q, *s = w->s;
  uint8_t *iq = NULL, *is = NULL;
  if (interleaved) {
    iq = (uint8_t *)t_xmalloc((size_t)(w->El * w->R * w->C / 2));
    is = (uint8_t *)t_xmalloc((size_t)(w->El * w->R * w->C / 32));
    interleave_rows(w, iq, is);
    q = iq;
    s = is;
    which = MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED;
  }
  ttensor *tq = tt_from_host(backend, DT_U8, 3, (int64_t[]){w->El, w->R, w->C / 2}, q);
  ttensor *ts = tt_from_host(backend, DT_U8, 3, (int64_t[]){w->El, w->R, w->C / 32}, s);
  CHECK_OK(moe_weights_prepare_scaled(r, p, which, &tq->t, &ts->t, &out->t, NULL));
  tmem_sync(backend);
  tt_free(tq);
  tt_free(ts);
  free(iq);
  free(is);
  return out;
}

static ttensor *prepare_mx(moe_runner *r, const moe_problem *p, int32_t which, const mxw *w,
                           int interleaved) {
  return prepare_on(MOE_BACKEND_CPU, r, p, which, w, interleaved);
}

/* ---- 3. prepared layout ------------------------------------------------------------------ */

static int64_t align128(int64_t x) {
  return (x + 127) / 128 * 128;
}

/* Canonical row of prepared row p (docs/formats.md): gated W1 8-row blocks of up and gate. */
static int64_t canonical_row(int gated_w1, int64_t I, int64_t p) {
  if (!gated_w1) return p;
  return ((p / 8) % 2 ? I : 0) + 8 * (p / 16) + p % 8;
}

/* Read the prepared bytes back with the documented layout. Returns mismatches. */
static long check_layout(const uint8_t *prep, size_t bytes, const mxw *w, int gated_w1) {
  const int64_t R = w->R, C = w->C, vb = C / 2, sb = C / 32;
  const int64_t soff = align128(R * vb), stride = soff + align128(R * sb);
  long bad = (int64_t)bytes != w->El * stride;
  for (int64_t e = 0; e < w->El && !bad; ++e) {
    const uint8_t *x = prep + e * stride;
    for (int64_t p = 0; p < R; ++p) {
      const int64_t c = canonical_row(gated_w1, R / 2, p);
      bad += mx_row_mismatches(x + p * vb, w->q + (e * R + c) * vb, C) != 0;
      bad += memcmp(x + soff + p * sb, w->s + (e * R + c) * sb, (size_t)sb) != 0;
    }
    for (int64_t i = R * vb; i < soff; ++i) bad += x[i] != 0;
    for (int64_t i = soff + R * sb; i < stride; ++i) bad += x[i] != 0;
  }
  return bad;
}

/* The GPU preparation (kernels/weights_prepare_mxfp4.cu) writes the bytes @p cpu of the CPU
 * backend for the same weights; 0 if equal, -1 without a GPU. */
static int gpu_differs(int act, const moe_problem *p, int32_t which, const mxw *w, int interleaved,
                       const ttensor *cpu) {
  if (!t_have_cuda() || !cpu) return -1;
  moe_runner *rg = mx_runner(MOE_BACKEND_CUDA, MOE_DTYPE_BF16, act, 0);
  ttensor *gp = rg ? prepare_on(MOE_BACKEND_CUDA, rg, p, which, w, interleaved) : NULL;
  int diff = 1;
  if (gp && gp->bytes == cpu->bytes) {
    uint8_t *back = (uint8_t *)t_xmalloc(cpu->bytes + 1);
    tmem_download(MOE_BACKEND_CUDA, back, gp->t.data, gp->bytes);
    diff = memcmp(back, cpu->t.data, cpu->bytes) != 0;
    free(back);
  }
  tt_free(gp);
  moe_runner_destroy(rg);
  return diff;
}

static void test_layout(void) {
  /* I = 32, H = 96: W1 [64, 96] (scales 192 bytes: a pad of 64), W2 [96, 32] (a pad of 32) */
  const int64_t El = 3, H = 96, I = 32;
  const int acts[2] = {MOE_ACTIVATION_SWIGLU, MOE_ACTIVATION_RELU2};
  int gpu_cases = 0;
  for (int ai = 0; ai < 2; ++ai) {
    moe_runner *r = mx_runner(MOE_BACKEND_CPU, MOE_DTYPE_BF16, acts[ai], 1);
    if (!r) return;
    const int gated = acts[ai] == MOE_ACTIVATION_SWIGLU;
    moe_problem p;
    t_problem(&p, 5, 4, 2, 1, (int32_t)El, H, I);
    t_rng rng = {31 + (uint64_t)ai};
    mxw w1, w2;
    mxw_gen(&rng, El, gated ? 2 * I : I, H, 0, &w1);
    mxw_gen(&rng, El, H, I, 0, &w2);
    ttensor *p1 = prepare_mx(r, &p, MOE_WEIGHTS_GEMM1, &w1, 0);
    ttensor *p2 = prepare_mx(r, &p, MOE_WEIGHTS_GEMM2, &w2, 0);
    if (p1 && p2) {
      CHECK(check_layout((const uint8_t *)p1->t.data, p1->bytes, &w1, gated) == 0,
            "W1 prepared layout (act %d)", acts[ai]);
      CHECK(check_layout((const uint8_t *)p2->t.data, p2->bytes, &w2, 0) == 0,
            "W2 prepared layout (act %d)", acts[ai]);
    }
    const int g1 = gpu_differs(acts[ai], &p, MOE_WEIGHTS_GEMM1, &w1, 0, p1);
    const int g2 = gpu_differs(acts[ai], &p, MOE_WEIGHTS_GEMM2, &w2, 0, p2);
    CHECK(g1 <= 0 && g2 <= 0, "GPU MXFP4 prepare differs from the CPU (act %d)", acts[ai]);
    gpu_cases += (g1 == 0) + (g2 == 0);
    if (gated) {
      ttensor *pi = prepare_mx(r, &p, MOE_WEIGHTS_GEMM1, &w1, 1);
      CHECK(pi && p1 && pi->bytes == p1->bytes && memcmp(pi->t.data, p1->t.data, p1->bytes) == 0,
            "the interleaved checkpoint W1 prepares to the same bytes");
      const int gi = gpu_differs(acts[ai], &p, MOE_WEIGHTS_GEMM1, &w1, 1, p1);
      CHECK(gi <= 0, "GPU MXFP4 prepare of the interleaved W1 differs from the CPU");
      gpu_cases += gi == 0;
      tt_free(pi);
    } else {
      size_t b = 0;
      EXPECT_ERR(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED, &b), NS,
                 "gated");
    }
    tt_free(p1);
    tt_free(p2);
    mxw_free(&w1);
    mxw_free(&w2);
    moe_runner_destroy(r);
  }
  printf(
      "prepared layout: sections, row order, zero pads and the interleaved source checked; "
      "GPU preparation: %s\n",
      t_have_cuda() ? (gpu_cases == 5 ? "5 cases bit-identical to the CPU" : "FAILED")
                    : "skipped (no CUDA device, or a CPU-only build)");
}

/* ---- 4. forward against float64 ------------------------------------------------------------ */

typedef struct mcase {
  const char *name;
  int w4a8;       /* FP8 e4m3 activations (static scales) */
  int hidden_fp8; /* W4A8: hidden states given as e4m3 */
  int act;
  int bias;        /* 0 none, 1 fp32, 2 bf16 */
  int gpt_oss;     /* alpha 1.702, beta 1, clamp 7 */
  int interleaved; /* W1 prepared from the checkpoint's interleaved rows */
  int32_t E, El, off, K;
  int64_t T, H, I;
  int32_t tile, cluster;
  int finalize;
  int wide; /* scales past 128 on every fourth weight row (mxw_gen) */
} mcase;

typedef struct msetup {
  mcase c;
  int backend; /* MOE_BACKEND_CPU or MOE_BACKEND_CUDA: where the tensors and the run are */
  moe_runner *r;
  moe_problem p;
  int32_t cfg;
  t_ws ws;
  moe_plan plan;
  host_plan hp;
  int ok;
  int64_t R1;
  mxw w1, w2;
  uint16_t *x;
  float *logits;
  float *b1, *b2; /* fp32 values (the bf16 ones when bias = 2) */
  float alpha, beta, limit;
  float in1, in2;
  uint8_t *xq;
  ttensor *pw1, *pw2, *thid, *tin1, *tin2, *tb1, *tb2, *ta, *tb, *tl, *tout;
  moe_run_args args;
  uint16_t *out; /* host copy of the output after run_args */
} msetup;

static int gated_act(int act) {
  return act == MOE_ACTIVATION_SWIGLU || act == MOE_ACTIVATION_GEGLU;
}

static double ref_act(const msetup *f, double up, double gate) {
  switch (f->c.act) {
    case MOE_ACTIVATION_SWIGLU:
      if (f->c.gpt_oss) {
        up = up < -f->limit ? -f->limit : up > f->limit ? f->limit : up;
        gate = gate > f->limit ? f->limit : gate;
        return gate / (1.0 + exp(-(double)f->alpha * gate)) * (up + f->beta);
      }
      return gate / (1.0 + exp(-gate)) * up;
    case MOE_ACTIVATION_GEGLU:
      return up * 0.5 * gate * (1.0 + erf(gate / sqrt(2.0)));
    case MOE_ACTIVATION_RELU2:
      return up > 0 ? up * up : 0.0;
    default:
      return up;
  }
}

/* GEMM1 + bias + activation of the GEMM1 input xd on local expert e, in double. */
static void ref_gemm1(const msetup *f, const double *xd, int64_t e, double *y) {
  const int64_t H = f->c.H, I = f->c.I, R1 = f->R1;
  const int gated = gated_act(f->c.act);
  for (int64_t i = 0; i < I; ++i) {
    double up = 0, gate = 0;
    for (int64_t h = 0; h < H; ++h) up += xd[h] * mxw_at(&f->w1, e, i, h);
    if (f->b1) up += f->b1[e * R1 + i];
    if (gated) {
      for (int64_t h = 0; h < H; ++h) gate += xd[h] * mxw_at(&f->w1, e, I + i, h);
      if (f->b1) gate += f->b1[e * R1 + I + i];
    }
    y[i] = ref_act(f, up, gate);
  }
}

static void ref_hidden(const msetup *f, int64_t t, double *xd) {
  for (int64_t h = 0; h < f->c.H; ++h) {
    const float v = bf16_to_f32(f->x[t * f->c.H + h]);
    xd[h] = f->c.w4a8 ? ref_e4m3_value(ref_fp8_quantize(v, f->in1)) * f->in1 : (double)v;
  }
}

static void setup_free(msetup *f) {
  ttensor *ts[] = {f->pw1, f->pw2, f->thid, f->tin1, f->tin2, f->tb1,
                   f->tb2, f->ta,  f->tb,   f->tl,   f->tout};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; ++i) tt_free(ts[i]);
  mxw_free(&f->w1);
  mxw_free(&f->w2);
  free(f->x);
  free(f->logits);
  free(f->b1);
  free(f->b2);
  free(f->xq);
  free(f->out);
  if (f->ws.ptr) t_ws_free(&f->ws);
  if (f->ok) t_free_plan(&f->hp);
  moe_runner_destroy(f->r);
  memset(f, 0, sizeof *f);
}

/* A config index that setup_case uses instead of the case's (tile, cluster), or -1: the GPU
 * suite runs every valid config of the CUDA catalogue on each case. */
static int32_t g_force_cfg = -1;

/* Everything one forward needs on @p backend: the runner, the checkpoint bytes prepared on that
 * backend (the same bytes for the same seed), routing through the public API, the run args. */
static int setup_case(const mcase *c, int backend, int32_t threads, uint64_t seed, msetup *f) {
  memset(f, 0, sizeof *f);
  f->c = *c;
  f->backend = backend;
  const int64_t T = c->T, H = c->H, I = c->I, El = c->El, E = c->E;
  f->R1 = gated_act(c->act) ? 2 * I : I;
  const int64_t R1 = f->R1;
  f->r = mx_runner(backend, c->w4a8 ? MOE_DTYPE_FP8_E4M3 : MOE_DTYPE_BF16, c->act, threads);
  if (!f->r) return 0;
  t_problem(&f->p, c->E, T, c->K, c->off, c->El, H, I);
  t_rng rng = {seed};
  f->x = (uint16_t *)t_xmalloc((size_t)(T * H) * 2 + 2);
  for (int64_t i = 0; i < T * H; ++i) f->x[i] = f32_to_bf16(rnd_sym(&rng, 1.0f));
  mxw_gen(&rng, El, R1, H, c->wide, &f->w1);
  mxw_gen(&rng, El, H, I, c->wide, &f->w2);
  f->alpha = GPT_OSS_ALPHA;
  f->beta = 1.0f;
  f->limit = GPT_OSS_LIMIT;
  if (c->bias) {
    f->b1 = (float *)t_xmalloc(sizeof(float) * (size_t)(El * R1));
    f->b2 = (float *)t_xmalloc(sizeof(float) * (size_t)(El * H));
    for (int64_t i = 0; i < El * R1; ++i) f->b1[i] = rnd_sym(&rng, 0.5f);
    for (int64_t i = 0; i < El * H; ++i) f->b2[i] = rnd_sym(&rng, 0.2f);
    if (c->bias == 2) { /* bf16 biases: the reference uses their bf16 values */
      uint16_t *h1 = (uint16_t *)t_xmalloc(2 * (size_t)(El * R1));
      uint16_t *h2 = (uint16_t *)t_xmalloc(2 * (size_t)(El * H));
      for (int64_t i = 0; i < El * R1; ++i) f->b1[i] = bf16_to_f32(h1[i] = f32_to_bf16(f->b1[i]));
      for (int64_t i = 0; i < El * H; ++i) f->b2[i] = bf16_to_f32(h2[i] = f32_to_bf16(f->b2[i]));
      f->tb1 = tt_from_host(backend, DT_BF16, 2, (int64_t[]){El, R1}, h1);
      f->tb2 = tt_from_host(backend, DT_BF16, 2, (int64_t[]){El, H}, h2);
      free(h1);
      free(h2);
    } else {
      f->tb1 = tt_from_host(backend, DT_F32, 2, (int64_t[]){El, R1}, f->b1);
      f->tb2 = tt_from_host(backend, DT_F32, 2, (int64_t[]){El, H}, f->b2);
    }
  }
  f->pw1 = prepare_on(backend, f->r, &f->p, MOE_WEIGHTS_GEMM1, &f->w1, c->interleaved);
  f->pw2 = prepare_on(backend, f->r, &f->p, MOE_WEIGHTS_GEMM2, &f->w2, 0);
  if (!f->pw1 || !f->pw2) return 0;
  f->cfg = g_force_cfg >= 0 ? g_force_cfg : t_find_config(f->r, &f->p, c->tile, c->cluster);
  CHECK(f->cfg >= 0, "%s: no config with tile %d, cluster %d", c->name, c->tile, c->cluster);
  if (f->cfg < 0 || CHECK_OK(t_ws_alloc(f->r, backend, &f->p, f->cfg, &f->ws))) return 0;
  f->logits = (float *)t_xmalloc(sizeof(float) * (size_t)(T * E) + 4);
  for (int64_t i = 0; i < T * E; ++i) f->logits[i] = rnd_sym(&rng, 3.0f);
  t_route rt;
  t_route_init(&rt);
  rt.logits_f32 = 1;
  rt.logits = f->logits;
  if (CHECK_OK(t_prepare(f->r, backend, &f->p, &rt, f->cfg, &f->ws, &f->plan)) ||
      t_read_plan(f->r, &f->plan, &f->ws, c->E, &f->hp))
    return 0;
  f->ok = 1;
  if (c->w4a8) { /* static scales at 0.9 of the amax: the largest values saturate */
    float amax = 0;
    for (int64_t i = 0; i < T * H; ++i) amax = fmaxf(amax, fabsf(bf16_to_f32(f->x[i])));
    f->in1 = amax > 0 ? 0.9f * amax / 448.0f : 1.0f;
    double *xd = (double *)t_xmalloc(sizeof(double) * (size_t)H);
    double *y = (double *)t_xmalloc(sizeof(double) * (size_t)I);
    double yamax = 0;
    for (int64_t t = 0; t < T; ++t) {
      ref_hidden(f, t, xd);
      for (int64_t k = 0; k < c->K; ++k) {
        const int64_t e = f->hp.topk_ids[t * c->K + k] - c->off;
        if (e < 0 || e >= El) continue;
        ref_gemm1(f, xd, e, y);
        for (int64_t i = 0; i < I; ++i) yamax = fmax(yamax, fabs(y[i]));
      }
    }
    f->in2 = yamax > 0 ? (float)(0.9 * yamax / 448.0) : 1.0f;
    free(xd);
    free(y);
    f->tin1 = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &f->in1);
    f->tin2 = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &f->in2);
  }
  if (c->hidden_fp8) {
    f->xq = (uint8_t *)t_xmalloc((size_t)(T * H) + 1);
    for (int64_t i = 0; i < T * H; ++i) f->xq[i] = ref_fp8_quantize(bf16_to_f32(f->x[i]), f->in1);
    f->thid = tt_from_host(backend, DT_E4M3, 2, (int64_t[]){T, H}, f->xq);
  } else {
    f->thid = tt_from_host(backend, DT_BF16, 2, (int64_t[]){T, H}, f->x);
  }
  moe_run_args *a = &f->args;
  moe_run_args_init(a, MOE_RUN_ARGS_VERSION);
  a->do_finalize = c->finalize;
  a->hidden_states = &f->thid->t;
  a->gemm1_weights = &f->pw1->t;
  a->gemm2_weights = &f->pw2->t;
  a->gemm1_bias = f->tb1 ? &f->tb1->t : NULL;
  a->gemm2_bias = f->tb2 ? &f->tb2->t : NULL;
  if (f->tin1) {
    a->gemm1_input_scale = &f->tin1->t;
    a->gemm2_input_scale = &f->tin2->t;
  }
  if (c->gpt_oss) {
    float *v = (float *)t_xmalloc(sizeof(float) * (size_t)El + 4);
    for (int i = 0; i < 3; ++i) {
      const float x = i == 0 ? f->alpha : i == 1 ? f->beta : f->limit;
      for (int64_t e = 0; e < El; ++e) v[e] = x;
      ttensor *t = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, v);
      if (i == 0) f->ta = t, a->gemm1_alpha = &t->t;
      if (i == 1) f->tb = t, a->gemm1_beta = &t->t;
      if (i == 2) f->tl = t, a->gemm1_clamp_limit = &t->t;
    }
    free(v);
  }
  const int64_t out_rows = c->finalize ? T : f->plan.max_padded_rows;
  f->tout = tt_new(backend, DT_BF16, 2, (int64_t[]){out_rows, H});
  f->out = (uint16_t *)t_xmalloc(f->tout->bytes + 2);
  if (c->finalize)
    a->output = &f->tout->t;
  else
    a->permuted_output = &f->tout->t;
  return 1;
}

/* Run with @p a on a poisoned output (0xFF bytes: bf16 NaN) and copy the output to f->out. */
static moe_status_t run_args(msetup *f, const moe_run_args *a) {
  tmem_poison(f->backend, f->tout->t.data, f->tout->bytes);
  moe_status_t s = moe_runner_run(f->r, &f->p, a, f->cfg, &f->plan, f->ws.ptr, f->ws.bytes, NULL);
  tmem_sync(f->backend);
  tmem_download(f->backend, f->out, f->tout->t.data, f->tout->bytes);
  return s;
}

/* Relative L2 of the output against the float64 reference with the library's rounding and
 * quantization points (GEMM1 output: bf16 for W4A16, e4m3 with s2 for W4A8; GEMM2 and finalize
 * bf16). Counts elements off by one bf16 ulp and by more (or not finite). */
static double compare_with_reference(const msetup *f, long *ulp1, long *worse) {
  const mcase *c = &f->c;
  const int64_t T = c->T, H = c->H, I = c->I, K = c->K;
  double *xd = (double *)t_xmalloc(sizeof(double) * (size_t)H);
  double *y = (double *)t_xmalloc(sizeof(double) * (size_t)I);
  double *acc = (double *)t_xmalloc(sizeof(double) * (size_t)H);
  double num = 0, den = 0;
  *ulp1 = *worse = 0;
  for (int64_t t = 0; t < T; ++t) {
    ref_hidden(f, t, xd);
    for (int64_t h = 0; h < H; ++h) acc[h] = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = f->hp.topk_ids[t * K + k] - c->off;
      if (e < 0 || e >= c->El) continue;
      ref_gemm1(f, xd, e, y);
      for (int64_t i = 0; i < I; ++i) /* the GEMM1 output point */
        y[i] = c->w4a8 ? ref_e4m3_value(ref_fp8_quantize((float)y[i], f->in2)) * f->in2
                       : bf16_to_f32(f32_to_bf16((float)y[i]));
      const double w = bf16_to_f32(f->hp.weights[t * K + k]);
      const int64_t row = f->hp.e2p[t * K + k];
      for (int64_t h = 0; h < H; ++h) {
        double v = 0;
        for (int64_t i = 0; i < I; ++i) v += y[i] * mxw_at(&f->w2, e, h, i);
        if (f->b2) v += f->b2[e * H + h];
        const uint16_t y2 = f32_to_bf16((float)v);
        acc[h] += w * bf16_to_f32(y2);
        if (!c->finalize) {
          const uint16_t got = f->out[row * H + h];
          const double d = (double)bf16_to_f32(got) - bf16_to_f32(y2);
          num += d * d;
          den += (double)bf16_to_f32(y2) * bf16_to_f32(y2);
          const int u = bf16_ulp_diff(got, y2);
          *ulp1 += u == 1;
          *worse += u > 1 || !bf16_isfinite(got);
        }
      }
    }
    if (c->finalize)
      for (int64_t h = 0; h < H; ++h) {
        const uint16_t want = f32_to_bf16((float)acc[h]), got = f->out[t * H + h];
        const double d = (double)bf16_to_f32(got) - bf16_to_f32(want);
        num += d * d;
        den += (double)bf16_to_f32(want) * bf16_to_f32(want);
        const int u = bf16_ulp_diff(got, want);
        *ulp1 += u == 1;
        *worse += u > 1 || !bf16_isfinite(got);
      }
  }
  free(xd);
  free(y);
  free(acc);
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

/*
 * W4A16 equals a BF16 runner on the dequantized weights bit for bit (every dequantized weight
 * is a bf16 value, every product exact, the same sums in the same order). Returns 0 if equal.
 */
static int compare_with_bf16_runner(const msetup *f) {
  const mcase *c = &f->c;
  const int64_t El = c->El, R1 = f->R1, H = c->H, I = c->I;
  moe_runner *rb = t_runner(MOE_BACKEND_CPU, c->act);
  if (!rb) return 1;
  uint16_t *w1 = (uint16_t *)t_xmalloc(2 * (size_t)(El * R1 * H));
  uint16_t *w2 = (uint16_t *)t_xmalloc(2 * (size_t)(El * H * I));
  for (int64_t e = 0; e < El; ++e) {
    for (int64_t r = 0; r < R1; ++r)
      for (int64_t h = 0; h < H; ++h)
        w1[(e * R1 + r) * H + h] = f32_to_bf16((float)mxw_at(&f->w1, e, r, h));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < I; ++i)
        w2[(e * H + h) * I + i] = f32_to_bf16((float)mxw_at(&f->w2, e, h, i));
  }
  float *al = NULL, *be = NULL, *li = NULL;
  if (c->gpt_oss) {
    al = (float *)t_xmalloc(sizeof(float) * (size_t)El);
    be = (float *)t_xmalloc(sizeof(float) * (size_t)El);
    li = (float *)t_xmalloc(sizeof(float) * (size_t)El);
    for (int64_t e = 0; e < El; ++e) al[e] = f->alpha, be[e] = f->beta, li[e] = f->limit;
  }
  t_moe_in in = {f->x, w1, w2, f->b1, f->b2, al, be, li};
  t_weights tw = {0};
  t_ws ws = {0};
  moe_plan plan;
  t_route rt;
  t_route_init(&rt);
  rt.logits_f32 = 1;
  rt.logits = f->logits;
  uint16_t *out = (uint16_t *)t_xmalloc(f->tout->bytes + 2);
  int diff = 1;
  /* the BF16 catalogue's config of the same tile and cluster (the catalogues differ: the same
   * plan, and so the same rows, needs the same pair) */
  moe_config_info info;
  memset(&info, 0, sizeof info);
  info.version = MOE_CONFIG_INFO_VERSION;
  const int32_t bcfg = CHECK_OK(moe_runner_describe_config(f->r, f->cfg, &info))
                           ? -1
                           : t_find_config(rb, &f->p, info.tile, info.cluster_size);
  CHECK(bcfg >= 0, "%s: the BF16 catalogue has no config of tile %d, cluster %d", c->name,
        info.tile, info.cluster_size);
  if (bcfg >= 0 && !CHECK_OK(t_weights_prepare(rb, MOE_BACKEND_CPU, &f->p, c->act, &in, &tw)) &&
      !CHECK_OK(t_ws_alloc(rb, MOE_BACKEND_CPU, &f->p, bcfg, &ws)) &&
      !CHECK_OK(t_prepare(rb, MOE_BACKEND_CPU, &f->p, &rt, bcfg, &ws, &plan)) &&
      !CHECK_OK(t_run(rb, MOE_BACKEND_CPU, &f->p, c->act, &in, &tw, bcfg, &plan, &ws, c->finalize,
                      out))) {
    const int64_t rows = c->finalize ? c->T : f->plan.max_padded_rows;
    diff = 0;
    for (int64_t r = 0; r < rows; ++r) {
      if (!c->finalize && (r >= f->hp.permuted_size || f->hp.p2t[r] < 0)) continue;
      diff |= memcmp(out + r * H, f->out + r * H, (size_t)H * 2) != 0;
    }
  }
  if (ws.ptr) t_ws_free(&ws);
  t_weights_free(&tw);
  free(out);
  free(w1);
  free(w2);
  free(al);
  free(be);
  free(li);
  moe_runner_destroy(rb);
  return diff;
}

/* See test_fp8.c: the reference takes every rounding point with the same rule, so only fp32
 * vs double accumulation and the rare rounding-boundary straddles remain (~1e-5 or less);
 * a systematic error (a wrong nibble order, scale, row or interleave) is 1e-2 to 1. */
#define MX_REF_BOUND 0x1p-10

#define SW MOE_ACTIVATION_SWIGLU
static const mcase k_cases[] = {
    /* name                  w4a8 hfp8 act bias gpt il  E  El off K  T   H     I  tile C fin wide */
    {"w4a16 gpt-oss 2880", 0, 0, SW, 1, 1, 1, 4, 4, 0, 2, 3, 2880, 2880, 8, 1, 1, 0},
    {"w4a8 gpt-oss 2880 EP", 1, 0, SW, 2, 1, 1, 6, 2, 2, 3, 4, 2880, 2880, 8, 1, 1, 0},
    {"w4a16 bf16-bias T=1", 0, 0, SW, 2, 1, 0, 8, 8, 0, 4, 1, 96, 160, 8, 1, 1, 0},
    {"w4a16 EP permuted K%128", 0, 0, SW, 1, 1, 1, 16, 5, 3, 4, 33, 224, 96, 64, 2, 0, 0},
    {"w4a8 e4m3-in K%128", 1, 1, SW, 1, 1, 0, 8, 8, 0, 2, 29, 160, 224, 16, 1, 1, 0},
    {"w4a8 T=1 EP", 1, 0, SW, 0, 1, 1, 8, 4, 4, 3, 1, 96, 64, 8, 1, 1, 0},
    {"w4a16 swiglu plain", 0, 0, SW, 0, 0, 0, 4, 4, 0, 2, 20, 64, 96, 8, 1, 1, 0},
    {"w4a16 relu2 permuted", 0, 0, MOE_ACTIVATION_RELU2, 1, 0, 0, 6, 3, 3, 2, 17, 96, 64, 16, 1, 0,
     0},
    {"w4a8 relu2", 1, 0, MOE_ACTIVATION_RELU2, 2, 0, 0, 4, 4, 0, 2, 12, 64, 96, 8, 1, 1, 0},
    {"w4a16 T=0", 0, 0, SW, 1, 1, 0, 4, 4, 0, 2, 0, 96, 64, 8, 1, 1, 0},
    {"w4a8 T=0 EP", 1, 0, SW, 0, 1, 0, 8, 4, 4, 2, 0, 64, 96, 8, 1, 1, 0},
};
#define NUM_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

/*
 * The GPU cases (W4A16, fp32 or no biases): the CUDA shape rule (H % 64 == 0, I % 64 == 0,
 * both <= 8192) with K = H or I not a multiple of 128 (192, 320, 2880); every activation, the
 * gpt-oss clamp with both orders of W1, EP slices with a local offset, T = 0 and 1, permuted
 * outputs, enough rows per expert (T = 600) for several CTA tiles of every tile size, and
 * ue8m0 scales past 128 (the kernel's two-multiply expansion) in rows beside others. The
 * CPU backend runs them too (test_forward), so CPU-only CI checks their reference side. The
 * tile and cluster are the CPU forward's (pairs of both the BF16 and the W4A16 catalogue: 8 / 1,
 * 128 / 1, 256 / 4); the GPU runs every valid config.
 */
#define GE MOE_ACTIVATION_GEGLU
#define R2 MOE_ACTIVATION_RELU2
#define ID MOE_ACTIVATION_IDENTITY
static const mcase k_gpu_cases[] = {
    /* name              w4a8 hfp8 act bias gpt il  E  El off K  T    H     I  tile C fin wide */
    {"gpu gpt-oss 2880 EP", 0, 0, SW, 1, 1, 1, 8, 4, 4, 4, 3, 2880, 2880, 8, 1, 1, 0},
    {"gpu gpt-oss H192 I320", 0, 0, SW, 1, 1, 1, 16, 16, 0, 4, 33, 192, 320, 8, 1, 1, 0},
    {"gpu gpt-oss EP permuted", 0, 0, SW, 1, 1, 0, 16, 5, 3, 4, 41, 320, 192, 128, 1, 0, 0},
    {"gpu swiglu plain T=1", 0, 0, SW, 0, 0, 0, 8, 8, 0, 2, 1, 128, 192, 8, 1, 1, 0},
    {"gpu geglu fp32-bias", 0, 0, GE, 1, 0, 0, 6, 6, 0, 2, 24, 192, 128, 8, 1, 1, 0},
    {"gpu relu2 EP permuted", 0, 0, R2, 1, 0, 0, 6, 3, 3, 2, 20, 256, 192, 128, 1, 0, 0},
    {"gpu identity EP", 0, 0, ID, 1, 0, 0, 8, 4, 2, 2, 16, 128, 320, 8, 1, 1, 0},
    {"gpu relu2 T=1 EP", 0, 0, R2, 0, 0, 0, 8, 4, 4, 4, 1, 64, 128, 8, 1, 1, 0},
    {"gpu gpt-oss T=0", 0, 0, SW, 1, 1, 1, 4, 4, 0, 2, 0, 128, 128, 8, 1, 1, 0},
    {"gpu gpt-oss T=600", 0, 0, SW, 1, 1, 1, 4, 4, 0, 2, 600, 256, 192, 256, 4, 1, 0},
    {"gpu wide scales", 0, 0, ID, 1, 0, 0, 8, 8, 0, 2, 40, 960, 320, 8, 1, 1, 1},
};
#define NUM_GPU_CASES ((int)(sizeof k_gpu_cases / sizeof k_gpu_cases[0]))

/* The output rows the plan defines (all T rows, or the permuted rows of slots). */
static t_out_rows out_rows(const msetup *f) {
  return (t_out_rows){f->c.finalize ? f->c.T : f->plan.max_padded_rows, f->c.H,
                      f->c.finalize ? NULL : f->hp.p2t, f->hp.permuted_size};
}

static uint64_t output_digest(const msetup *f) {
  const t_out_rows d = out_rows(f);
  return t_output_digest(f->out, &d);
}

/* Case i of the CPU cases, then of the GPU cases; its seed (the GPU forward uses the same). */
static const mcase *forward_case(int i, uint64_t *seed) {
  *seed = i < NUM_CASES ? 500 + (uint64_t)i : 700 + (uint64_t)(i - NUM_CASES);
  return i < NUM_CASES ? &k_cases[i] : &k_gpu_cases[i - NUM_CASES];
}

static void test_forward(void) {
  for (int i = 0; i < NUM_CASES + NUM_GPU_CASES; ++i) {
    msetup f;
    uint64_t seed;
    const mcase *c = forward_case(i, &seed);
    if (setup_case(c, MOE_BACKEND_CPU, 2, seed, &f) && !CHECK_OK(run_args(&f, &f.args))) {
      long ulp1 = 0, worse = 0, local = 0;
      const double rel = compare_with_reference(&f, &ulp1, &worse);
      for (int64_t x = 0; x < f.hp.tk; ++x) local += f.hp.e2p[x] >= 0;
      const int same = c->w4a8 ? -1 : compare_with_bf16_runner(&f) == 0;
      printf(
          "forward %-24s T=%-3lld H=%-4lld I=%-4lld local slots %-3ld rel L2 vs float64 %.3e "
          "(bound %.1e); bf16 off by 1 ulp: %ld, more: %ld;%s digest %016llx\n",
          c->name, (long long)c->T, (long long)c->H, (long long)c->I, local, rel, MX_REF_BOUND,
          ulp1, worse,
          same < 0 ? ""
          : same   ? " = BF16 runner bitwise;"
                   : " != BF16 runner;",
          (unsigned long long)output_digest(&f));
      CHECK(c->T == 0 || local > 0, "%s: no local slot, the case tests nothing", c->name);
      CHECK(rel <= MX_REF_BOUND, "%s: relative L2 %.3e > %.1e", c->name, rel, MX_REF_BOUND);
      CHECK(same != 0, "%s: W4A16 differs from a BF16 runner on the dequantized weights", c->name);
    }
    setup_free(&f);
  }
}

/* ---- 4b. the CUDA backend against the CPU backend ----------------------------------------- */

/* Relative L2 of a against b over the output rows the plan defines; counts non-finite a. */
static double rel_defined(const msetup *f, const uint16_t *a, const uint16_t *b, long *nonfinite) {
  const t_out_rows d = out_rows(f);
  return t_rel_err_defined(a, b, &d, nonfinite);
}

/*
 * The CUDA W4A16 kernels on the GPU cases (same seeds, so the same inputs, checkpoint bytes and
 * routing as the CPU forward): the weights prepared on the GPU from the checkpoint bytes, every
 * valid config of the CUDA catalogue, each against the CPU backend with the same plan tile:
 * relative L2 <= 1e-2 (the GPU sums in another order: DESIGN §8), against the float64 reference
 * <= 1e-2, every defined output element written and finite, two GPU runs bitwise equal. A
 * NOT_SUPPORTED answer is a failure: W4A16 runs on CUDA.
 */
#define MX_GPU_BOUND 1e-2
static double g_worst_cpu, g_worst_ref; /* the current case's largest errors over its configs */

static moe_status_t forward_gpu_case(const mcase *kc, int32_t cfg, uint64_t seed) {
  msetup g, c;
  moe_status_t s = MOE_STATUS_INTERNAL;
  g_force_cfg = cfg;
  const int ok_g = setup_case(kc, MOE_BACKEND_CUDA, 0, seed, &g);
  g_force_cfg = -1;
  mcase kcpu = *kc;
  moe_config_info info;
  memset(&info, 0, sizeof info);
  info.version = MOE_CONFIG_INFO_VERSION;
  if (ok_g) { /* the CPU builds the same plan: the GPU config's tile and cluster */
    CHECK_OK(moe_runner_describe_config(g.r, g.cfg, &info));
    kcpu.tile = info.tile;
    kcpu.cluster = info.cluster_size;
  }
  memset(&c, 0, sizeof c);
  if (ok_g && setup_case(&kcpu, MOE_BACKEND_CPU, 2, seed, &c)) {
    s = run_args(&g, &g.args);
    CHECK(s == MOE_STATUS_SUCCESS, "%s config %s on the GPU -> %d: %s", kc->name, info.name, (int)s,
          moe_get_last_error());
    if (s == MOE_STATUS_SUCCESS && !CHECK_OK(run_args(&c, &c.args))) {
      long nonfinite = 0, ulp1 = 0, worse = 0;
      const double vs_cpu = rel_defined(&g, g.out, c.out, &nonfinite);
      const double vs_ref = compare_with_reference(&g, &ulp1, &worse);
      const uint64_t first = output_digest(&g);
      if (vs_cpu > g_worst_cpu) g_worst_cpu = vs_cpu;
      if (vs_ref > g_worst_ref) g_worst_ref = vs_ref;
      CHECK(vs_cpu <= MX_GPU_BOUND && vs_ref <= MX_GPU_BOUND && nonfinite == 0,
            "%s config %s: GPU vs CPU %.3e, vs float64 %.3e, %ld non-finite (bound %.0e)", kc->name,
            info.name, vs_cpu, vs_ref, nonfinite, MX_GPU_BOUND);
      CHECK_OK(run_args(&g, &g.args));
      CHECK(output_digest(&g) == first, "%s config %s: two GPU runs differ bitwise", kc->name,
            info.name);
    }
  }
  if (ok_g) setup_free(&c);
  setup_free(&g);
  return s;
}

#define MAX_CFG 128

static void test_forward_gpu(void) {
  if (!t_have_cuda()) {
    printf("forward on the GPU: skipped (no CUDA device, or a CPU-only build)\n");
    return;
  }
  /* MOE_TEST_GPU_CONFIGS (common.h) picks configs of the CUDA W4A16 catalogue */
  moe_runner *cat = mx_runner(MOE_BACKEND_CUDA, MOE_DTYPE_BF16, MOE_ACTIVATION_SWIGLU, 0);
  int32_t total = 0, picked = 0;
  if (!cat || CHECK_OK(moe_runner_get_num_configs(cat, &total))) {
    moe_runner_destroy(cat);
    return;
  }
  CHECK(total > 0 && total <= MAX_CFG, "CUDA W4A16 catalogue of %d configs", total);
  t_check_gpu_config_names(&cat, 1);
  for (int32_t i = 0; i < total; ++i) picked += t_gpu_config_selected(cat, i);
  /* MOE_TEST_GPU_MAX_K=N skips the cases with H or I above N (scripts/gpu-check.sh's racecheck
   * step: gpt-oss's 2880 runs the same kernel code as the others, many more times) */
  const char *mk = getenv("MOE_TEST_GPU_MAX_K");
  const long long max_k = mk && *mk ? atoll(mk) : 0;
  for (int i = 0; i < NUM_GPU_CASES; ++i) {
    const mcase *kc = &k_gpu_cases[i];
    const uint64_t seed = 700 + (uint64_t)i; /* forward_case's: the CPU forward's inputs */
    if (max_k > 0 && (kc->H > max_k || kc->I > max_k)) {
      printf("forward GPU %-26s skipped: H or I above MOE_TEST_GPU_MAX_K=%lld\n", kc->name, max_k);
      continue;
    }
    moe_runner *r = mx_runner(MOE_BACKEND_CUDA, MOE_DTYPE_BF16, kc->act, 0);
    if (!r) continue;
    moe_problem p;
    t_problem(&p, kc->E, kc->T, kc->K, kc->off, kc->El, kc->H, kc->I);
    int32_t cfgs[MAX_CFG], n = 0;
    CHECK_OK(moe_runner_get_valid_configs(r, &p, cfgs, MAX_CFG, &n));
    CHECK(n > 0, "%s: no valid CUDA config", kc->name);
    moe_runner_destroy(r);
    int ran = 0;
    g_worst_cpu = g_worst_ref = 0;
    for (int32_t j = 0; j < n && j < MAX_CFG; ++j) {
      if (!t_gpu_config_selected(cat, cfgs[j])) continue;
      forward_gpu_case(kc, cfgs[j], seed);
      ++ran;
    }
    printf(
        "forward GPU %-26s T=%-3lld H=%-4lld I=%-4lld %2d of %d valid configs (%d picked), worst "
        "rel L2 vs CPU %.3e, vs float64 %.3e (bound %.0e)\n",
        kc->name, (long long)kc->T, (long long)kc->H, (long long)kc->I, ran, n, picked, g_worst_cpu,
        g_worst_ref, MX_GPU_BOUND);
  }
  moe_runner_destroy(cat);
}

/* ---- 5. determinism ------------------------------------------------------------------------- */

static void test_determinism(void) {
  const int pick[2] = {1, 4}; /* W4A8 2880 EP, W4A8 e4m3-in */
  for (int i = 0; i < 2; ++i) {
    msetup a, b;
    const mcase *c = &k_cases[pick[i]];
    if (setup_case(c, MOE_BACKEND_CPU, 2, 900, &a) && setup_case(c, MOE_BACKEND_CPU, 1, 900, &b) &&
        !CHECK_OK(run_args(&a, &a.args))) {
      uint16_t *first = (uint16_t *)t_xmalloc(a.tout->bytes + 2);
      memcpy(first, a.out, a.tout->bytes);
      CHECK_OK(run_args(&a, &a.args));
      CHECK(memcmp(first, a.out, a.tout->bytes) == 0, "%s: run-to-run outputs differ", c->name);
      if (!CHECK_OK(run_args(&b, &b.args)))
        CHECK(output_digest(&a) == output_digest(&b), "%s: 1 vs 2 threads differ", c->name);
      free(first);
      printf("determinism %s: two runs and 1 vs 2 threads bit-identical\n", c->name);
    }
    setup_free(&a);
    setup_free(&b);
  }
}

/* ---- 6. misuse ------------------------------------------------------------------------------ */

static void test_misuse(void) {
  moe_runner *r = mx_runner(MOE_BACKEND_CPU, MOE_DTYPE_BF16, MOE_ACTIVATION_SWIGLU, 1);
  if (!r) return;
  moe_problem p;
  const int64_t El = 2, H = 64, I = 32;
  t_problem(&p, 4, 3, 2, 0, (int32_t)El, H, I);
  size_t bytes = 0;
  /* K % 32 != 0, odd K */
  {
    moe_problem q = p;
    q.hidden_size = 48;
    EXPECT_ERR(moe_weights_prepared_size(r, &q, MOE_WEIGHTS_GEMM1, &bytes), IA,
               "problem->hidden_size: MXFP4 needs a multiple of 32");
    CHECK(strstr(moe_get_last_error(), "given 48") != NULL, "message names 48");
    q.hidden_size = 33;
    EXPECT_ERR(moe_weights_prepared_size(r, &q, MOE_WEIGHTS_GEMM2, &bytes), IA, "given 33");
    q.hidden_size = 64;
    q.intermediate_size = 40;
    EXPECT_ERR(moe_weights_prepared_size(r, &q, MOE_WEIGHTS_GEMM2, &bytes), IA,
               "problem->intermediate_size");
    int32_t n = 0;
    EXPECT_ERR(moe_runner_get_valid_configs(r, &q, NULL, 0, &n), NS, "multiples of 32");
  }
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &bytes));
  CHECK(bytes == (size_t)(El * (align128(H * I / 2) + align128(H * I / 32))),
        "W2 prepared size %zu", bytes);
  uint8_t *codes = (uint8_t *)t_xmalloc((size_t)(El * H * I * 4));
  memset(codes, 0x7F, (size_t)(El * H * I * 4)); /* scales 127 */
  ttensor *q = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){El, H, I / 2}, codes);
  ttensor *qbad = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){El, H, I}, codes);
  ttensor *q16 = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){El, H, I}, codes);
  ttensor *s = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){El, H, I / 32}, codes);
  ttensor *sbad = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){El, H, I / 16}, codes);
  ttensor *sf = tt_from_host(MOE_BACKEND_CPU, DT_F32, 3, (int64_t[]){El, H, I / 32}, codes);
  ttensor *prep = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes});
  const int W2 = MOE_WEIGHTS_GEMM2;
#define PREP_BAD(canon, scales, st, needle)                                                       \
  do {                                                                                            \
    memset(prep->t.data, 0xEE, prep->bytes);                                                      \
    EXPECT_ERR(moe_weights_prepare_scaled(r, &p, W2, canon, scales, &prep->t, NULL), st, needle); \
    CHECK(still_poisoned(prep->t.data, prep->bytes, 0xEE), "prepared written on failure (%s)",    \
          needle);                                                                                \
  } while (0)
  PREP_BAD(&q->t, NULL, IA, "canonical_scales: expected the ue8m0 scales");
  PREP_BAD(&q->t, &sbad->t, IA, "canonical_scales");
  PREP_BAD(&q->t, &sf->t, IA, "canonical_scales: expected dtype uint8 or float8_e8m0fnu");
  PREP_BAD(&qbad->t, &s->t, IA, "canonical");
  PREP_BAD(&q16->t, &s->t, IA, "canonical: expected dtype uint8");
  PREP_BAD(NULL, &s->t, IA, "canonical");
  EXPECT_ERR(moe_weights_prepare(r, &p, W2, &q->t, &prep->t, NULL), IA, "given NULL");
  /* the NaN scale: refused with its position */
  ((uint8_t *)s->t.data)[1 * H * (I / 32) + 5] = 0xFF;
  PREP_BAD(&q->t, &s->t, IA, "0xFF (NaN) at [1, 5, 0]");
  ((uint8_t *)s->t.data)[1 * H * (I / 32) + 5] = 0x7F;
  CHECK_OK(moe_weights_prepare_scaled(r, &p, W2, &q->t, &s->t, &prep->t, NULL));
  { /* in place: refused */
    DLTensor over = prep->t;
    over.data = q->t.data;
    EXPECT_ERR(moe_weights_prepare_scaled(r, &p, W2, &q->t, &s->t, &over, NULL), IA,
               "prepared: expected memory disjoint from canonical");
    /* over the scales only: a prepared tensor at s's address could also reach q, wherever
     * the allocator put it (it did under compute-sanitizer), so the scales get a buffer of
     * their own long enough for both */
    uint8_t *buf = (uint8_t *)t_xmalloc(prep->bytes + s->bytes);
    memcpy(buf, s->t.data, s->bytes);
    DLTensor s2 = s->t;
    s2.data = buf;
    over.data = buf;
    EXPECT_ERR(moe_weights_prepare_scaled(r, &p, W2, &q->t, &s2, &over, NULL), IA,
               "disjoint from canonical_scales");
    free(buf);
  }
#undef PREP_BAD
  /* options */
  {
    moe_runner_options o;
    moe_runner *x = NULL;
    moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
    o.backend = MOE_BACKEND_CPU;
    o.weight_dtype = MOE_DTYPE_MXFP4;
    EXPECT_ERR(moe_runner_create(&o, &x), IA, "opts->scaling_mode: MXFP4 weights carry MX");
    o.weight_dtype = MOE_DTYPE_BF16;
    o.scaling_mode = MOE_SCALING_MX;
    EXPECT_ERR(moe_runner_create(&o, &x), IA, "opts->weight_dtype");
    o.weight_dtype = MOE_DTYPE_FP8_E4M3;
    o.activation_dtype = MOE_DTYPE_FP8_E4M3;
    EXPECT_ERR(moe_runner_create(&o, &x), IA, "expected 2 (MXFP4)");
    CHECK(x == NULL, "failed create leaves *out NULL");
  }
  /* run arguments: W4A16 takes no activation scales; W4A8 needs both; no BLOCK scales */
  {
    msetup f;
    mcase c16 = k_cases[6], c8 = k_cases[5];
    if (setup_case(&c16, MOE_BACKEND_CPU, 1, 3, &f)) {
      float one = 1.0f;
      ttensor *t1 = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){1}, &one);
      moe_run_args a = f.args;
      a.gemm1_input_scale = &t1->t;
      EXPECT_ERR(run_args(&f, &a), IA, "args->gemm1_input_scale: expected NULL (MXFP4 weights");
      CHECK(still_poisoned(f.out, f.tout->bytes, 0xFF), "output written on failure");
      a = f.args;
      ttensor *e4 = tt_from_host(MOE_BACKEND_CPU, DT_E4M3, 2, (int64_t[]){c16.T, c16.H}, f.x);
      a.hidden_states = &e4->t;
      EXPECT_ERR(run_args(&f, &a), IA, "args->hidden_states");
      tt_free(e4);
      tt_free(t1);
    }
    setup_free(&f);
    if (setup_case(&c8, MOE_BACKEND_CPU, 1, 3, &f)) {
      moe_run_args a = f.args;
      a.gemm2_input_scale = NULL;
      EXPECT_ERR(run_args(&f, &a), IA, "args->gemm2_input_scale: expected a [1] fp32 tensor");
      CHECK(still_poisoned(f.out, f.tout->bytes, 0xFF), "output written on failure");
      a = f.args;
      a.hidden_states_scale = a.gemm1_input_scale;
      EXPECT_ERR(run_args(&f, &a), IA, "args->hidden_states_scale: expected NULL");
      a = f.args;
      a.gemm1_weights = a.gemm2_weights; /* a W2 where W1 belongs: too few bytes */
      EXPECT_ERR(run_args(&f, &a), IA, "args->gemm1_weights");
    }
    setup_free(&f);
  }
  tt_free(q);
  tt_free(qbad);
  tt_free(q16);
  tt_free(s);
  tt_free(sbad);
  tt_free(sf);
  tt_free(prep);
  free(codes);
  moe_runner_destroy(r);
  printf("misuse: errors name the argument, nothing written\n");
}

/* Config queries of a CUDA runner for @p p: NOT_SUPPORTED with no config (H or I outside the
 * CUDA shape rule); run with any config: INVALID_CONFIG naming the shape (as for BF16). */
static void expect_no_cuda_config(moe_runner *r, const moe_problem *p, const char *field) {
  int32_t n = -1, cfg = -1;
  EXPECT_ERR(moe_runner_get_valid_configs(r, p, NULL, 0, &n), NS, "");
  CHECK(n == 0, "CUDA W4A16 H=%lld I=%lld: %d configs, expected none", (long long)p->hidden_size,
        (long long)p->intermediate_size, n);
  EXPECT_ERR(moe_runner_get_default_config(r, p, &cfg), NS, "");
  moe_plan plan;
  memset(&plan, 0, sizeof plan);
  moe_run_args args;
  moe_run_args_init(&args, MOE_RUN_ARGS_VERSION);
  EXPECT_ERR(moe_runner_run(r, p, &args, 0, &plan, NULL, 0, NULL), MOE_STATUS_INVALID_CONFIG,
             field);
}

/*
 * The CUDA backend's answers for MXFP4 runners. Without a device (sm_version 90): W4A16 lists
 * the sm90_w4a16_* catalogue, none of it for H or I not a multiple of 64 or past 8192 (the CPU
 * backend keeps % 32), and its run passes the backend's gate; W4A8 runs answer NOT_SUPPORTED
 * before any other check; sizes and preparation's argument checks. With a device: a complete
 * W4A8 run is NOT_SUPPORTED and a W4A16 run with bf16 biases is refused as in BF16 runs, both
 * leaving the output unwritten (test_forward_gpu runs the W4A16 forwards).
 */
/* MOE_TEST_GPU_CONFIGS (tests/common.c) on the CUDA W4A16 catalogue, without a device: a name
 * selects its config, a pattern the first match in index order, nothing else is selected, and
 * the unset variable selects all. */
static void test_gpu_config_selection(void) {
  moe_runner *r = mx_runner(MOE_BACKEND_CUDA, MOE_DTYPE_BF16, MOE_ACTIVATION_SWIGLU, 0);
  if (!r) return;
  int32_t total = 0;
  CHECK_OK(moe_runner_get_num_configs(r, &total));
  char first_c2[64] = "", last[64] = "";
  for (int32_t i = 0; i < total; ++i) {
    char name[64];
    CHECK(t_config_name(r, i, name, sizeof name), "config %d has no name", i);
    if (!*first_c2 && strstr(name, "_c2_")) snprintf(first_c2, sizeof first_c2, "%s", name);
    snprintf(last, sizeof last, "%s", name);
  }
  char env[160];
  snprintf(env, sizeof env, "%s,sm90_w4a16_*_c2_*", last);
  const char *saved = getenv("MOE_TEST_GPU_CONFIGS");
  char *keep = saved ? strdup(saved) : NULL;
  setenv("MOE_TEST_GPU_CONFIGS", env, 1);
  int picked = 0;
  for (int32_t i = 0; i < total; ++i) {
    char name[64];
    const int sel = t_gpu_config_selected(r, i);
    picked += sel;
    if (sel && t_config_name(r, i, name, sizeof name))
      CHECK(!strcmp(name, last) || !strcmp(name, first_c2), "\"%s\" selected config %s", env, name);
  }
  CHECK(picked == 2 && *first_c2, "\"%s\" selected %d configs, expected 2", env, picked);
  const long fails = tc_failures;
  t_check_gpu_config_names(&r, 1); /* every entry names a config: no failure */
  CHECK(tc_failures == fails, "\"%s\": a valid entry reported as stale", env);
  unsetenv("MOE_TEST_GPU_CONFIGS");
  const char *saved_shard = getenv("MOE_TEST_GPU_SHARD");
  char *keep_shard = saved_shard ? strdup(saved_shard) : NULL;
  unsetenv("MOE_TEST_GPU_SHARD");
  for (int32_t i = 0; i < total; ++i)
    CHECK(t_gpu_config_selected(r, i), "unset MOE_TEST_GPU_CONFIGS: config %d not selected", i);
  /* three shards select every config exactly once, shard i the indices i modulo 3 */
  for (int32_t i = 0; i < total; ++i) {
    int in = 0;
    for (int k = 0; k < 3; ++k) {
      char shard[16];
      snprintf(shard, sizeof shard, "%d/3", k);
      setenv("MOE_TEST_GPU_SHARD", shard, 1);
      const int sel = t_gpu_config_selected(r, i);
      CHECK(sel == (i % 3 == k), "MOE_TEST_GPU_SHARD=%s: config %d selected %d", shard, i, sel);
      in += sel;
    }
    CHECK(in == 1, "config %d is in %d of 3 shards", i, in);
  }
  const long before = tc_failures;
  printf("expected next: one FAIL line rejecting MOE_TEST_GPU_SHARD=3/3 (not counted)\n");
  setenv("MOE_TEST_GPU_SHARD", "3/3", 1); /* malformed: a CHECK fails, taken back here */
  const int sel_bad = t_gpu_config_selected(r, 0);
  const long bad_checks = tc_failures - before;
  tc_failures = before;
  CHECK(!sel_bad && bad_checks == 1, "MOE_TEST_GPU_SHARD=3/3: selected %d, %ld failed checks",
        sel_bad, bad_checks);
  if (keep_shard)
    setenv("MOE_TEST_GPU_SHARD", keep_shard, 1);
  else
    unsetenv("MOE_TEST_GPU_SHARD");
  free(keep_shard);
  if (keep) setenv("MOE_TEST_GPU_CONFIGS", keep, 1);
  free(keep);
  moe_runner_destroy(r);
  printf(
      "MOE_TEST_GPU_CONFIGS: names and patterns select the configs they name; "
      "MOE_TEST_GPU_SHARD splits them\n");
}

static void test_cuda_backend(void) {
  for (int a8 = 0; a8 < 2; ++a8) {
    moe_runner *r = mx_runner(MOE_BACKEND_CUDA, a8 ? MOE_DTYPE_FP8_E4M3 : MOE_DTYPE_BF16,
                              MOE_ACTIVATION_SWIGLU, 0);
    if (!r) return;
    moe_problem p;
    t_problem(&p, 128, 16, 4, 0, 128, 2880, 2880);
    int32_t n = 0, cfg = -1;
    size_t ws = 0, b1 = 0, b2 = 0;
    moe_plan plan;
    memset(&plan, 0, sizeof plan);
    moe_run_args args;
    moe_run_args_init(&args, MOE_RUN_ARGS_VERSION);
    CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM1, &b1));
    CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &b2));
    CHECK(b1 == (size_t)128 * (5760 * 1440 + align128(5760 * 90)) &&
              b2 == (size_t)128 * (2880 * 1440 + align128(2880 * 90)),
          "CUDA MXFP4 prepared sizes %zu, %zu", b1, b2);
    if (!a8) {
      int32_t cfgs[MAX_CFG], total = 0;
      char name[96];
      CHECK_OK(moe_runner_get_valid_configs(r, &p, cfgs, MAX_CFG, &n));
      CHECK_OK(moe_runner_get_default_config(r, &p, &cfg));
      CHECK_OK(moe_runner_get_workspace_size(r, &p, cfg, &ws));
      CHECK(n > 0 && ws > 0, "CUDA W4A16: %d configs, workspace %zu", n, ws);
      CHECK_OK(moe_runner_get_num_configs(r, &total));
      int bad = 0;
      for (int32_t i = 0; i < total; ++i)
        bad += !t_config_name(r, i, name, sizeof name) || strncmp(name, "sm90_w4a16_t", 12) != 0;
      CHECK(total > 0 && bad == 0, "CUDA W4A16 catalogue: %d of %d configs not named sm90_w4a16_*",
            bad, total);
      if (t_config_name(r, cfg, name, sizeof name))
        printf(
            "CUDA W4A16 (sm_version 90): %d configs, %d valid for gpt-oss-120b T=16, default %s\n",
            total, n, name);
      /* the run passes the backend's gate (then fails on the empty plan) */
      const moe_status_t s = moe_runner_run(r, &p, &args, cfg, &plan, NULL, 0, NULL);
      CHECK(s != NS, "CUDA W4A16 run -> NOT_SUPPORTED: %s", moe_get_last_error());
      /* the CUDA shape rule: H, I % 64 == 0 and <= 8192 */
      moe_problem q = p;
      q.hidden_size = 2912; /* 91 x 32 */
      expect_no_cuda_config(r, &q, "hidden_size");
      q = p;
      q.intermediate_size = 2912;
      expect_no_cuda_config(r, &q, "intermediate_size");
      q = p;
      q.hidden_size = 8256; /* 129 x 64 */
      expect_no_cuda_config(r, &q, "hidden_size");
      q = p;
      q.intermediate_size = 8256;
      expect_no_cuda_config(r, &q, "intermediate_size");
      q = p;
      q.hidden_size = q.intermediate_size = 8192;
      CHECK_OK(moe_runner_get_valid_configs(r, &q, NULL, 0, &n));
      CHECK(n > 0, "CUDA W4A16 H = I = 8192: no config");
      /* the CPU backend keeps % 32 */
      moe_runner *rc = mx_runner(MOE_BACKEND_CPU, MOE_DTYPE_BF16, MOE_ACTIVATION_SWIGLU, 1);
      q = p;
      q.hidden_size = 2912;
      q.intermediate_size = 8256;
      if (rc) CHECK_OK(moe_runner_get_valid_configs(rc, &q, NULL, 0, &n));
      CHECK(n > 0, "CPU W4A16 H=2912 I=8256: no config");
      moe_runner_destroy(rc);
    } else {
      /* W4A8 is not on CUDA: its config queries may answer (n > 0) or refuse; its run answers
       * NOT_SUPPORTED before any other check, so CPU-only CI sees it */
      const moe_status_t s = moe_runner_get_valid_configs(r, &p, NULL, 0, &n);
      CHECK(s == MOE_STATUS_SUCCESS ? n > 0 : s == NS, "CUDA W4A8 config query -> %d (%d): %s",
            (int)s, n, moe_get_last_error());
      EXPECT_ERR(moe_runner_run(r, &p, &args, 0, &plan, NULL, 0, NULL), NS, "W4A8");
    }
    /* preparation checks its arguments first (host tensors on a CUDA runner: the device) */
    moe_problem s;
    t_problem(&s, 2, 1, 1, 0, 1, 64, 32);
    uint8_t buf[4096] = {0};
    ttensor *q = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){1, 64, 16}, buf);
    ttensor *sc = tt_from_host(MOE_BACKEND_CPU, DT_U8, 3, (int64_t[]){1, 64, 1}, buf);
    ttensor *pp = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){4096});
    EXPECT_ERR(moe_weights_prepare_scaled(r, &s, MOE_WEIGHTS_GEMM2, &q->t, &sc->t, &pp->t, NULL),
               IA, "canonical");
    tt_free(q);
    tt_free(sc);
    tt_free(pp);
    moe_runner_destroy(r);
  }
  if (t_have_cuda()) {
    /* complete runs on the GPU (the default config): W4A8 is NOT_SUPPORTED; a W4A16 run with
     * bf16 biases is refused as in BF16 runs; both leave the output unwritten */
    for (int i = 0; i < 2; ++i) {
      mcase c = k_gpu_cases[1];
      c.w4a8 = i == 0;
      c.bias = i == 0 ? 1 : 2;
      moe_runner *rd =
          mx_runner(MOE_BACKEND_CUDA, c.w4a8 ? MOE_DTYPE_FP8_E4M3 : MOE_DTYPE_BF16, c.act, 0);
      moe_problem pd;
      t_problem(&pd, c.E, c.T, c.K, c.off, c.El, c.H, c.I);
      int32_t cfg = -1;
      const moe_status_t q = rd ? moe_runner_get_default_config(rd, &pd, &cfg) : NS;
      moe_runner_destroy(rd);
      CHECK(q == MOE_STATUS_SUCCESS || c.w4a8, "CUDA W4A16 default config: %s",
            moe_get_last_error());
      msetup f;
      memset(&f, 0, sizeof f);
      g_force_cfg = cfg; /* W4A8 may list no config on CUDA: then its queries refused it */
      if (q == MOE_STATUS_SUCCESS && setup_case(&c, MOE_BACKEND_CUDA, 0, 31 + (uint64_t)i, &f)) {
        EXPECT_ERR(run_args(&f, &f.args), NS, c.w4a8 ? "W4A8" : "bf16 biases");
        CHECK(still_poisoned(f.out, f.tout->bytes, 0xFF), "CUDA %s: output written on failure",
              c.w4a8 ? "W4A8" : "bf16 biases");
      }
      g_force_cfg = -1;
      setup_free(&f);
    }
  }
  printf(
      "CUDA backend (sm_version 90): W4A16 configs sm90_w4a16_*, none outside H, I %% 64 == 0 "
      "and <= 8192; W4A8 run NOT_SUPPORTED%s\n",
      t_have_cuda() ? "; on the GPU: W4A8 and bf16 biases refused, output unwritten" : "");
}

int main(void) {
  mx_value_init();
  test_decode();
  test_bit_order();
  test_swiglu_formula();
  test_swiglu_end_to_end();
  test_layout();
  test_forward();
  test_forward_gpu();
  test_determinism();
  test_misuse();
  test_gpu_config_selection();
  test_cuda_backend();
  return tc_summary("test_mxfp4");
}
