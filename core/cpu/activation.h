/*
 * activation.h - the GEMM1 epilogue activations of the CPU backend (docs/formats.md).
 * Inputs are the fp32 accumulators with the bias already added; the result is rounded to
 * bf16 by the caller. Sigmoid is moe_sigmoidf and erf is moe_cpu_erff below: no libm
 * transcendental, so outputs (and the conformance digests) are the same on every libc.
 */
#ifndef MOE_CPU_ACTIVATION_H_
#define MOE_CPU_ACTIVATION_H_

#include "moe_trtllm.h"

#include "cpu_internal.h"

/*
 * erf(x) for float x, portable and deterministic: the Maclaurin series
 *   erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
 * summed in double (IEEE +, -, *, / only; terms until one is below 1e-17), then rounded to
 * float once. |x| >= 4 gives +-1 (erfc(4) = 1.5e-8 is below half an ulp of 1.0f). Measured
 * against double erf over [0, 6]: at most 0.5 ulp off (glibc 2.36 erff: about 1 ulp, and
 * libm versions differ, which is why libm is not used). Cost: ~10-40 terms.
 */
static inline float moe_cpu_erff(float xf) {
  if (xf != xf) return xf;
  const double x = xf, ax = x < 0 ? -x : x;
  if (ax >= 4.0) return x > 0 ? 1.0f : -1.0f;
  const double x2 = x * x;
  double term = x, sum = x;
  for (int n = 1; n < 200; ++n) {
    term = (term * -x2) / n;
    const double c = term / (2 * n + 1);
    sum = sum + c;
    if ((c < 0 ? -c : c) < 1e-17) break;
  }
  return (float)(sum * 1.1283791670955125739); /* 2 / sqrt(pi) */
}

/*
 * SwiGLU: x1 = up, x2 = gate; with a clamp limit L: x1 = clamp(x1, -L, L), x2 = min(x2, L)
 * (NaN passes through); y = (x2 * sig(alpha * x2)) * (x1 + beta). Defaults alpha 1, beta 0.
 * GeGLU: y = x1 * ((0.5 * x2) * (1 + erf(x2 * (1/sqrt 2)))), erf = moe_cpu_erff.
 */
static inline float moe_cpu_act_gated(int32_t act, float x1, float x2, float alpha, float beta,
                                      int has_limit, float limit) {
  if (act == MOE_ACTIVATION_GEGLU) {
    const float e = moe_cpu_erff(MOE_FMUL(x2, 0.70710678118654752f));
    return MOE_FMUL(x1, MOE_FMUL(MOE_FMUL(0.5f, x2), MOE_FADD(1.0f, e)));
  }
  if (has_limit) {
    const float neg = -limit;
    x1 = x1 < neg ? neg : (x1 > limit ? limit : x1);
    x2 = x2 > limit ? limit : x2;
  }
  const float s = moe_sigmoidf(MOE_FMUL(alpha, x2));
  return MOE_FMUL(MOE_FMUL(x2, s), MOE_FADD(x1, beta));
}

/* ReLU^2: y = max(x, 0)^2 (NaN passes through); Identity: y = x. */
static inline float moe_cpu_act_plain(int32_t act, float x) {
  if (act == MOE_ACTIVATION_RELU2) {
    if (x > 0.0f) return MOE_FMUL(x, x);
    return x != x ? x : 0.0f;
  }
  return x;
}

#endif /* MOE_CPU_ACTIVATION_H_ */
