/*
 * mx_layout.h - the tests' reading of a prepared MXFP4 value row (docs/formats.md, "Prepared
 * weight layout (version 4: MXFP4)") against its checkpoint row: every code through
 * moe_mx_unpack_block, so a relayout that moves or drops a code is seen wherever it lands.
 */
#ifndef MOE_TEST_MX_LAYOUT_H_
#define MOE_TEST_MX_LAYOUT_H_

#include <stdint.h>

#include "kernels/mxfp4_math.h"

/* Codes of prepared row @p prep that differ from checkpoint row @p canon (cols values). */
static inline int64_t mx_row_mismatches(const uint8_t *prep, const uint8_t *canon, int64_t cols) {
  int64_t bad = 0;
  uint8_t codes[MOE_MX_BLOCK];
  for (int64_t k = 0; k < cols; ++k) {
    if (k % MOE_MX_BLOCK == 0) moe_mx_unpack_block(prep + k / 2, codes);
    const uint32_t want = (uint32_t)(canon[k / 2] >> (4 * (k % 2))) & 15u;
    bad += codes[k % MOE_MX_BLOCK] != want;
  }
  return bad;
}

#endif /* MOE_TEST_MX_LAYOUT_H_ */
