/*
 * weights.c - canonical -> prepared weights for the CPU backend (docs/formats.md, version 1).
 *
 * Gated W1 (SwiGLU, GeGLU): [E_l, 2I, H], rows interleaved in blocks of 8: prepared rows
 * [16b, 16b+8) = up rows [8b, 8b+8), prepared rows [16b+8, 16b+16) = gate rows [I+8b, I+8b+8).
 * Non-gated W1 and W2: a plain copy. The CUDA backend produces the same bytes.
 */
#include <string.h>

#include "cpu_internal.h"

void moe_cpu_weights_prepare(int32_t which, int32_t gated, int64_t local_experts, int64_t rows,
                             int64_t cols, const uint16_t *canonical, uint16_t *prepared) {
  const size_t row_bytes = (size_t)cols * sizeof(uint16_t);
  if (which != 1 || !gated) {
    memcpy(prepared, canonical, (size_t)(local_experts * rows) * row_bytes);
    return;
  }
  const int64_t inter = rows / 2;
  for (int64_t e = 0; e < local_experts; ++e) {
    const uint16_t *src = canonical + e * rows * cols;
    uint16_t *dst = prepared + e * rows * cols;
    for (int64_t f = 0; f < inter; ++f) {
      memcpy(dst + moe_cpu_w1_row(inter, f, 0) * cols, src + f * cols, row_bytes);
      memcpy(dst + moe_cpu_w1_row(inter, f, 1) * cols, src + (inter + f) * cols, row_bytes);
    }
  }
}
