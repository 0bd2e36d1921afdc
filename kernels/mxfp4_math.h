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
 * The bit order of a prepared 32-value block (16 bytes, one ue8m0 scale), chosen so that a GPU
 * thread turns its codes into bf16 pairs with a shift and a mask. The block is four
 * little-endian 32-bit words; word q holds the eight codes that thread q of a quad takes as the
 * A fragment of two k16 MMA steps (mma.m16n8k16's A layout): the canonical bytes q, q + 4,
 * q + 8, q + 12 of the block (codes 2q + {0, 1, 8, 9, 16, 17, 24, 25}), called parts 0..3.
 * Part t's even code (low nibble) lies in the word's bits 0..15, its odd code in bits 16..31,
 * at the same places in each half: magnitude bits (e2m1 bits 0..2) at base_t .. base_t + 2,
 * sign (bit 3) at sign_t, with base = 6, 3, 0, 9 and sign = 15, 12, 13, 14. So part 0 is
 * already a bf16 pair's sign and low exponent / high mantissa bits (mask 0x81C081C0), part 1
 * is that shifted left by 3, and parts 2 and 3 need one shift for the magnitude and one for the
 * sign (their positions 15, 12 would collide). The e2m1 code then reads as a bf16 subnormal or
 * tiny normal equal to its value times 2^-126, which one multiplication by 2^(126 + s - 127)
 * scales exactly.
 */
MOE_HD int moe_mx_part_base(int t) {
  return (int)((0x9036u >> (4 * t)) & 15u);
}
MOE_HD int moe_mx_part_sign(int t) {
  return 12 + (int)((0x2103u >> (4 * t)) & 15u);
}

/* The prepared word q of a block from its canonical bytes q + 4t (b[t], two codes each). */
MOE_HD uint32_t moe_mx_pack_word(const uint8_t *b) {
  uint32_t w = 0;
  for (int t = 0; t < 4; ++t) {
    for (int h = 0; h < 2; ++h) {
      const uint32_t c = (uint32_t)(b[t] >> (4 * h)) & 15u;
      w |= (c & 7u) << (moe_mx_part_base(t) + 16 * h);
      w |= (c >> 3) << (moe_mx_part_sign(t) + 16 * h);
    }
  }
  return w;
}

/* Prepared block (16 bytes) <- canonical block (16 bytes, two codes a byte, low nibble first). */
MOE_HD void moe_mx_pack_block(const uint8_t *src, uint8_t *dst) {
  for (int q = 0; q < 4; ++q) {
    const uint8_t b[4] = {src[q], src[q + 4], src[q + 8], src[q + 12]};
    const uint32_t w = moe_mx_pack_word(b);
    for (int i = 0; i < 4; ++i) dst[4 * q + i] = (uint8_t)(w >> (8 * i));
  }
}

/* Word q (0..3) of a prepared block, little-endian. */
MOE_HD uint32_t moe_mx_block_word(const uint8_t *blk, int q) {
  return (uint32_t)blk[4 * q] | (uint32_t)blk[4 * q + 1] << 8 | (uint32_t)blk[4 * q + 2] << 16 |
         (uint32_t)blk[4 * q + 3] << 24;
}

/* The code of part t (0..3), half h (0: even value, 1: odd) of a prepared word. */
MOE_HD uint32_t moe_mx_word_code(uint32_t w, int t, int h) {
  return ((w >> (moe_mx_part_base(t) + 16 * h)) & 7u) |
         (((w >> (moe_mx_part_sign(t) + 16 * h)) & 1u) << 3);
}

/* The e2m1 code of value k (0..31) of a prepared block. */
MOE_HD uint32_t moe_mx_block_code(const uint8_t *blk, int k) {
  const int i = k / 2;
  return moe_mx_word_code(moe_mx_block_word(blk, i % 4), i / 4, k & 1);
}

/* All 32 codes of a prepared block, in K order (codes[k] = moe_mx_block_code(blk, k)). */
MOE_HD void moe_mx_unpack_block(const uint8_t *blk, uint8_t *codes) {
  for (int q = 0; q < 4; ++q) {
    const uint32_t w = moe_mx_block_word(blk, q);
    for (int t = 0; t < 4; ++t)
      for (int h = 0; h < 2; ++h) codes[2 * (q + 4 * t) + h] = (uint8_t)moe_mx_word_code(w, t, h);
  }
}

/*
 * Prepared MXFP4 weights of [E_l, rows, cols] (cols = K, a multiple of 32): per expert e, at
 * e * moe_mx_expert_bytes(rows, cols),
 *   values: [rows, cols/2] bytes (row p at p * cols/2, its 32-value blocks of 16 bytes in K
 *           order, each in the bit order of moe_mx_pack_block), zero-padded to 128 bytes;
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
