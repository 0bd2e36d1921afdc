/*
 * activation.h - the GEMM1 epilogue activations of the CPU backend (docs/formats.md).
 * Inputs are the fp32 accumulators with the bias already added; the result is rounded to
 * bf16 by the caller. Sigmoid is moe_sigmoidf (portable); GeGLU uses libm erff.
 */
#ifndef MOE_CPU_ACTIVATION_H_
#define MOE_CPU_ACTIVATION_H_

#include <math.h>

#include "moe_trtllm.h"

#include "cpu_internal.h"

/*
 * SwiGLU: x1 = up, x2 = gate; with a clamp limit L: x1 = clamp(x1, -L, L), x2 = min(x2, L)
 * (NaN passes through); y = (x2 * sig(alpha * x2)) * (x1 + beta). Defaults alpha 1, beta 0.
 * GeGLU: y = x1 * ((0.5 * x2) * (1 + erff(x2 * (1/sqrt 2)))).
 */
static inline float moe_cpu_act_gated(int32_t act, float x1, float x2, float alpha, float beta,
                                      int has_limit, float limit) {
  if (act == MOE_ACTIVATION_GEGLU) {
    const float e = erff(MOE_FMUL(x2, 0.70710678118654752f));
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
