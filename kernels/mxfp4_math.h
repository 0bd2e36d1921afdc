/*
 * mxfp4_math.h - MXFP4 (OCP Microscaling, FP4 e2m1 values with ue8m0 block scales): decoding
 * and the prepared weight layout, shared by the CPU backend (C11, gcc) and the CUDA kernels
 * (nvcc, host and device). docs/formats.md, "MXFP4".
 *
 * e2m1 (DLPack kDLFloat4_e2m1fn): 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit; codes
 * 0..7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 8..15 the same negated (8 = -0); no inf, no NaN.
 * Two values per byte, the low nibble first (even column).
 * ue8m0 (DLPack kDLFloat8_e8m0fnu): an exponent only, 2^(s - 127) for s = 0..254; 0xFF is NaN.
 * One scale per 32 consecutive values along K (the GEMM's reduction dimension).
 *
 * Dequantization w = e2m1 * 2^(s - 127) is one fp32 multiplication by an exact power of two,
 * so it is exact (also as a subnormal: the smallest product is 0.5 * 2^-127 = 2^-128) unless
 * it overflows: s >= 253 with |e2m1| >= 2 gives +-inf. Every exact product is also a bf16
 * value (at most 2 significant bits, the fp32 exponent range).
 */
#ifndef MOE_MXFP4_MATH_H_
#define MOE_MXFP4_MATH_H_

#include <stdint.h>

#include "moe_math.h"

#define MOE_MX_BLOCK 32        /* values per ue8m0 scale, along K */
#define MOE_MX_SCALE_NAN 0xFFu /* the ue8m0 NaN code */
#define MOE_MX_ALIGN 128       /* alignment of the prepared sections (bytes) */

/* e2m1 code (low 4 bits of @p q) -> float, exact. */
MOE_HD float moe_e2m1_to_f32(uint32_t q) {
  /* magnitude codes 0..7: 0, 0.5, 1, 1.5, 2, 3, 4, 6 as float bit patterns */
  const uint32_t mag = q & 7u;
  const uint32_t e = mag >> 1, m = mag & 1u;
  uint32_t bits;
  if (e == 0u)
    bits = m ? 0x3F000000u : 0u; /* subnormal: m * 0.5 */
  else
    bits = ((e + 126u) << 23) | (m << 22); /* 2^(e-1) * (1 + m/2) */
  return moe_bits_f32(bits | ((q & 8u) << 28));
}

/* ue8m0 code -> 2^(s - 127) as a float (exact; 0 -> 2^-127, a subnormal). 0xFF is NaN (the
 * library refuses it where it can read the scales; docs/formats.md). */
MOE_HD float moe_ue8m0_to_f32(uint32_t s) {
  if (s == MOE_MX_SCALE_NAN) return moe_bits_f32(0x7FC00000u);
  if (s == 0u) return moe_bits_f32(0x00400000u); /* 2^-127 */
  return moe_bits_f32(s << 23);
}

/* Round @p bytes up to the section alignment. */
MOE_HD int64_t moe_mx_align(int64_t bytes) {
  return (bytes + MOE_MX_ALIGN - 1) / MOE_MX_ALIGN * MOE_MX_ALIGN;
}

/*
 * Prepared MXFP4 weights of [E_l, rows, cols] (cols = K, a multiple of 32): per expert e, at
 * e * moe_mx_expert_bytes(rows, cols),
 *   values: [rows, cols/2] bytes (row p at p * cols/2), zero-padded to 128 bytes;
 *   scales: at moe_mx_scales_offset(rows, cols), [rows, cols/32] ue8m0 bytes, zero-padded to
 *           128 bytes.
 * Rows are in the BF16 prepared order (gated W1: 8-row blocks of up and gate interleaved).
 */
MOE_HD int64_t moe_mx_scales_offset(int64_t rows, int64_t cols) {
  return moe_mx_align(rows * (cols / 2));
}
MOE_HD int64_t moe_mx_expert_bytes(int64_t rows, int64_t cols) {
  return moe_mx_scales_offset(rows, cols) + moe_mx_align(rows * (cols / MOE_MX_BLOCK));
}

#endif /* MOE_MXFP4_MATH_H_ */
