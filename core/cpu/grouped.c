/*
 * grouped.c - the CPU backend of moe_runner_run_grouped (core/grouped.c, docs/ep.md).
 *
 * From the host counts cnt[e] of the E_l local experts, in ascending e:
 *   cgas_e = ceil(cnt_e / tile), off_e = tile * sum_{e' < e} cgas_e'   (padded rows)
 *   CTA j of expert e: cta_to_batch[j] = e,
 *                      cta_to_mn_limit[j] = min((j + 1) * ctaTile, off_e + cnt_e)
 *   permuted_to_token[off_e + i] = src_e + i for i < cnt_e, -1 for the padding rows, where
 *   src_e is the input row of the expert's first token: sum_{e' < e} cnt_e' (CONTIGUOUS) or
 *   e * capacity (MASKED).
 * This is the plan moe_cpu_build_plan makes for the same grouping (same tile, same CTA
 * split), so GEMM1 and GEMM2 (gemm.c) compute each row exactly as in moe_runner_run. GEMM2
 * writes the padded rows into the workspace; each valid row r is then copied to output row
 * permuted_to_token[r]. Rows of the output that no count covers are not written.
 * FP8 runners take the same path: moe_cpu_run quantizes as for moe_runner_run (bf16 hidden per
 * input row, GEMM1's output per padded row; core/cpu/quant_gemm.c), so each row's bits do not
 * depend on the grouping either.
 */
#include <string.h>

#include "cpu_internal.h"

void moe_cpu_run_grouped(const moe_k_run *a, const moe_k_plan *p, const int32_t *counts,
                         int32_t masked, int64_t capacity, int32_t num_threads) {
  const int64_t El = a->local_num_experts, tile = a->tile, C = a->cluster_size;
  const int64_t cta_tile = tile / C, H = a->hidden_size;
  int64_t off = 0, j = 0, src = 0;
  for (int64_t e = 0; e < El; ++e) {
    const int64_t c = counts[e], cgas = (c + tile - 1) / tile, end = off + c;
    for (int64_t i = 0; i < C * cgas; ++i, ++j) {
      p->cta_to_batch[j] = (int32_t)e;
      p->cta_to_mn_limit[j] = (int32_t)((j + 1) * cta_tile < end ? (j + 1) * cta_tile : end);
    }
    const int64_t first = masked ? e * capacity : src;
    for (int64_t i = 0; i < cgas * tile; ++i)
      p->permuted_to_token[off + i] = i < c ? (int32_t)(first + i) : -1;
    off += cgas * tile;
    src += c;
  }
  *p->num_ctas = (int32_t)j;
  *p->permuted_size = (int32_t)off;
  *p->gemm_tile_counter = 0;
  moe_cpu_run(a, p, num_threads); /* do_finalize = 0: GEMM1, GEMM2 into a->gemm2_out */
  for (int64_t r = 0; r < off; ++r) {
    const int32_t t = p->permuted_to_token[r];
    if (t >= 0)
      memcpy(a->output + (int64_t)t * H, a->gemm2_out + r * H, sizeof(uint16_t) * (size_t)H);
  }
}
