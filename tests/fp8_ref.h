/*
 * fp8_ref.h - the test's own, slow e4m3fn reference (independent of kernels/fp8_math.h): the
 * value of every code from its definition, and float -> code by a nearest-value search over
 * the 127 non-negative finite values in double, ties to the even code, saturating at 448.
 * test_fp8.c checks the library's conversion against it and builds its forward reference
 * with it. The quantization points of a forward reference (weights, groups of activations)
 * take the float -> code step as an argument: ref_fp8_quantize here, or moe_fp8_quantize
 * (kernels/fp8_math.h, checked against it by test_fp8.c) where billions of weights make the
 * search too slow (test_large_t.c).
 */
#ifndef MOE_TEST_FP8_REF_H_
#define MOE_TEST_FP8_REF_H_

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define REF_FP8_BLOCK 128 /* edge of a block-scale group (weights 128x128, activations 1x128) */

/* Value of a code by the OCP E4M3 definition; NaN for S.1111.111. */
static inline double ref_e4m3_value(uint8_t q) {
  const int s = q >> 7, e = (q >> 3) & 15, m = q & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? ldexp((double)m, -9) : ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

/* Round |v| (finite, >= 0, in double) to the nearest code 0x00..0x7E, ties to even code. */
static inline uint8_t ref_e4m3_magnitude(double v) {
  if (v >= 448.0) return 0x7E;
  int lo = 0, hi = 0x7E; /* largest code with value <= v: binary search (values ascend) */
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (ref_e4m3_value((uint8_t)mid) <= v)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == 0x7E) return 0x7E;
  const double below = ref_e4m3_value((uint8_t)lo), above = ref_e4m3_value((uint8_t)(lo + 1));
  const double dl = v - below, du = above - v; /* exact: both are short binary fractions */
  if (dl < du) return (uint8_t)lo;
  if (du < dl) return (uint8_t)(lo + 1);
  return (uint8_t)((lo & 1) ? lo + 1 : lo);
}

/* float -> code: NaN -> 0x7F, sign kept (also on zero), saturating. */
static inline uint8_t ref_f32_to_e4m3(float x) {
  if (isnan(x)) return 0x7F;
  uint32_t u;
  memcpy(&u, &x, 4);
  const uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
  return (uint8_t)(sign | ref_e4m3_magnitude(fabs((double)x)));
}

/* The documented rule (docs/formats.md), written independently: amax over the finite
 * elements, s = fl32(amax / 448), 1 if that is 0; q = e4m3(fl32(x / s)). */
static inline float ref_fp8_scale_of(const float *x, int64_t n, int64_t stride) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = fabsf(x[i * stride]);
    if (isfinite(a) && a > amax) amax = a;
  }
  const float s = amax / 448.0f;
  return s > 0.0f ? s : 1.0f;
}

static inline uint8_t ref_fp8_quantize(float x, float s) {
  const volatile float q = x / s; /* one rounded fp32 division */
  return ref_f32_to_e4m3(q);
}

/* A float -> e4m3 quantizer q = e4m3(fl32(x / s)): ref_fp8_quantize or moe_fp8_quantize. */
typedef uint8_t (*ref_fp8_quantize_fn)(float x, float s);

/* Quantize canonical bf16 weights [El, R, C] by the rule: codes [El, R, C] in canonical order
 * and scales [El, R/128, C/128] (BLOCK, one per 128x128 block) or [El] (PER_TENSOR, one per
 * expert). */
static inline void ref_fp8_quantize_weights(int mode, const uint16_t *w, int64_t El, int64_t R,
                                            int64_t C, ref_fp8_quantize_fn quantize, uint8_t *q,
                                            float *s) {
  const int64_t B = REF_FP8_BLOCK;
  float *g =
      (float *)t_xmalloc(sizeof(float) * (size_t)(mode == MOE_SCALING_BLOCK ? B * B : R * C));
  for (int64_t e = 0; e < El; ++e) {
    const uint16_t *we = w + e * R * C;
    if (mode != MOE_SCALING_BLOCK) {
      for (int64_t i = 0; i < R * C; ++i) g[i] = bf16_to_f32(we[i]);
      s[e] = ref_fp8_scale_of(g, R * C, 1);
      for (int64_t i = 0; i < R * C; ++i) q[e * R * C + i] = quantize(g[i], s[e]);
      continue;
    }
    for (int64_t i = 0; i < R / B; ++i)
      for (int64_t j = 0; j < C / B; ++j) {
        int64_t n = 0;
        for (int64_t r = i * B; r < (i + 1) * B; ++r)
          for (int64_t c = j * B; c < (j + 1) * B; ++c) g[n++] = bf16_to_f32(we[r * C + c]);
        const float sc = ref_fp8_scale_of(g, n, 1);
        s[(e * (R / B) + i) * (C / B) + j] = sc;
        n = 0;
        for (int64_t r = i * B; r < (i + 1) * B; ++r)
          for (int64_t c = j * B; c < (j + 1) * B; ++c)
            q[(e * R + r) * C + c] = quantize(g[n++], sc);
      }
  }
  free(g);
}

/* One activation quantization point, dequantized: out[i] = decode(q[i]) * s (exact in double)
 * with q = quantize(g[i], s), s the rule's scale of the n values (dynamic: BLOCK, one group per
 * 128 values) or @p s_static (> 0: PER_TENSOR's gemm1_input_scale or gemm2_input_scale). */
static inline void ref_fp8_dequantized_group(const float *g, int64_t n, float s_static,
                                             ref_fp8_quantize_fn quantize, double *out) {
  const float s = s_static > 0.0f ? s_static : ref_fp8_scale_of(g, n, 1);
  for (int64_t i = 0; i < n; ++i) out[i] = ref_e4m3_value(quantize(g[i], s)) * s;
}

#endif /* MOE_TEST_FP8_REF_H_ */
