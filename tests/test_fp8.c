/*
 * test_fp8.c - the FP8 path (docs/formats.md, "FP8"):
 *   1. the shared e4m3fn conversion (kernels/fp8_math.h): all 256 codes decode; encode against
 *      the slow reference of fp8_ref.h over every float whose low 16 bits take a set of
 *      patterns (all ties and rounding positions of e4m3 lie in the upper 16 bits), explicit
 *      ties, subnormals, saturation, inf and NaN; the group scale rule.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fp8_ref.h"
#include "kernels/fp8_math.h"

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint32_t f_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* ---- 1. conversion ------------------------------------------------------------------------ */

static void test_decode_all_codes(void) {
  for (int q = 0; q < 256; ++q) {
    const double want = ref_e4m3_value((uint8_t)q);
    const float got = moe_e4m3_to_f32((uint8_t)q);
    if (isnan(want)) {
      CHECK(f_bits(got) == 0x7FC00000u, "decode(0x%02X): expected NaN 0x7FC00000, given 0x%08X", q,
            f_bits(got));
      continue;
    }
    CHECK((double)got == want && (signbit(got) != 0) == ((q & 0x80) != 0),
          "decode(0x%02X): expected %.9g, given %.9g", q, want, (double)got);
    /* every finite code is its own encoding (incl. -0 = 0x80) */
    CHECK(moe_f32_to_e4m3(got) == q, "encode(decode(0x%02X)) = 0x%02X", q, moe_f32_to_e4m3(got));
  }
  CHECK(moe_e4m3_to_f32(0x7E) == 448.0f && moe_e4m3_to_f32(0x08) == 0.015625f &&
            moe_e4m3_to_f32(0x01) == 0.001953125f,
        "decode landmarks (448, 2^-6, 2^-9)");
}

static int encode_matches(float x) {
  const uint8_t want = ref_f32_to_e4m3(x), got = moe_f32_to_e4m3(x);
  CHECK(want == got, "encode(%.9g = 0x%08X): expected 0x%02X, given 0x%02X", (double)x, f_bits(x),
        want, got);
  return want == got;
}

static void test_encode(void) {
  /* low halves: the edges plus seeded random patterns */
  uint32_t lows[32] = {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu};
  t_rng rng = {0x5EEDF8E4ull};
  for (int l = 6; l < 32; ++l) lows[l] = (uint32_t)(t_rng_next(&rng) & 0xFFFFu);
  long n = 0, bad = 0;
  for (uint32_t hi = 0; hi < 0x10000u; ++hi)
    for (int l = 0; l < 32; ++l, ++n) bad += !encode_matches(bits_f(hi << 16 | lows[l]));
  /* Ties and their neighbours: midpoints of adjacent codes (exact in float), one float ulp
   * either side, both signs; the tie above 448 (464) and below the smallest subnormal. */
  for (int q = 0; q < 0x7E; ++q) {
    const float mid = (float)((ref_e4m3_value((uint8_t)q) + ref_e4m3_value((uint8_t)(q + 1))) / 2);
    for (int d = -1; d <= 1; ++d)
      for (int s = 0; s < 2; ++s, ++n) {
        const float v = bits_f(f_bits(mid) + (uint32_t)d);
        bad += !encode_matches(s ? -v : v);
      }
  }
  const float specials[] = {0.0f,          -0.0f,          448.0f,        464.0f,  480.0f,
                            1e30f,         INFINITY,       -INFINITY,     NAN,     -NAN,
                            0.0009765625f, 0.00097656256f, 0.0009765624f, 1e-40f,  -1e-45f,
                            0.015624999f,  0.0156250f,     447.99997f,    -465.0f, 240.0f};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; ++i, ++n)
    bad += !encode_matches(specials[i]);
  /* The documented landmarks, stated directly. */
  CHECK(moe_f32_to_e4m3(INFINITY) == 0x7E && moe_f32_to_e4m3(-INFINITY) == 0xFE,
        "inf saturates to +-448");
  CHECK(moe_f32_to_e4m3(NAN) == 0x7F && moe_f32_to_e4m3(-NAN) == 0x7F, "NaN -> 0x7F");
  CHECK(moe_f32_to_e4m3(464.0f) == 0x7E && moe_f32_to_e4m3(1e38f) == 0x7E, "saturation");
  CHECK(moe_f32_to_e4m3(0.0009765625f) == 0x00, "2^-10 (tie) -> 0");
  CHECK(moe_f32_to_e4m3(0.0029296875f) == 0x02, "1.5 * 2^-9 (tie) -> 2 * 2^-9 (even)");
  CHECK(moe_f32_to_e4m3(-1e-30f) == 0x80, "tiny negative -> -0");
  CHECK(moe_f32_to_e4m3(17.0f) == 0x58 && moe_f32_to_e4m3(19.0f) == 0x5A,
        "ties between normals go to the even mantissa (17 -> 16, 19 -> 20)");
  printf("encode: %ld values checked against the reference, %ld mismatches\n", n, bad);
}

static void test_scale_rule(void) {
  float amax = 0.0f;
  const float xs[] = {1.5f, -3.0f, NAN, INFINITY, -INFINITY, 2.0f};
  for (int i = 0; i < 6; ++i) amax = moe_fp8_amax_step(amax, xs[i]);
  CHECK(amax == 3.0f, "amax ignores NaN and inf: expected 3, given %g", (double)amax);
  CHECK(moe_fp8_scale(3.0f) == 3.0f / 448.0f, "scale = amax / 448");
  CHECK(moe_fp8_scale(0.0f) == 1.0f, "all-zero group: scale 1");
  CHECK(moe_fp8_scale(1e-45f) == 1.0f, "amax / 448 underflows to 0: scale 1");
  const float s = moe_fp8_scale(3.0f);
  CHECK(moe_fp8_quantize(-3.0f, s) == 0xFE, "the amax element quantizes to +-448");
  CHECK(moe_fp8_quantize(INFINITY, s) == 0x7E && moe_fp8_quantize(NAN, s) == 0x7F,
        "inf saturates, NaN stays NaN");
  CHECK(moe_fp8_quantize(0.0f, 1.0f) == 0x00 && moe_fp8_quantize(-0.0f, 1.0f) == 0x80,
        "zeros keep their sign");
  CHECK(moe_fp8_dequantize(0x7E, s) == 448.0f * s, "dequantize = q * s");
}

/* ---- shared helpers ------------------------------------------------------------------------ */

#define BLK 128
#define DT_E4M3 ((DLDataType){kDLFloat8_e4m3fn, 8, 1})
#define DT_E5M2 ((DLDataType){kDLFloat8_e5m2, 8, 1})

#define EXPECT_ERR(call, st, needle)                                                              \
  do {                                                                                            \
    const moe_status_t s_ = (call);                                                               \
    CHECK(s_ == (st), "%s -> %d, expected %d (%s)", #call, (int)s_, (int)(st),                    \
          moe_get_last_error());                                                                  \
    CHECK(strstr(moe_get_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", #call, \
          moe_get_last_error(), needle);                                                          \
  } while (0)

static int64_t w1_rows(int act, int64_t I) {
  return (t_gated(act) ? 2 : 1) * I;
}

/* Uniform in [-1, 1). */
static float rnd_unit(t_rng *r) {
  return (float)((double)(t_rng_next(r) >> 11) * 0x1.0p-52 - 1.0);
}

/* 2^g, g uniform in [-4, 2]: a magnitude per 128-group, so the groups' scales differ. */
static float rnd_mag(t_rng *r) {
  return ldexpf(1.0f, (int)t_rng_range(r, -4, 2));
}

/* Canonical bf16 weights [El, R, C]: uniform times a magnitude per 128x128 block. */
static uint16_t *gen_weights(t_rng *rng, int64_t El, int64_t R, int64_t C, float base) {
  uint16_t *w = (uint16_t *)t_xmalloc((size_t)(El * R * C) * 2);
  for (int64_t e = 0; e < El; ++e)
    for (int64_t i = 0; i < R / BLK; ++i)
      for (int64_t j = 0; j < C / BLK; ++j) {
        const float m = base * rnd_mag(rng);
        for (int64_t r = i * BLK; r < (i + 1) * BLK; ++r)
          for (int64_t c = j * BLK; c < (j + 1) * BLK; ++c)
            w[(e * R + r) * C + c] = f32_to_bf16(m * rnd_unit(rng));
      }
  return w;
}

/* Canonical row of prepared row p (docs/formats.md: gated W1 interleaves 8-row blocks). */
static int64_t canonical_row(int interleave, int64_t I, int64_t p) {
  if (!interleave) return p;
  const int64_t f = 8 * (p / 16) + p % 8;
  return (p / 8) % 2 ? I + f : f;
}

/* Dequantized weight (double, exact) of canonical element (e, r, c). */
static double wdq(int mode, const uint8_t *q, const float *s, int64_t R, int64_t C, int64_t e,
                  int64_t r, int64_t c) {
  const float sc =
      mode == MOE_SCALING_BLOCK ? s[(e * (R / BLK) + r / BLK) * (C / BLK) + c / BLK] : s[e];
  return ref_e4m3_value(q[(e * R + r) * C + c]) * (double)sc;
}

/* ---- 2. weight preparation ------------------------------------------------------------------- */

static void check_prepare(int mode, int activation, int32_t which, int from_bf16, uint64_t seed) {
  const int64_t E = 6, El = 3, H = 256, I = 384;
  const int gated = t_gated(activation);
  const int64_t R = which == MOE_WEIGHTS_GEMM1 ? (gated ? 2 : 1) * I : H;
  const int64_t C = which == MOE_WEIGHTS_GEMM1 ? H : I;
  const int interleave = which == MOE_WEIGHTS_GEMM1 && gated;
  const int64_t nv = El * R * C, ns = mode == MOE_SCALING_BLOCK ? El * (R / BLK) * (C / BLK) : El;
  moe_runner *r = t_fp8_runner(MOE_BACKEND_CPU, mode, activation, 2);
  if (!r) return;
  moe_problem p;
  t_problem(&p, (int32_t)E, 5, 2, 2, (int32_t)El, H, I);
  size_t bytes = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p, which, &bytes));
  const int64_t off = (nv + 255) / 256 * 256;
  CHECK((int64_t)bytes == off + 4 * ns, "prepared size %zu, expected %lld", bytes,
        (long long)(off + 4 * ns));
  t_rng rng = {seed};
  uint16_t *w = gen_weights(&rng, El, R, C, 0.05f);
  uint8_t *q = (uint8_t *)t_xmalloc((size_t)nv);
  float *s = (float *)t_xmalloc(sizeof(float) * (size_t)ns);
  ttensor *canon, *scales = NULL;
  if (from_bf16) {
    ref_fp8_quantize_weights(mode, w, El, R, C, ref_fp8_quantize, q, s);
    canon = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){El, R, C}, w);
  } else { /* any codes (NaN codes too: a relayout copies bytes) and any scales */
    for (int64_t i = 0; i < nv; ++i) q[i] = (uint8_t)t_rng_next(&rng);
    for (int64_t i = 0; i < ns; ++i) s[i] = rnd_mag(&rng) * (1.0f + rnd_unit(&rng) * 0.5f);
    canon = tt_from_host(MOE_BACKEND_CPU, DT_E4M3, 3, (int64_t[]){El, R, C}, q);
    scales = mode == MOE_SCALING_BLOCK
                 ? tt_from_host(MOE_BACKEND_CPU, DT_F32, 3, (int64_t[]){El, R / BLK, C / BLK}, s)
                 : tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){El}, s);
  }
  const int64_t slack = 64; /* bytes past the prepared size must stay untouched */
  ttensor *prep = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes + slack});
  memset(prep->t.data, 0xA5, prep->bytes);
  moe_status_t st = (from_bf16 && which == MOE_WEIGHTS_GEMM2)
                        ? moe_weights_prepare(r, &p, which, &canon->t, &prep->t, NULL)
                        : moe_weights_prepare_scaled(r, &p, which, &canon->t,
                                                     scales ? &scales->t : NULL, &prep->t, NULL);
  CHECK_OK(st);
  const uint8_t *out = (const uint8_t *)prep->t.data;
  long bad = 0;
  for (int64_t e = 0; e < El; ++e)
    for (int64_t pr = 0; pr < R; ++pr) {
      const int64_t cr = canonical_row(interleave, I, pr);
      for (int64_t c = 0; c < C; ++c) {
        const uint8_t want = q[(e * R + cr) * C + c], got = out[(e * R + pr) * C + c];
        if (want != got && bad++ < 5)
          CHECK(0,
                "prepare mode %d which %d bf16 %d: [e %lld, prepared row %lld, col %lld] = "
                "0x%02X, expected 0x%02X",
                mode, which, from_bf16, (long long)e, (long long)pr, (long long)c, got, want);
      }
    }
  CHECK(bad == 0, "prepare mode %d which %d bf16 %d: %ld values differ", mode, which, from_bf16,
        bad);
  for (int64_t i = nv; i < off; ++i)
    if (out[i] != 0) {
      CHECK(0, "pad byte %lld = 0x%02X, expected 0", (long long)i, out[i]);
      break;
    }
  CHECK(memcmp(out + off, s, sizeof(float) * (size_t)ns) == 0,
        "prepare mode %d which %d bf16 %d: scales differ", mode, which, from_bf16);
  for (int64_t i = 0; i < slack; ++i)
    if (out[bytes + i] != 0xA5) {
      CHECK(0, "byte %lld past the prepared size written", (long long)i);
      break;
    }
  tt_free(canon);
  tt_free(scales);
  tt_free(prep);
  free(w);
  free(q);
  free(s);
  moe_runner_destroy(r);
}

static void test_prepare(void) {
  const int modes[2] = {MOE_SCALING_BLOCK, MOE_SCALING_PER_TENSOR};
  const int acts[2] = {MOE_ACTIVATION_SWIGLU, MOE_ACTIVATION_RELU2};
  uint64_t seed = 100;
  for (int m = 0; m < 2; ++m)
    for (int a = 0; a < 2; ++a)
      for (int which = 1; which <= 2; ++which)
        for (int bf = 0; bf < 2; ++bf) check_prepare(modes[m], acts[a], which, bf, ++seed);
  /* The special groups of the rule, through the library's quantization: an all-zero block
   * (scale 1, every code +-0) and a block holding inf and NaN (amax of the finite values;
   * inf saturates, NaN stays NaN). */
  moe_runner *r = t_fp8_runner(MOE_BACKEND_CPU, MOE_SCALING_BLOCK, MOE_ACTIVATION_RELU2, 1);
  if (!r) return;
  moe_problem p;
  t_problem(&p, 1, 1, 1, 0, 1, 128, 256);
  size_t bytes = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &bytes)); /* [1, 128, 256] */
  uint16_t *w = (uint16_t *)t_xmalloc(2 * 128 * 256);
  for (int i = 0; i < 128 * 256; ++i) w[i] = (i % 256) < 128 ? (i % 2 ? 0x8000 : 0) : 0x3F80;
  w[128] = 0x7F80; /* +inf in block (0, 1) */
  w[129] = 0x7FC1; /* NaN */
  w[130] = 0xC000; /* -2: the block's finite amax */
  ttensor *c = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){1, 128, 256}, w);
  ttensor *pr = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes});
  CHECK_OK(moe_weights_prepare(r, &p, MOE_WEIGHTS_GEMM2, &c->t, &pr->t, NULL));
  const uint8_t *o = (const uint8_t *)pr->t.data;
  const float *sc = (const float *)(o + 32768);
  CHECK(sc[0] == 1.0f && sc[1] == 2.0f / 448.0f, "special blocks: scales %g, %g", (double)sc[0],
        (double)sc[1]);
  CHECK(o[0] == 0x00 && o[1] == 0x80 && o[256] == 0x00, "all-zero block: codes +-0");
  CHECK(o[128] == 0x7E && o[129] == 0x7F && o[130] == 0xFE && o[131] == 0x76,
        "inf -> 448, NaN -> NaN, -2 -> -448, 1 -> 1 / (2/448) = 224 (codes %02X %02X %02X %02X)",
        o[128], o[129], o[130], o[131]);
  tt_free(c);
  tt_free(pr);
  free(w);
  moe_runner_destroy(r);
}

/* Prepared bytes of one weight tensor on @p backend (canonical e4m3 + scales, or bf16), with
 * the canonical data shifted by @p shift elements (unaligned for shift 1). NULL on failure. */
static uint8_t *prepare_on(int backend, int mode, int activation, int32_t which,
                           const moe_problem *p, const void *canon, int canon_e4m3,
                           const float *scales, int64_t R, int64_t C, int64_t shift,
                           size_t *bytes) {
  moe_runner *r = t_fp8_runner(backend, mode, activation, 2);
  if (!r) return NULL;
  const int64_t El = p->local_num_experts;
  uint8_t *host = NULL;
  if (!CHECK_OK(moe_weights_prepared_size(r, p, which, bytes))) {
    ttensor *c = tt_from_host_shifted(backend, canon_e4m3 ? DT_E4M3 : DT_BF16, 3,
                                      (int64_t[]){El, R, C}, canon, shift);
    ttensor *sc = NULL;
    if (scales)
      sc = mode == MOE_SCALING_BLOCK
               ? tt_from_host(backend, DT_F32, 3, (int64_t[]){El, R / BLK, C / BLK}, scales)
               : tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, scales);
    ttensor *pr = tt_new(backend, DT_U8, 1, (int64_t[]){(int64_t)*bytes});
    tmem_poison(backend, pr->t.data, pr->bytes);
    if (!CHECK_OK(
            moe_weights_prepare_scaled(r, p, which, &c->t, sc ? &sc->t : NULL, &pr->t, NULL))) {
      host = (uint8_t *)t_xmalloc(*bytes);
      tmem_download(backend, host, pr->t.data, *bytes);
    }
    tt_free(c);
    tt_free(sc);
    tt_free(pr);
  }
  moe_runner_destroy(r);
  return host;
}

/* The CUDA preparation (kernels/weights_prepare_fp8.cu) writes the CPU's bytes. */
static void test_prepare_gpu(void) {
  if (!t_have_cuda()) {
    printf("prepare on the GPU: skipped (no CUDA device, or a CPU-only build)\n");
    return;
  }
  const int modes[2] = {MOE_SCALING_BLOCK, MOE_SCALING_PER_TENSOR};
  const int acts[2] = {MOE_ACTIVATION_SWIGLU, MOE_ACTIVATION_IDENTITY};
  int cases = 0;
  for (int m = 0; m < 2; ++m)
    for (int ai = 0; ai < 2; ++ai)
      for (int which = 1; which <= 2; ++which)
        for (int kind = 0; kind < 3; ++kind) { /* bf16; e4m3 aligned; e4m3 unaligned */
          const int64_t El = 3, H = 384, I = 256;
          const int64_t R = which == 1 ? w1_rows(acts[ai], I) : H, C = which == 1 ? H : I;
          moe_problem p;
          t_problem(&p, 7, 4, 2, 4, (int32_t)El, H, I);
          t_rng rng = {900 + (uint64_t)(m * 100 + ai * 10 + which * 3 + kind)};
          uint16_t *w = gen_weights(&rng, El, R, C, 0.05f);
          const int64_t ns = modes[m] == MOE_SCALING_BLOCK ? El * (R / BLK) * (C / BLK) : El;
          uint8_t *q = (uint8_t *)t_xmalloc((size_t)(El * R * C));
          float *s = (float *)t_xmalloc(sizeof(float) * (size_t)ns);
          ref_fp8_quantize_weights(modes[m], w, El, R, C, ref_fp8_quantize, q, s);
          if (kind == 0) w[5] = 0x7FC1; /* a NaN and an inf through the GPU rule */
          if (kind == 0) w[6] = 0xFF80;
          const void *canon = kind ? (const void *)q : (const void *)w;
          size_t b_cpu = 0, b_gpu = 0;
          uint8_t *cpu = prepare_on(MOE_BACKEND_CPU, modes[m], acts[ai], which, &p, canon,
                                    kind != 0, kind ? s : NULL, R, C, 0, &b_cpu);
          uint8_t *gpu = prepare_on(MOE_BACKEND_CUDA, modes[m], acts[ai], which, &p, canon,
                                    kind != 0, kind ? s : NULL, R, C, kind == 2, &b_gpu);
          CHECK(cpu && gpu && b_cpu == b_gpu && memcmp(cpu, gpu, b_cpu) == 0,
                "GPU prepare differs from the CPU (mode %d, act %d, which %d, kind %d)", modes[m],
                acts[ai], which, kind);
          ++cases;
          free(cpu);
          free(gpu);
          free(w);
          free(q);
          free(s);
        }
  printf("prepare on the GPU: %d cases bit-identical to the CPU\n", cases);
}

/* ---- 3. the CPU FP8 forward against a float64 reference ---------------------------------------
 */

typedef struct fcase {
  const char *name;
  int mode, act;
  int hidden_fp8; /* hidden states given as e4m3 (+ scales) */
  int w_e4m3;     /* weights given as e4m3 + scales (else bf16, quantized by the library) */
  int bias;
  int32_t E, El, off, K;
  int64_t T, H, I;
  int32_t tile, cluster;
  int finalize;
} fcase;

/* Everything one forward needs, built from a case (host copies kept for the reference). */
typedef struct fsetup {
  fcase c;
  int backend; /* MOE_BACKEND_CPU or MOE_BACKEND_CUDA: where the tensors and the run are */
  moe_runner *r;
  moe_problem p;
  int32_t cfg;
  t_ws ws;
  moe_plan plan;
  host_plan hp;
  int64_t R1; /* W1 rows: f * I */
  uint16_t *x, *w1, *w2;
  float *b1, *b2;
  uint8_t *q1, *q2, *xq; /* canonical weight codes; e4m3 hidden */
  float *s1w, *s2w, *xs; /* weight scales; hidden scales (BLOCK, e4m3 hidden) */
  float in1, in2;        /* PER_TENSOR input scales */
  ttensor *tw1, *tw2, *thid, *ths, *tin1, *tin2, *tb1, *tb2, *tout;
  moe_run_args args;
  uint16_t *out; /* host copy of the output after run_args */
  int ok;
} fsetup;

/* The reference GEMM1 + activation of token t on local expert e, in double. */
static void ref_gemm1(const fsetup *f, const double *x, int64_t e, double *y) {
  const int64_t H = f->c.H, I = f->c.I, R1 = f->R1;
  for (int64_t i = 0; i < I; ++i) {
    double up = 0, gate = 0;
    for (int64_t h = 0; h < H; ++h) up += x[h] * wdq(f->c.mode, f->q1, f->s1w, R1, H, e, i, h);
    if (f->b1) up += f->b1[e * R1 + i];
    if (t_gated(f->c.act)) {
      for (int64_t h = 0; h < H; ++h)
        gate += x[h] * wdq(f->c.mode, f->q1, f->s1w, R1, H, e, I + i, h);
      if (f->b1) gate += f->b1[e * R1 + I + i];
    }
    switch (f->c.act) {
      case MOE_ACTIVATION_SWIGLU:
        y[i] = gate / (1.0 + exp(-gate)) * up;
        break;
      case MOE_ACTIVATION_GEGLU:
        y[i] = up * 0.5 * gate * (1.0 + erf(gate / sqrt(2.0)));
        break;
      case MOE_ACTIVATION_RELU2:
        y[i] = up > 0 ? up * up : 0.0;
        break;
      default:
        y[i] = up;
    }
  }
}

/* The GEMM1 input of token t, dequantized (double): the hidden quantization point. */
static void ref_hidden(const fsetup *f, int64_t t, double *x) {
  const int64_t H = f->c.H;
  for (int64_t b = 0; b < H / BLK; ++b) {
    float g[BLK];
    for (int k = 0; k < BLK; ++k) g[k] = bf16_to_f32(f->x[t * H + b * BLK + k]);
    ref_fp8_dequantized_group(g, BLK, f->c.mode == MOE_SCALING_BLOCK ? 0.0f : f->in1,
                              ref_fp8_quantize, x + b * BLK);
  }
}

static void setup_free(fsetup *f) {
  tt_free(f->tw1);
  tt_free(f->tw2);
  tt_free(f->thid);
  tt_free(f->ths);
  tt_free(f->tin1);
  tt_free(f->tin2);
  tt_free(f->tb1);
  tt_free(f->tb2);
  tt_free(f->tout);
  free(f->x);
  free(f->w1);
  free(f->w2);
  free(f->b1);
  free(f->b2);
  free(f->q1);
  free(f->q2);
  free(f->xq);
  free(f->s1w);
  free(f->s2w);
  free(f->xs);
  free(f->out);
  if (f->ws.ptr) t_ws_free(&f->ws);
  if (f->ok) t_free_plan(&f->hp);
  moe_runner_destroy(f->r);
  memset(f, 0, sizeof *f);
}

/* A config index that setup_case uses instead of the case's (tile, cluster), or -1: the GPU
 * suite runs every config of the catalogue on each case. */
static int32_t g_force_cfg = -1;

static int setup_case(const fcase *c, int backend, int32_t threads, uint64_t seed, fsetup *f) {
  memset(f, 0, sizeof *f);
  f->c = *c;
  f->backend = backend;
  const int64_t T = c->T, H = c->H, I = c->I, El = c->El, E = c->E, K = c->K;
  f->R1 = w1_rows(c->act, I);
  const int64_t R1 = f->R1;
  const int block = c->mode == MOE_SCALING_BLOCK;
  f->r = t_fp8_runner(f->backend, c->mode, c->act, threads);
  if (!f->r) return 0;
  t_problem(&f->p, c->E, T, c->K, c->off, c->El, H, I);
  t_rng rng = {seed};
  /* inputs: hidden with a magnitude per token per 128 columns; weights per 128x128 block */
  f->x = (uint16_t *)t_xmalloc((size_t)(T * H) * 2);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < H / BLK; ++b) {
      const float m = rnd_mag(&rng);
      for (int k = 0; k < BLK; ++k) f->x[t * H + b * BLK + k] = f32_to_bf16(m * rnd_unit(&rng));
    }
  f->w1 = gen_weights(&rng, El, R1, H, 0.08f);
  f->w2 = gen_weights(&rng, El, H, I, 0.08f);
  if (c->bias) {
    f->b1 = (float *)t_xmalloc(sizeof(float) * (size_t)(El * R1));
    f->b2 = (float *)t_xmalloc(sizeof(float) * (size_t)(El * H));
    for (int64_t i = 0; i < El * R1; ++i) f->b1[i] = 0.1f * rnd_unit(&rng);
    for (int64_t i = 0; i < El * H; ++i) f->b2[i] = 0.05f * rnd_unit(&rng);
  }
  /* weights: the test's quantization (= the library's, checked by test_prepare) */
  const int64_t ns1 = block ? El * (R1 / BLK) * (H / BLK) : El;
  const int64_t ns2 = block ? El * (H / BLK) * (I / BLK) : El;
  f->q1 = (uint8_t *)t_xmalloc((size_t)(El * R1 * H));
  f->q2 = (uint8_t *)t_xmalloc((size_t)(El * H * I));
  f->s1w = (float *)t_xmalloc(sizeof(float) * (size_t)ns1);
  f->s2w = (float *)t_xmalloc(sizeof(float) * (size_t)ns2);
  ref_fp8_quantize_weights(c->mode, f->w1, El, R1, H, ref_fp8_quantize, f->q1, f->s1w);
  ref_fp8_quantize_weights(c->mode, f->w2, El, H, I, ref_fp8_quantize, f->q2, f->s2w);
  size_t b1 = 0, b2 = 0;
  if (CHECK_OK(moe_weights_prepared_size(f->r, &f->p, MOE_WEIGHTS_GEMM1, &b1)) ||
      CHECK_OK(moe_weights_prepared_size(f->r, &f->p, MOE_WEIGHTS_GEMM2, &b2)))
    return 0;
  f->tw1 = tt_new(f->backend, DT_U8, 1, (int64_t[]){(int64_t)b1});
  f->tw2 = tt_new(f->backend, DT_U8, 1, (int64_t[]){(int64_t)b2});
  for (int which = 1; which <= 2; ++which) {
    const int64_t R = which == 1 ? R1 : H, C = which == 1 ? H : I;
    const int64_t sshape3[3] = {El, R / BLK, C / BLK}, sshape1[1] = {El};
    ttensor *canon, *sc = NULL;
    if (c->w_e4m3) {
      canon =
          tt_from_host(f->backend, DT_E4M3, 3, (int64_t[]){El, R, C}, which == 1 ? f->q1 : f->q2);
      sc = tt_from_host(f->backend, DT_F32, block ? 3 : 1, block ? sshape3 : sshape1,
                        which == 1 ? f->s1w : f->s2w);
    } else {
      canon =
          tt_from_host(f->backend, DT_BF16, 3, (int64_t[]){El, R, C}, which == 1 ? f->w1 : f->w2);
    }
    CHECK_OK(moe_weights_prepare_scaled(f->r, &f->p, which, &canon->t, sc ? &sc->t : NULL,
                                        which == 1 ? &f->tw1->t : &f->tw2->t, NULL));
    tt_free(canon);
    tt_free(sc);
  }
  /* routing: Renormalize on seeded fp32 logits */
  f->cfg = g_force_cfg >= 0 ? g_force_cfg : t_find_config(f->r, &f->p, c->tile, c->cluster);
  CHECK(f->cfg >= 0, "%s: no config with tile %d, cluster %d", c->name, c->tile, c->cluster);
  if (f->cfg < 0 || CHECK_OK(t_ws_alloc(f->r, f->backend, &f->p, f->cfg, &f->ws))) return 0;
  float *logits = (float *)t_xmalloc(sizeof(float) * (size_t)(T * E));
  for (int64_t i = 0; i < T * E; ++i) logits[i] = 3.0f * rnd_unit(&rng);
  t_route rt;
  t_route_init(&rt);
  rt.logits_f32 = 1;
  rt.logits = logits;
  moe_status_t s = t_prepare(f->r, f->backend, &f->p, &rt, f->cfg, &f->ws, &f->plan);
  free(logits);
  if (CHECK_OK(s) || t_read_plan(f->r, &f->plan, &f->ws, c->E, &f->hp)) return 0;
  f->ok = 1;
  (void)K;
  /* PER_TENSOR static scales, calibrated on this input at 0.9 of its amax, so the largest
   * values saturate (the saturation path of both quantization points is exercised). */
  if (!block) {
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
  }
  /* hidden states: bf16, or e4m3 (+ [T, H/128] scales in BLOCK) quantized by the test */
  if (c->hidden_fp8) {
    f->xq = (uint8_t *)t_xmalloc((size_t)(T * H) + 1);
    f->xs = (float *)t_xmalloc(sizeof(float) * (size_t)(T * (H / BLK)) + 4);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t b = 0; b < H / BLK; ++b) {
        float g[BLK];
        for (int k = 0; k < BLK; ++k) g[k] = bf16_to_f32(f->x[t * H + b * BLK + k]);
        const float sc = block ? ref_fp8_scale_of(g, BLK, 1) : f->in1;
        f->xs[t * (H / BLK) + b] = sc;
        for (int k = 0; k < BLK; ++k) f->xq[t * H + b * BLK + k] = ref_fp8_quantize(g[k], sc);
      }
    f->thid = tt_from_host(f->backend, DT_E4M3, 2, (int64_t[]){T, H}, f->xq);
    if (block) f->ths = tt_from_host(f->backend, DT_F32, 2, (int64_t[]){T, H / BLK}, f->xs);
  } else {
    f->thid = tt_from_host(f->backend, DT_BF16, 2, (int64_t[]){T, H}, f->x);
  }
  moe_run_args *a = &f->args;
  moe_run_args_init(a, MOE_RUN_ARGS_VERSION);
  a->do_finalize = c->finalize;
  a->hidden_states = &f->thid->t;
  a->hidden_states_scale = f->ths ? &f->ths->t : NULL;
  if (!block) {
    f->tin1 = tt_from_host(f->backend, DT_F32, 1, (int64_t[]){1}, &f->in1);
    f->tin2 = tt_from_host(f->backend, DT_F32, 1, (int64_t[]){1}, &f->in2);
    a->gemm1_input_scale = &f->tin1->t;
    a->gemm2_input_scale = &f->tin2->t;
  }
  a->gemm1_weights = &f->tw1->t;
  a->gemm2_weights = &f->tw2->t;
  if (c->bias) {
    f->tb1 = tt_from_host(f->backend, DT_F32, 2, (int64_t[]){El, R1}, f->b1);
    f->tb2 = tt_from_host(f->backend, DT_F32, 2, (int64_t[]){El, H}, f->b2);
    a->gemm1_bias = &f->tb1->t;
    a->gemm2_bias = &f->tb2->t;
  }
  const int64_t out_rows = c->finalize ? T : f->plan.max_padded_rows;
  f->tout = tt_new(f->backend, DT_BF16, 2, (int64_t[]){out_rows, H});
  f->out = (uint16_t *)t_xmalloc(f->tout->bytes);
  if (c->finalize)
    a->output = &f->tout->t;
  else
    a->permuted_output = &f->tout->t;
  return 1;
}

/* Run with @p a on a poisoned output (0xFF bytes: bf16 NaN) and copy the output to f->out. */
static moe_status_t run_args(fsetup *f, const moe_run_args *a) {
  tmem_poison(f->backend, f->tout->t.data, f->tout->bytes);
  moe_status_t s = moe_runner_run(f->r, &f->p, a, f->cfg, &f->plan, f->ws.ptr, f->ws.bytes, NULL);
  tmem_sync(f->backend);
  tmem_download(f->backend, f->out, f->tout->t.data, f->tout->bytes);
  return s;
}

static moe_status_t run_setup(fsetup *f) {
  return run_args(f, &f->args);
}

/*
 * The float64 reference on the dequantized inputs with the library's quantization points:
 * the hidden quantization (the same fp32 rule, so the same codes), GEMM1 + bias + activation in
 * double, the GEMM1 output quantized with the rule applied to its fp32 value, GEMM2 + bias in
 * double rounded to bf16, finalize in double rounded to bf16 (do_finalize 1), or the GEMM2
 * rows (0). Returns the relative L2 of the output against it (every element compared; padding
 * rows of a permuted output are skipped).
 */
static double compare_with_reference(const fsetup *f, long *ulp1, long *worse) {
  const fcase *c = &f->c;
  const int64_t T = c->T, H = c->H, I = c->I, K = c->K;
  const uint16_t *out = f->out;
  double *xd = (double *)t_xmalloc(sizeof(double) * (size_t)H);
  double *y = (double *)t_xmalloc(sizeof(double) * (size_t)I);
  double *a = (double *)t_xmalloc(sizeof(double) * (size_t)I);
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
      for (int64_t b = 0; b < I / BLK; ++b) { /* GEMM1 output quantization point */
        float g[BLK];
        for (int i = 0; i < BLK; ++i) g[i] = (float)y[b * BLK + i];
        ref_fp8_dequantized_group(g, BLK, c->mode == MOE_SCALING_BLOCK ? 0.0f : f->in2,
                                  ref_fp8_quantize, a + b * BLK);
      }
      const double w = bf16_to_f32(f->hp.weights[t * K + k]);
      const int64_t row = f->hp.e2p[t * K + k];
      for (int64_t h = 0; h < H; ++h) {
        double v = 0;
        for (int64_t i = 0; i < I; ++i) v += a[i] * wdq(c->mode, f->q2, f->s2w, H, I, e, h, i);
        if (f->b2) v += f->b2[e * H + h];
        const uint16_t y2 = f32_to_bf16((float)v);
        acc[h] += w * bf16_to_f32(y2);
        if (!c->finalize) {
          const uint16_t got = out[row * H + h];
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
        const uint16_t want = f32_to_bf16((float)acc[h]), got = out[t * H + h];
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
  free(a);
  free(acc);
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

/*
 * Bound on the relative L2 against the float64 reference: 2^-10 (about 1e-3). Why: the
 * reference takes every quantization point with the same rule, so the library differs from it
 * only by (a) fp32 instead of double accumulation (about sqrt(n) * 2^-24 relative, n <= 768
 * here: ~1e-6), (b) the rare elements whose fp32 and double values straddle a rounding
 * boundary of e4m3 (GEMM1 output) or bf16 (GEMM2 output, finalize): at ~1e-6 relative
 * distance a fraction ~1e-5 of the elements, each then off by one e4m3 or bf16 step. Any
 * systematic error is far above the bound: one bf16 ulp on every element is 2^-8 to 2^-9
 * relative; truncating instead of rounding to nearest e4m3, a wrong scale group or a wrong
 * interleave give 1e-2 to 1. Measured values are printed per case.
 */
#define FP8_REF_BOUND 0x1p-10

static const fcase k_cases[] = {
    /* name                        mode                    act                  hfp8 we4 bias
       E   El off K    T    H    I   tile C fin */
    {"block swiglu bf16-in", MOE_SCALING_BLOCK, MOE_ACTIVATION_SWIGLU, 0, 0, 1, 8, 8, 0, 4, 37, 256,
     384, 16, 1, 1},
    {"block swiglu e4m3-in EP", MOE_SCALING_BLOCK, MOE_ACTIVATION_SWIGLU, 1, 1, 0, 16, 5, 3, 6, 64,
     384, 256, 32, 2, 1},
    {"block geglu T=1", MOE_SCALING_BLOCK, MOE_ACTIVATION_GEGLU, 0, 1, 1, 4, 4, 0, 2, 1, 128, 128,
     8, 1, 1},
    {"block relu2 EP permuted", MOE_SCALING_BLOCK, MOE_ACTIVATION_RELU2, 1, 0, 1, 6, 3, 3, 2, 20,
     256, 256, 16, 1, 0},
    {"block identity T=0", MOE_SCALING_BLOCK, MOE_ACTIVATION_IDENTITY, 0, 0, 0, 4, 4, 0, 2, 0, 128,
     256, 8, 1, 1},
    {"block swiglu e4m3-in T=1 EP", MOE_SCALING_BLOCK, MOE_ACTIVATION_SWIGLU, 1, 0, 1, 8, 4, 4, 3,
     1, 256, 128, 8, 1, 1},
    {"tensor swiglu bf16-in", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_SWIGLU, 0, 0, 1, 8, 8, 0, 3,
     29, 256, 256, 16, 1, 1},
    {"tensor swiglu e4m3-in EP", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_SWIGLU, 1, 1, 0, 12, 4, 8,
     4, 33, 128, 384, 32, 1, 1},
    {"tensor relu2 T=1", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_RELU2, 0, 0, 1, 4, 4, 0, 2, 1, 256,
     128, 8, 1, 1},
    {"tensor geglu T=0 EP", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_GEGLU, 1, 0, 0, 8, 4, 4, 2, 0,
     128, 128, 16, 1, 1},
    /* T*K >= 256 E_l: the GPU reads a permuted copy of hidden (bf16 quantized by the permute,
     * or e4m3 copied) instead of gathering its rows */
    {"tensor swiglu bf16-in permute", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_SWIGLU, 0, 0, 1, 4, 4,
     0, 2, 600, 256, 256, 64, 1, 1},
    {"tensor relu2 e4m3-in permute", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_RELU2, 1, 1, 0, 6, 3, 3,
     2, 520, 128, 256, 64, 1, 0},
    {"tensor identity permuted", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_IDENTITY, 1, 1, 1, 8, 8, 0,
     2, 16, 256, 256, 16, 2, 0},
    {"tensor geglu e4m3-in", MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_GEGLU, 1, 0, 1, 6, 6, 0, 2, 24,
     128, 256, 64, 1, 1},
};
#define NUM_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

/* The output rows the plan defines (all T rows, or the permuted rows of slots). */
static t_out_rows out_rows(const fsetup *f) {
  return (t_out_rows){f->c.finalize ? f->c.T : f->plan.max_padded_rows, f->c.H,
                      f->c.finalize ? NULL : f->hp.p2t, f->hp.permuted_size};
}

static uint64_t output_digest(const fsetup *f) {
  const t_out_rows d = out_rows(f);
  return t_output_digest(f->out, &d);
}

static void test_forward(void) {
  for (int i = 0; i < NUM_CASES; ++i) {
    fsetup f;
    if (setup_case(&k_cases[i], MOE_BACKEND_CPU, 2, 1000 + (uint64_t)i, &f)) {
      if (!CHECK_OK(run_setup(&f))) {
        long ulp1 = 0, worse = 0, local = 0;
        const double rel = compare_with_reference(&f, &ulp1, &worse);
        for (int64_t x = 0; x < f.hp.tk; ++x) local += f.hp.e2p[x] >= 0;
        printf(
            "forward %-28s T=%-3lld local slots %-4ld rel L2 vs float64 %.3e (bound %.1e); "
            "bf16 off by 1 ulp: %ld, by more: %ld; digest %016llx\n",
            k_cases[i].name, (long long)k_cases[i].T, local, rel, FP8_REF_BOUND, ulp1, worse,
            (unsigned long long)output_digest(&f));
        CHECK(k_cases[i].T == 0 || local > 0, "%s: no local slot, the case tests nothing",
              k_cases[i].name);
        CHECK(rel <= FP8_REF_BOUND, "%s: relative L2 %.3e > %.1e", k_cases[i].name, rel,
              FP8_REF_BOUND);
      }
    }
    setup_free(&f);
  }
}

/* Relative L2 of a against b over the output rows the plan defines; counts non-finite a. */
static double rel_defined(const fsetup *f, const uint16_t *a, const uint16_t *b, long *nonfinite) {
  const t_out_rows d = out_rows(f);
  return t_rel_err_defined(a, b, &d, nonfinite);
}

/*
 * The CUDA backend on the same cases (same seeds, so the same inputs and plan): GPU against CPU
 * <= 1e-2 relative L2 per case (DESIGN: the GPU bound per dtype), GPU against the float64
 * reference reported and bounded by the same 1e-2, every defined output element written and
 * finite, and two GPU runs bitwise equal; every valid config of the catalogue on every case.
 * Skips without a device; a mode whose CUDA kernels are not in the build (moe_runner_run answers
 * NOT_SUPPORTED) is reported as skipped.
 */
#define FP8_GPU_BOUND 1e-2
static double g_worst_gpu; /* largest GPU-vs-CPU error of the current case's configs */

/* One case on the GPU with config `cfg` against the CPU with the same plan tile. Returns the
 * run status of the GPU (NOT_SUPPORTED: this build has no kernel for the case's mode). */
static moe_status_t forward_gpu_case(const fcase *kc, int32_t cfg, uint64_t seed) {
  fsetup g, c;
  moe_status_t s = MOE_STATUS_INTERNAL;
  g_force_cfg = cfg;
  const int ok_g = setup_case(kc, MOE_BACKEND_CUDA, 0, seed, &g);
  g_force_cfg = -1;
  fcase kcpu = *kc;
  if (ok_g) { /* the CPU builds the same plan: the GPU config's tile and cluster */
    moe_config_info info;
    memset(&info, 0, sizeof info);
    info.version = MOE_CONFIG_INFO_VERSION;
    CHECK_OK(moe_runner_describe_config(g.r, g.cfg, &info));
    kcpu.tile = info.tile;
    kcpu.cluster = info.cluster_size;
  }
  if (ok_g && setup_case(&kcpu, MOE_BACKEND_CPU, 2, seed, &c)) {
    s = run_setup(&g);
    if (s != MOE_STATUS_NOT_SUPPORTED) {
      CHECK(s == MOE_STATUS_SUCCESS, "%s config %d on the GPU -> %d: %s", kc->name, g.cfg, (int)s,
            moe_get_last_error());
    }
    if (s == MOE_STATUS_SUCCESS && !CHECK_OK(run_setup(&c))) {
      long nonfinite = 0, ulp1 = 0, worse = 0;
      const double vs_cpu = rel_defined(&g, g.out, c.out, &nonfinite);
      const uint64_t first = output_digest(&g);
      const double vs_ref = compare_with_reference(&g, &ulp1, &worse);
      if (vs_cpu > g_worst_gpu) g_worst_gpu = vs_cpu;
      CHECK(vs_cpu <= FP8_GPU_BOUND && vs_ref <= FP8_GPU_BOUND && nonfinite == 0,
            "%s config %d: GPU vs CPU %.3e, vs float64 %.3e, %ld non-finite", kc->name, g.cfg,
            vs_cpu, vs_ref, nonfinite);
      CHECK_OK(run_setup(&g));
      CHECK(output_digest(&g) == first, "%s config %d: two GPU runs differ bitwise", kc->name,
            g.cfg);
    }
  }
  setup_free(&g);
  if (ok_g) setup_free(&c);
  return s;
}

/* Whether the GPU cases run config @p cfg of @p kc's catalogue (MOE_TEST_GPU_CONFIGS: common.h). */
static int config_named(const fcase *kc, int32_t cfg) {
  moe_runner *r = t_fp8_runner(MOE_BACKEND_CUDA, kc->mode, kc->act, 0);
  const int selected = r && t_gpu_config_selected(r, cfg);
  moe_runner_destroy(r);
  return selected;
}

static void test_forward_gpu(void) {
  if (!t_have_cuda()) {
    printf("forward on the GPU: skipped (no CUDA device, or a CPU-only build)\n");
    return;
  }
  moe_runner *catalogues[2] = {
      t_fp8_runner(MOE_BACKEND_CUDA, MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_SWIGLU, 0),
      t_fp8_runner(MOE_BACKEND_CUDA, MOE_SCALING_BLOCK, MOE_ACTIVATION_SWIGLU, 0)};
  t_check_gpu_config_names(catalogues, 2);
  moe_runner_destroy(catalogues[0]);
  moe_runner_destroy(catalogues[1]);
  for (int i = 0; i < NUM_CASES; ++i) {
    const fcase *kc = &k_cases[i];
    const uint64_t seed = 1000 + (uint64_t)i;
    /* every config of the GPU catalogue that is valid for the case */
    moe_runner *r = t_fp8_runner(MOE_BACKEND_CUDA, kc->mode, kc->act, 0);
    if (!r) continue;
    moe_problem p;
    t_problem(&p, kc->E, kc->T, kc->K, kc->off, kc->El, kc->H, kc->I);
    int32_t cfgs[64], n = 0;
    CHECK_OK(moe_runner_get_valid_configs(r, &p, cfgs, 64, &n));
    moe_runner_destroy(r);
    int ran = 0;
    g_worst_gpu = 0;
    for (int32_t j = 0; j < n && j < 64; ++j) {
      if (!config_named(kc, cfgs[j])) continue;
      const moe_status_t s = forward_gpu_case(kc, cfgs[j], seed);
      if (s == MOE_STATUS_NOT_SUPPORTED) {
        printf("forward GPU %-30s skipped: %s\n", kc->name, moe_get_last_error());
        break;
      }
      ++ran;
    }
    if (ran)
      printf("forward GPU %-30s T=%-3lld %d configs, worst rel L2 vs CPU %.3e (bound %.0e)\n",
             kc->name, (long long)kc->T, ran, g_worst_gpu, FP8_GPU_BOUND);
  }
}

/* ---- 4. bitwise determinism: run to run and across thread counts ---------------------------- */

static void test_determinism(void) {
  const int picks[3] = {0, 3, 6};
  for (int i = 0; i < 3; ++i) {
    const fcase *c = &k_cases[picks[i]];
    uint16_t *first = NULL;
    size_t bytes = 0;
    const int32_t threads[3] = {1, 4, 4};
    for (int run = 0; run < 3; ++run) {
      fsetup f;
      if (setup_case(c, MOE_BACKEND_CPU, threads[run], 77, &f) && !CHECK_OK(run_setup(&f))) {
        const uint16_t *o = f.out;
        /* permuted outputs: compare only the rows the plan defines */
        uint16_t *copy = (uint16_t *)t_xmalloc(f.tout->bytes);
        memcpy(copy, o, f.tout->bytes);
        if (!c->finalize)
          for (int64_t r = 0; r < f.plan.max_padded_rows; ++r)
            if (r >= f.hp.permuted_size || f.hp.p2t[r] < 0)
              memset(copy + r * c->H, 0, (size_t)c->H * 2);
        if (!first) {
          first = copy;
          bytes = f.tout->bytes;
        } else {
          CHECK(bytes == f.tout->bytes && memcmp(first, copy, bytes) == 0,
                "%s: run %d (%d threads) differs bitwise from run 0 (1 thread)", c->name, run,
                threads[run]);
          free(copy);
        }
      }
      setup_free(&f);
    }
    free(first);
  }
}

/* ---- 5. misuse: a clear error, and nothing written ------------------------------------------ */

#define IA MOE_STATUS_INVALID_ARGUMENT
#define NS MOE_STATUS_NOT_SUPPORTED

/* Whether all @p n bytes at @p p are still @p poison (a failed call wrote nothing there). */
static int still_poisoned(const void *p, size_t n, uint8_t poison) {
  const uint8_t *b = (const uint8_t *)p;
  size_t i = 0;
  while (i < n && b[i] == poison) ++i;
  return i == n;
}

/* Run with modified args; the poisoned output must stay poisoned. */
static void expect_run_error(fsetup *f, const moe_run_args *a, moe_status_t st, const char *needle,
                             const char *what) {
  memset(f->tout->t.data, 0xFF, f->tout->bytes);
  const moe_status_t s =
      moe_runner_run(f->r, &f->p, a, f->cfg, &f->plan, f->ws.ptr, f->ws.bytes, NULL);
  CHECK(s == st, "%s -> %d, expected %d (%s)", what, (int)s, (int)st, moe_get_last_error());
  CHECK(strstr(moe_get_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
        moe_get_last_error(), needle);
  CHECK(still_poisoned(f->tout->t.data, f->tout->bytes, 0xFF), "%s: output written on failure",
        what);
}

static void test_run_misuse(void) {
  fsetup f;
  /* PER_TENSOR, e4m3 hidden */
  if (setup_case(&k_cases[7], MOE_BACKEND_CPU, 2, 5, &f)) {
    const int64_t T = f.c.T, H = f.c.H;
    moe_run_args a = f.args;
    a.gemm1_input_scale = NULL;
    expect_run_error(&f, &a, IA, "gemm1_input_scale", "PER_TENSOR without gemm1_input_scale");
    a = f.args;
    a.gemm2_input_scale = NULL;
    expect_run_error(&f, &a, IA, "gemm2_input_scale", "PER_TENSOR without gemm2_input_scale");
    float two[2] = {1.0f, 1.0f};
    ttensor *s2 = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){2}, two);
    a = f.args;
    a.gemm1_input_scale = &s2->t;
    expect_run_error(&f, &a, IA, "shape", "gemm1_input_scale of shape [2]");
    uint16_t one_bf16 = 0x3F80;
    ttensor *sb = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 1, (int64_t[]){1}, &one_bf16);
    a = f.args;
    a.gemm2_input_scale = &sb->t;
    expect_run_error(&f, &a, IA, "dtype", "bf16 gemm2_input_scale");
    ttensor *hs = tt_from_host(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){T, H / BLK}, f.xs);
    a = f.args;
    a.hidden_states_scale = &hs->t;
    expect_run_error(&f, &a, IA, "hidden_states_scale", "PER_TENSOR with hidden_states_scale");
    ttensor *e5 = tt_from_host(MOE_BACKEND_CPU, DT_E5M2, 2, (int64_t[]){T, H}, f.xq);
    a = f.args;
    a.hidden_states = &e5->t;
    expect_run_error(&f, &a, IA, "float8_e4m3fn", "e5m2 hidden states");
    a = f.args;
    a.version = 1; /* a version-1 struct has no scales */
    expect_run_error(&f, &a, IA, "version 2", "version-1 run args on a PER_TENSOR runner");
    tt_free(s2);
    tt_free(sb);
    tt_free(hs);
    tt_free(e5);
  }
  setup_free(&f);
  /* BLOCK, e4m3 hidden */
  if (setup_case(&k_cases[1], MOE_BACKEND_CPU, 2, 6, &f)) {
    const int64_t T = f.c.T, H = f.c.H;
    moe_run_args a = f.args;
    a.hidden_states_scale = NULL;
    expect_run_error(&f, &a, IA, "hidden_states_scale", "e4m3 hidden without scales");
    float *big = (float *)t_xmalloc(sizeof(float) * (size_t)(T * (H / BLK + 1)));
    memset(big, 0, sizeof(float) * (size_t)(T * (H / BLK + 1)));
    ttensor *hs = tt_from_host(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){T, H / BLK + 1}, big);
    a = f.args;
    a.hidden_states_scale = &hs->t;
    expect_run_error(&f, &a, IA, "shape", "hidden_states_scale [T, H/128 + 1]");
    ttensor *hb = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H / BLK}, big);
    a = f.args;
    a.hidden_states_scale = &hb->t;
    expect_run_error(&f, &a, IA, "dtype", "bf16 hidden_states_scale");
    float one = 1.0f;
    ttensor *s1 = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){1}, &one);
    a = f.args;
    a.gemm1_input_scale = &s1->t;
    expect_run_error(&f, &a, IA, "gemm1_input_scale", "BLOCK with gemm1_input_scale");
    ttensor *x16 = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H}, f.x);
    a = f.args;
    a.hidden_states = &x16->t; /* bf16 hidden with a (now meaningless) scale tensor */
    expect_run_error(&f, &a, IA, "hidden_states_scale", "bf16 hidden with hidden_states_scale");
    free(big);
    tt_free(hs);
    tt_free(hb);
    tt_free(s1);
    tt_free(x16);
  }
  setup_free(&f);
}

/* A version-1 run-args struct (no scale fields) serves a BLOCK run on bf16 hidden states, with
 * the bits of version 2; the library reads nothing past its 120 bytes. */
static void test_run_args_v1(void) {
  fsetup f;
  if (setup_case(&k_cases[0], MOE_BACKEND_CPU, 2, 8, &f) && !CHECK_OK(run_setup(&f))) {
    const uint64_t want = output_digest(&f);
    moe_run_args v1;
    memset(&v1, 0x7F, sizeof v1); /* read as pointers, the version-2 fields would be garbage */
    memcpy(&v1, &f.args, offsetof(moe_run_args, hidden_states_scale));
    v1.version = 1;
    CHECK_OK(run_args(&f, &v1));
    CHECK(output_digest(&f) == want, "version-1 run args: output differs from version 2");
  }
  setup_free(&f);
}

static void test_prepare_and_option_misuse(void) {
  moe_runner *r = t_fp8_runner(MOE_BACKEND_CPU, MOE_SCALING_BLOCK, MOE_ACTIVATION_SWIGLU, 1);
  moe_runner *rt = t_fp8_runner(MOE_BACKEND_CPU, MOE_SCALING_PER_TENSOR, MOE_ACTIVATION_SWIGLU, 1);
  moe_runner *rb = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU);
  if (!r || !rt || !rb) return;
  moe_problem p;
  t_problem(&p, 4, 3, 2, 0, 2, 128, 128);
  size_t bytes = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &bytes));
  uint8_t *codes = (uint8_t *)t_xmalloc(2 * 128 * 128 * 2);
  memset(codes, 0x38, 2 * 128 * 128 * 2);
  float sc[2] = {1.0f, 2.0f};
  ttensor *q = tt_from_host(MOE_BACKEND_CPU, DT_E4M3, 3, (int64_t[]){2, 128, 128}, codes);
  ttensor *q5 = tt_from_host(MOE_BACKEND_CPU, DT_E5M2, 3, (int64_t[]){2, 128, 128}, codes);
  ttensor *w16 = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){2, 128, 128}, codes);
  ttensor *sblk = tt_from_host(MOE_BACKEND_CPU, DT_F32, 3, (int64_t[]){2, 1, 1}, sc);
  ttensor *sbad = tt_from_host(MOE_BACKEND_CPU, DT_F32, 3, (int64_t[]){2, 1, 2}, codes);
  ttensor *s16 = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){2, 1, 1}, codes);
  ttensor *sten = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){2}, sc);
  ttensor *prep = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes});
  const int W2 = MOE_WEIGHTS_GEMM2;
#define PREP_BAD(runner, canon, scales, st, needle)                                            \
  do {                                                                                         \
    memset(prep->t.data, 0xEE, prep->bytes);                                                   \
    EXPECT_ERR(moe_weights_prepare_scaled(runner, &p, W2, canon, scales, &prep->t, NULL), st,  \
               needle);                                                                        \
    CHECK(still_poisoned(prep->t.data, prep->bytes, 0xEE), "prepared written on failure (%s)", \
          needle);                                                                             \
  } while (0)
  PREP_BAD(r, &q->t, NULL, IA, "canonical_scales");        /* e4m3 without scales */
  PREP_BAD(r, &q5->t, &sblk->t, IA, "canonical");          /* e5m2 */
  PREP_BAD(r, &q5->t, NULL, IA, "canonical");              /* e5m2, no scales */
  PREP_BAD(r, &q->t, &sbad->t, IA, "shape");               /* misshaped block scales */
  PREP_BAD(r, &q->t, &s16->t, IA, "dtype");                /* bf16 scales */
  PREP_BAD(r, &q->t, &sten->t, IA, "dimensions");          /* per-tensor scales in BLOCK mode */
  PREP_BAD(rt, &q->t, &sblk->t, IA, "dimensions");         /* block scales in PER_TENSOR mode */
  PREP_BAD(r, &w16->t, &sblk->t, IA, "canonical");         /* bf16 weights with scales */
  PREP_BAD(rb, &w16->t, &sblk->t, IA, "canonical_scales"); /* a BF16 runner takes no scales */
  CHECK_OK(moe_weights_prepare_scaled(rt, &p, W2, &q->t, &sten->t, &prep->t, NULL));
  CHECK_OK(moe_weights_prepare_scaled(r, &p, W2, &q->t, &sblk->t, &prep->t, NULL));
  { /* in place (prepared over the canonical values, or over the scales): refused */
    DLTensor over = prep->t;
    over.data = q->t.data;
    over.byte_offset = q->t.byte_offset;
    EXPECT_ERR(moe_weights_prepare_scaled(r, &p, W2, &q->t, &sblk->t, &over, NULL), IA,
               "disjoint from canonical");
    over.data = sblk->t.data;
    over.byte_offset = sblk->t.byte_offset;
    EXPECT_ERR(moe_weights_prepare_scaled(r, &p, W2, &q->t, &sblk->t, &over, NULL), IA,
               "in-place preparation is not supported");
  }
  /* H or I not a multiple of 128 */
  moe_problem bad = p;
  bad.hidden_size = 192;
  EXPECT_ERR(moe_weights_prepared_size(r, &bad, W2, &bytes), NS, "hidden_size");
  bad = p;
  bad.intermediate_size = 200;
  EXPECT_ERR(moe_weights_prepared_size(rt, &bad, MOE_WEIGHTS_GEMM1, &bytes), NS,
             "intermediate_size");
  CHECK_OK(moe_weights_prepared_size(rb, &bad, MOE_WEIGHTS_GEMM2, &bytes)); /* BF16: fine */
  { /* and in the config queries: no config is listed for such a problem (listing agrees with
     * what prepare and run accept), and a config index for it is refused with the reason */
    moe_problem p192;
    t_problem(&p192, 4, 3, 2, 0, 0, 192, 128);
    int32_t cfg = -1, n = -1, cfgs[64];
    size_t ws_bytes = 0;
    EXPECT_ERR(moe_runner_get_default_config(r, &p192, &cfg), NS, "multiples of 128");
    EXPECT_ERR(moe_runner_get_valid_configs(r, &p192, cfgs, 64, &n), NS, "multiples of 128");
    CHECK(n == 0, "FP8, H = 192: %d configs listed", n);
    EXPECT_ERR(moe_runner_get_workspace_size(r, &p192, 0, &ws_bytes), MOE_STATUS_INVALID_CONFIG,
               "multiples of 128");
    CHECK_OK(moe_runner_get_default_config(rb, &p192, &cfg)); /* BF16: fine */
  }
#undef PREP_BAD
  tt_free(q);
  tt_free(q5);
  tt_free(w16);
  tt_free(sblk);
  tt_free(sbad);
  tt_free(s16);
  tt_free(sten);
  tt_free(prep);
  free(codes);
  moe_runner_destroy(r);
  moe_runner_destroy(rt);
  moe_runner_destroy(rb);

  /* options */
  moe_runner_options o;
  moe_runner *x = NULL;
#define OPT_BAD(act_dt, w_dt, mode, st, needle)                      \
  do {                                                               \
    moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);         \
    o.backend = MOE_BACKEND_CPU;                                     \
    o.activation_dtype = act_dt;                                     \
    o.weight_dtype = w_dt;                                           \
    o.scaling_mode = mode;                                           \
    x = (moe_runner *)&x;                                            \
    EXPECT_ERR(moe_runner_create(&o, &x), st, needle);               \
    CHECK(x == NULL, "failed create leaves *out NULL (%s)", needle); \
  } while (0)
  OPT_BAD(1, 0, MOE_SCALING_BLOCK, IA, "weight_dtype");      /* FP8 acts, BF16 weights */
  OPT_BAD(0, 1, MOE_SCALING_BLOCK, NS, "W8A16");             /* BF16 acts, FP8 weights */
  OPT_BAD(1, 1, MOE_SCALING_NONE, IA, "scaling_mode");       /* FP8 without a mode */
  OPT_BAD(0, 0, MOE_SCALING_PER_TENSOR, IA, "scaling_mode"); /* BF16 with a mode */
  OPT_BAD(1, 1, 3, IA, "scaling_mode");                      /* MX scales on FP8 weights */
  OPT_BAD(1, 1, 4, IA, "scaling_mode");
  OPT_BAD(1, 3, MOE_SCALING_BLOCK, IA, "weight_dtype");
#undef OPT_BAD
  /* A version-1 options struct has no scaling_mode: FP8 dtypes in it are rejected, and a
   * version-1 BF16 struct still works (nothing past its 64 bytes is read). */
  struct {
    moe_runner_options o;
    int32_t guard;
  } v1;
  memset(&v1, 0x7F, sizeof v1); /* bytes past version 1 would read as a bad scaling_mode */
  CHECK_OK(moe_runner_options_init(&v1.o, 1));
  v1.o.backend = MOE_BACKEND_CPU;
  x = NULL;
  CHECK_OK(moe_runner_create(&v1.o, &x));
  moe_runner_destroy(x);
  v1.o.activation_dtype = v1.o.weight_dtype = MOE_DTYPE_FP8_E4M3;
  EXPECT_ERR(moe_runner_create(&v1.o, &x), IA, "scaling_mode");

  /* CUDA catalogue without a GPU (sm_version 90): FP8 runner, sizes and configs work, the
   * configs are the block catalogue's; run gets past the backend check to the plan check. */
  moe_runner *rc = t_fp8_runner(MOE_BACKEND_CUDA, MOE_SCALING_BLOCK, MOE_ACTIVATION_SWIGLU, 0);
  if (rc) {
    CHECK_OK(moe_weights_prepared_size(rc, &p, MOE_WEIGHTS_GEMM1, &bytes));
    CHECK(bytes == 2 * 256 * 128 + 4 * 2 * 2 * 1, "CUDA FP8 W1 prepared size %zu", bytes);
    int32_t n = 0;
    CHECK_OK(moe_runner_get_valid_configs(rc, &p, NULL, 0, &n));
    moe_run_args a;
    moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
    moe_plan pl;
    moe_plan_init(&pl, MOE_PLAN_VERSION);
    CHECK(n > 0, "CUDA block FP8 runner lists no config");
    moe_config_info info;
    memset(&info, 0, sizeof info);
    CHECK_OK(moe_runner_describe_config(rc, 0, &info));
    CHECK(strncmp(info.name, "sm90_fp8blk_", 12) == 0, "CUDA block FP8 config 0 is %s", info.name);
    EXPECT_ERR(moe_runner_run(rc, &p, &a, 0, &pl, NULL, 0, NULL), IA, "plan");
    moe_runner_destroy(rc);
  }
}

int main(void) {
  test_decode_all_codes();
  test_encode();
  test_scale_rule();
  test_prepare();
  test_prepare_gpu();
  test_forward();
  test_forward_gpu();
  test_determinism();
  test_run_misuse();
  test_run_args_v1();
  test_prepare_and_option_misuse();
  return tc_summary("test_fp8");
}
