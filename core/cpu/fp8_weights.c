/*
 * fp8_weights.c - canonical -> FP8 prepared weights for the CPU backend (docs/formats.md,
 * prepared layout version 2). The CUDA backend (kernels/weights_prepare_fp8.cu) produces the
 * same bytes.
 *
 * Values: e4m3 [E_l, R, C] in the BF16 prepared row order (gated W1: 8-row blocks of up and
 * gate interleaved, moe_cpu_w1_row; otherwise canonical order). Then zero bytes up to
 * moe_k_fp8_scales_offset(E_l*R*C), then the fp32 scales in canonical order: BLOCK
 * [E_l, R/128, C/128] (scale of canonical row c, column k: [e, c/128, k/128]), PER_TENSOR [E_l].
 * From e4m3 + scales: a relayout, bytes copied. From bf16: quantized by the rule of
 * kernels/fp8_math.h with one group per expert (PER_TENSOR) or per 128x128 block (BLOCK).
 */
#include <string.h>

#include "cpu_internal.h"
#include "kernels/fp8_math.h"

/* Prepared row of canonical row c of one expert's [rows, cols] matrix. */
static int64_t prepared_row(int32_t interleave, int64_t rows, int64_t c) {
  if (!interleave) return c;
  const int64_t inter = rows / 2;
  return moe_cpu_w1_row(inter, c % inter, (int32_t)(c / inter));
}

/* Quantize canonical rows [r0, r1) x columns [k0, k1) of expert matrix @p src with scale s. */
static void quantize_rect(const uint16_t *src, uint8_t *dst, int32_t interleave, int64_t rows,
                          int64_t cols, int64_t r0, int64_t r1, int64_t k0, int64_t k1, float s) {
  for (int64_t c = r0; c < r1; ++c) {
    uint8_t *out = dst + prepared_row(interleave, rows, c) * cols;
    for (int64_t k = k0; k < k1; ++k)
      out[k] = moe_fp8_quantize(moe_bf16_to_f32(src[c * cols + k]), s);
  }
}

static float amax_rect(const uint16_t *src, int64_t cols, int64_t r0, int64_t r1, int64_t k0,
                       int64_t k1) {
  float amax = 0.0f;
  for (int64_t c = r0; c < r1; ++c)
    for (int64_t k = k0; k < k1; ++k)
      amax = moe_fp8_amax_step(amax, moe_bf16_to_f32(src[c * cols + k]));
  return amax;
}

void moe_cpu_weights_prepare_fp8(int32_t which, int32_t gated, int32_t scaling_mode,
                                 int64_t local_experts, int64_t rows, int64_t cols,
                                 const void *canonical, const float *canonical_scales,
                                 uint8_t *prepared) {
  const int32_t interleave = which == 1 && gated;
  const int64_t per_expert = rows * cols, values = local_experts * per_expert;
  const int64_t off = moe_k_fp8_scales_offset(values);
  const int block = scaling_mode == MOE_K_SCALING_BLOCK;
  const int64_t rb = rows / MOE_FP8_BLOCK, cb = cols / MOE_FP8_BLOCK;
  const int64_t nscales = block ? local_experts * rb * cb : local_experts;
  float *scales = (float *)(prepared + off);
  memset(prepared + values, 0, (size_t)(off - values)); /* the pad: deterministic bytes */
  if (canonical_scales) {
    const uint8_t *src = (const uint8_t *)canonical;
    for (int64_t e = 0; e < local_experts; ++e)
      for (int64_t c = 0; c < rows; ++c)
        memcpy(prepared + e * per_expert + prepared_row(interleave, rows, c) * cols,
               src + e * per_expert + c * cols, (size_t)cols);
    memcpy(scales, canonical_scales, (size_t)nscales * sizeof(float));
    return;
  }
  const uint16_t *src = (const uint16_t *)canonical;
  for (int64_t e = 0; e < local_experts; ++e) {
    const uint16_t *w = src + e * per_expert;
    uint8_t *dst = prepared + e * per_expert;
    if (!block) {
      const float s = moe_fp8_scale(amax_rect(w, cols, 0, rows, 0, cols));
      scales[e] = s;
      quantize_rect(w, dst, interleave, rows, cols, 0, rows, 0, cols, s);
      continue;
    }
    for (int64_t i = 0; i < rb; ++i)
      for (int64_t j = 0; j < cb; ++j) {
        const int64_t r0 = i * MOE_FP8_BLOCK, k0 = j * MOE_FP8_BLOCK;
        const int64_t r1 = r0 + MOE_FP8_BLOCK, k1 = k0 + MOE_FP8_BLOCK;
        const float s = moe_fp8_scale(amax_rect(w, cols, r0, r1, k0, k1));
        scales[(e * rb + i) * cb + j] = s;
        quantize_rect(w, dst, interleave, rows, cols, r0, r1, k0, k1, s);
      }
  }
}
