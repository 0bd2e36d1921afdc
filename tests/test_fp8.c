/*
 * test_fp8.c - the FP8 path (docs/formats.md, "FP8"):
 *   1. the shared e4m3fn conversion (kernels/fp8_math.h): all 256 codes decode; encode against
 *      the slow reference of fp8_ref.h over every float whose low 16 bits take a set of
 *      patterns (all ties and rounding positions of e4m3 lie in the upper 16 bits), explicit
 *      ties, subnormals, saturation, inf and NaN; the group scale rule.
 */
#include <math.h>
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

int main(void) {
  test_decode_all_codes();
  test_encode();
  test_scale_rule();
  return tc_summary("test_fp8");
}
