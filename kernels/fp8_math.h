/*
 * fp8_math.h - float32 <-> e4m3fn conversion and the FP8 quantization rule, shared bit for bit
 * by the CPU backend (C11, gcc) and the CUDA kernels (nvcc, host and device).
 *
 * Why this exists: every quantization point of the FP8 path (hidden states, GEMM1's output,
 * weights prepared from bf16) must give the same e4m3 codes and fp32 scales on both backends,
 * so the CPU reference reproduces what the GPU quantized (docs/formats.md, "FP8"). The
 * conversion is written with integer operations only (no rounding-mode or FMA dependence), the
 * scale is one correctly rounded fp32 division (MOE_FDIV: __fdiv_rn on the device; a plain '/'
 * on the host, where core/ builds with -ffp-contract=off), and nothing is flushed to zero.
 *
 * e4m3fn (DLPack kDLFloat8_e4m3fn, OCP FP8 E4M3): 1 sign bit, 4 exponent bits (bias 7), 3
 * mantissa bits; no infinities; S.1111.111 (0x7F, 0xFF) is NaN; largest finite 0x7E = 448;
 * smallest normal 2^-6; subnormals m * 2^-9, m = 1..7.
 */
#ifndef MOE_FP8_MATH_H_
#define MOE_FP8_MATH_H_

#include <stdint.h>

#include "moe_math.h"

#define MOE_E4M3_MAX 448.0f /* largest finite e4m3fn value */
#define MOE_E4M3_NAN 0x7Fu  /* the NaN code this library writes */
#define MOE_FP8_BLOCK 128   /* edge of a block-scale group (weights 128x128, activations 1x128) */

/*
 * e4m3fn code -> float (exact: every e4m3 value is a float). Both NaN codes decode to the
 * positive quiet NaN 0x7FC00000 (the sign of a NaN is not kept, as in moe_f32_to_bf16).
 */
MOE_HD float moe_e4m3_to_f32(uint8_t q) {
  const uint32_t sign = (uint32_t)(q & 0x80u) << 24;
  const uint32_t e = (q >> 3) & 15u, m = q & 7u;
  if (e == 15u && m == 7u) return moe_bits_f32(0x7FC00000u);
  if (e == 0u) { /* zero or subnormal: m * 2^-9, exact in float */
    const float v = MOE_FMUL((float)m, 0.001953125f);
    return moe_bits_f32(moe_f32_bits(v) | sign);
  }
  return moe_bits_f32(sign | ((e + 120u) << 23) | (m << 20)); /* 2^(e-7) * (1 + m/8) */
}

/*
 * float -> e4m3fn code: round to nearest, ties to even, saturating (the rounding of PTX
 * cvt.rn.satfinite.e4m3x2.f32):
 *   NaN                    -> 0x7F (positive NaN code, whatever the input's sign)
 *   |x| >= 448, +-inf      -> +-448 (0x7E / 0xFE): never a NaN for a number
 *   2^-6 <= |x| < 448      -> nearest normal (3 mantissa bits), ties to even mantissa
 *   |x| < 2^-6             -> nearest multiple of 2^-9, ties to even (2^-10 -> 0; a result
 *                             of 8 * 2^-9 is the smallest normal 0x08)
 * The sign is kept, also for results that round to zero (-0.0 and tiny negatives -> 0x80).
 */
MOE_HD uint8_t moe_f32_to_e4m3(float x) {
  const uint32_t u = moe_f32_bits(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return (uint8_t)MOE_E4M3_NAN;
  if (a >= 0x43E00000u) return (uint8_t)(sign | 0x7Eu); /* >= 448 = 1.75 * 2^8 */
  if (a >= 0x3C800000u) {                               /* >= 2^-6: normal */
    /* Round the 23-bit mantissa to 3 bits (ties to even); a carry moves into the exponent,
     * which stays <= 448 because a < 448. Then rebias the exponent from 127 to 7. */
    const uint32_t r = (a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20;
    return (uint8_t)(sign | (r - (120u << 3)));
  }
  const uint32_t ef = a >> 23;        /* float exponent field, <= 120 here */
  if (ef == 0u) return (uint8_t)sign; /* zero or float subnormal (< 2^-126): rounds to 0 */
  /* |x| = M * 2^(ef-150) with M = 1.mantissa as a 24-bit integer; the code is
   * n = round_even(|x| * 2^9) = round_even(M / 2^shift), shift = 141 - ef >= 21. */
  const uint32_t shift = 141u - ef;
  if (shift > 24u) return (uint8_t)sign; /* |x| < 2^-10 (half the smallest subnormal) */
  const uint32_t M = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t n = (M + (1u << (shift - 1u)) - 1u + ((M >> shift) & 1u)) >> shift;
  return (uint8_t)(sign | n);
}

/* The amax step of a quantization group: max of |x| over the group's finite elements (NaN and
 * +-inf do not count, so one of them cannot turn the group's scale into inf or NaN). */
MOE_HD float moe_fp8_amax_step(float amax, float x) {
  const float ax = moe_bits_f32(moe_f32_bits(x) & 0x7FFFFFFFu);
  return (ax <= 3.40282346638528859812e+38f && ax > amax) ? ax : amax;
}

/* Scale of a group from its amax: s = amax / 448 (one fp32 division, round to nearest even);
 * s = 1 when that is 0 (an all-zero group, or amax below 448 * 2^-150), so every finite
 * element of such a group quantizes to +-0 and the scale never divides by zero. */
MOE_HD float moe_fp8_scale(float amax) {
  const float s = MOE_FDIV(amax, MOE_E4M3_MAX);
  return s > 0.0f ? s : 1.0f;
}

/* q = e4m3(x / s): one fp32 division (round to nearest even), then moe_f32_to_e4m3. */
MOE_HD uint8_t moe_fp8_quantize(float x, float s) {
  return moe_f32_to_e4m3(MOE_FDIV(x, s));
}

/* Dequantized value q * s as one fp32 multiplication (round to nearest even). */
MOE_HD float moe_fp8_dequantize(uint8_t q, float s) {
  return MOE_FMUL(moe_e4m3_to_f32(q), s);
}

#endif /* MOE_FP8_MATH_H_ */
