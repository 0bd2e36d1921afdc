/*
 * moe_math.h - float32 routing math shared bit-for-bit by the CPU backend (C11, gcc) and the
 * CUDA kernels (nvcc, host and device).
 *
 * Why this exists: the GPU plan must equal the CPU plan bit for bit for every routing method,
 * including the weights, which need exp / sigmoid. Library expf differs between glibc and
 * CUDA, and compilers contract a*b+c into FMAs differently. So every operation here is an
 * explicitly rounded IEEE float32 operation: mul/add/div through the MOE_FMUL/MOE_FADD/
 * MOE_FDIV macros (round-to-nearest intrinsics on the device, plain operators on the host,
 * where core/ is compiled with -ffp-contract=off), fmaf only where written, and a
 * polynomial exp of our own. Denormals must not be flushed (no -ftz / fast-math).
 */
#ifndef MOE_MATH_H_
#define MOE_MATH_H_

#include <stdint.h>

#if defined(__CUDACC__)
#define MOE_HD static __host__ __device__ __forceinline__
#else
#include <math.h>
#include <string.h>
#define MOE_HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define MOE_FMUL(a, b) __fmul_rn((a), (b))
#define MOE_FADD(a, b) __fadd_rn((a), (b))
#define MOE_FSUB(a, b) __fsub_rn((a), (b))
#define MOE_FDIV(a, b) __fdiv_rn((a), (b))
#else
#define MOE_FMUL(a, b) ((float)((float)(a) * (float)(b)))
#define MOE_FADD(a, b) ((float)((float)(a) + (float)(b)))
#define MOE_FSUB(a, b) ((float)((float)(a) - (float)(b)))
#define MOE_FDIV(a, b) ((float)((float)(a) / (float)(b)))
#endif

MOE_HD uint32_t moe_f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

MOE_HD float moe_bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

/* bf16 bit pattern -> float (exact). */
MOE_HD float moe_bf16_to_f32(uint16_t h) {
  return moe_bits_f32((uint32_t)h << 16);
}

/* float -> bf16 bit pattern, round to nearest even. Every NaN becomes the positive quiet NaN
 * 0x7FC0: the sign of a NaN produced by arithmetic differs between x86 (negative default NaN)
 * and the GPU (positive), and the plans must match bit for bit. */
MOE_HD uint16_t moe_f32_to_bf16(float f) {
  uint32_t u = moe_f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)0x7FC0u;
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

MOE_HD int moe_isnan(float f) {
  return (moe_f32_bits(f) & 0x7FFFFFFFu) > 0x7F800000u;
}

/*
 * Ordering key for top-K selection: larger key = better. IEEE total order on the value
 * (-0.0 < +0.0), NaN mapped below -inf (documented: NaN logits are never selected before a
 * number). Ties are broken by the caller on the lower expert index.
 */
MOE_HD uint32_t moe_order_key(float v) {
  uint32_t u = moe_f32_bits(v);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0u; /* NaN: below everything */
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Is (ka, ia) a better candidate than (kb, ib)? value descending, index ascending. */
MOE_HD int moe_better(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

/* 2^n as a float for n in [-126, 127] (normal range only). */
MOE_HD float moe_pow2i(int n) {
  return moe_bits_f32((uint32_t)(n + 127) << 23);
}

/*
 * exp(x - n*ln2) for the integer n = rint(x / ln2): Cody-Waite reduction r = x - n*ln2 in two
 * steps (|r| <= ln2/2), then the degree-7 Taylor polynomial by Horner with fmaf. The core of
 * moe_expf, shared with the routing kernels' branch-free forms (kernels/routing/deepseek.cu) so
 * that every form rounds identically.
 */
MOE_HD float moe_exp_reduced(float x, float n) {
  float r = fmaf(n, -0.693145751953125f, x);
  r = fmaf(n, -1.428606765330187045e-06f, r);
  float p = 1.9841270e-4f;       /* 1/5040 */
  p = fmaf(p, r, 1.3888889e-3f); /* 1/720 */
  p = fmaf(p, r, 8.3333333e-3f); /* 1/120 */
  p = fmaf(p, r, 4.1666667e-2f); /* 1/24 */
  p = fmaf(p, r, 1.6666667e-1f); /* 1/6 */
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  return fmaf(p, r, 1.0f);
}

/*
 * exp(x) in float32: moe_exp_reduced, then scaling by 2^n in at most two exact-power steps.
 * Max error about 2 ulp; identical on host and device.
 */
MOE_HD float moe_expf(float x) {
  if (moe_isnan(x)) return x;
  if (x > 88.72283935546875f) return moe_bits_f32(0x7F800000u);
  if (x < -103.97208404541015625f) return 0.0f;
  float n = rintf(MOE_FMUL(x, 1.44269502162933349609375f));
  const float p = moe_exp_reduced(x, n);
  int ni = (int)n;
  if (ni > 127) return MOE_FMUL(MOE_FMUL(p, moe_pow2i(127)), moe_pow2i(ni - 127));
  if (ni < -126) return MOE_FMUL(MOE_FMUL(p, moe_pow2i(-126)), moe_pow2i(ni + 126));
  return MOE_FMUL(p, moe_pow2i(ni));
}

/* sigmoid(x) = 1 / (1 + exp(-x)); exact 0 / 1 at the extremes, never NaN for finite x. */
MOE_HD float moe_sigmoidf(float x) {
  return MOE_FDIV(1.0f, MOE_FADD(1.0f, moe_expf(-x)));
}

#endif /* MOE_MATH_H_ */
