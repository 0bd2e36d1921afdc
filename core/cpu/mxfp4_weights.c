/*
 * mxfp4_weights.c - checkpoint MXFP4 -> prepared weights for the CPU backend (docs/formats.md,
 * "MXFP4"; layout in kernels/mxfp4_math.h). A relayout: scale bytes are copied, value bits
 * reordered within their 32-value block (moe_mx_pack_block), nothing decoded.
 *
 * Source: packed e2m1 blocks [E_l, R, C/2] and ue8m0 scales [E_l, R, C/32]. Canonical row c of
 * the library's order (gated W1: up rows [0, I), then gate rows [I, 2I)) is source row c, or,
 * for gpt-oss's interleaved W1 (MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED), source row 2f + 1 for
 * up feature f and 2f for gate feature f. Prepared row: the BF16 prepared order
 * (moe_cpu_w1_row for gated W1, else c). Per expert: values [R, C/2] (packed blocks), zero pad
 * to 128 bytes, scales [R, C/32], zero pad to 128 bytes.
 */
#include <string.h>

#include "cpu_internal.h"
#include "kernels/mxfp4_math.h"

void moe_cpu_weights_prepare_mx(int32_t gated_w1, int32_t gate_up_interleaved,
                                int64_t local_experts, int64_t rows, int64_t cols,
                                const uint8_t *values, const uint8_t *scales, uint8_t *prepared) {
  const int64_t vb = cols / 2, sb = cols / MOE_MX_BLOCK, inter = rows / 2;
  const int64_t soff = moe_mx_scales_offset(rows, cols), stride = moe_mx_expert_bytes(rows, cols);
  for (int64_t e = 0; e < local_experts; ++e) {
    uint8_t *dst = prepared + e * stride;
    memset(dst + rows * vb, 0, (size_t)(soff - rows * vb));
    memset(dst + soff + rows * sb, 0, (size_t)(stride - soff - rows * sb));
    for (int64_t c = 0; c < rows; ++c) {
      int64_t src = c, p = c;
      if (gated_w1) {
        const int64_t f = c % inter;
        const int32_t half = (int32_t)(c / inter); /* 0 up, 1 gate */
        p = moe_cpu_w1_row(inter, f, half);
        if (gate_up_interleaved) src = 2 * f + (half == 0);
      }
      const uint8_t *v = values + (e * rows + src) * vb;
      for (int64_t b = 0; b < vb; b += MOE_MX_BLOCK / 2) moe_mx_pack_block(v + b, dst + p * vb + b);
      memcpy(dst + soff + p * sb, scales + (e * rows + src) * sb, (size_t)sb);
    }
  }
}
