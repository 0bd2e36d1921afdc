/*
 * plan.c - the routing plan of the CPU reference backend (DESIGN §4, reference §3.3).
 *
 * Input: plan->topk_ids [T*K] (global expert ids, written by routing.c). Output: every other
 * table of the plan except expert_weights. With o = local_expert_offset, E_l = local experts,
 * a slot x = t*K + k is local iff o <= id(x) < o + E_l; only local slots are counted.
 * For local experts e in ascending order:
 *   cnt_e   = number of local slots with id e           (expert_counts[e]; 0 if not local)
 *   cgas_e  = ceil(cnt_e / tile),  ctas_e = C * cgas_e
 *   off_e   = tile * sum_{e' < e} cgas_e'                (segment start, permuted rows)
 *   CTA j of expert e (j = C * sum_{e'<e} cgas_e' + i, i < ctas_e):
 *     cta_to_batch[j]    = e - o
 *     cta_to_mn_limit[j] = min((j + 1) * ctaTile, off_e + cnt_e),   ctaTile = tile / C
 *   permuted_size P = tile * sum cgas_e,   num_ctas N = sum ctas_e
 * Permutation (deterministic): inside each expert's segment the slots are in ascending
 * expanded index x, i.e. p(x) = off_e + #{x' < x : id(x') = e}.
 *   expanded_to_permuted[x] = p(x), or -1 for a non-local slot
 *   permuted_to_token[p(x)] = x / K,  permuted_to_expanded[p(x)] = x
 *   padding rows r in [0, P) that no slot maps to: -1 in both permuted maps.
 * Entries past P / N are not written. T = 0 gives N = P = 0 and all counts 0.
 * A pre-routed id outside [0, E) is simply not local (never counted, p = -1).
 *
 * No memory is allocated: expert_counts[] doubles as the per-expert cursor during the
 * scatter and is restored to the counts afterwards. All arithmetic is 64-bit; core/ has
 * checked that every value fits the int32 tables.
 */
#include "cpu_internal.h"

void moe_cpu_build_plan(const moe_k_routing *a, const moe_k_plan *p) {
  const int64_t T = a->num_tokens, K = a->top_k, E = a->num_experts;
  const int64_t o = a->local_expert_offset, el = a->local_num_experts;
  const int64_t tile = a->tile, C = a->cluster_size, cta_tile = tile / C;
  const int64_t tk = T * K;
  int32_t *cnt = p->expert_counts;
  const int32_t *ids = p->topk_ids;

  for (int64_t e = 0; e < E; ++e) cnt[e] = 0;
  for (int64_t x = 0; x < tk; ++x) {
    const int64_t id = ids[x];
    if (id >= o && id < o + el) cnt[id] += 1;
  }

  /* CTA tables, P and N. */
  int64_t off = 0, j = 0;
  for (int64_t e = o; e < o + el; ++e) {
    const int64_t c = cnt[e], cgas = (c + tile - 1) / tile, end = off + c;
    for (int64_t i = 0; i < C * cgas; ++i, ++j) {
      const int64_t lim = (j + 1) * cta_tile < end ? (j + 1) * cta_tile : end;
      p->cta_to_batch[j] = (int32_t)(e - o);
      p->cta_to_mn_limit[j] = (int32_t)lim;
    }
    off += cgas * tile;
  }
  const int64_t P = off, N = j;

  for (int64_t r = 0; r < P; ++r) {
    p->permuted_to_token[r] = -1;
    p->permuted_to_expanded[r] = -1;
  }

  /* counts -> segment starts (cursors) */
  off = 0;
  for (int64_t e = o; e < o + el; ++e) {
    const int64_t c = cnt[e];
    cnt[e] = (int32_t)off;
    off += (c + tile - 1) / tile * tile;
  }
  /* scatter in ascending expanded index */
  for (int64_t x = 0; x < tk; ++x) {
    const int64_t id = ids[x];
    if (id >= o && id < o + el) {
      const int32_t r = cnt[id]++;
      p->expanded_to_permuted[x] = r;
      p->permuted_to_token[r] = (int32_t)(x / K);
      p->permuted_to_expanded[r] = (int32_t)x;
    } else {
      p->expanded_to_permuted[x] = -1;
    }
  }
  /* cursors (= off_e + cnt_e) -> counts */
  off = 0;
  for (int64_t e = o; e < o + el; ++e) {
    const int64_t c = cnt[e] - off;
    cnt[e] = (int32_t)c;
    off += (c + tile - 1) / tile * tile;
  }

  *p->num_ctas = (int32_t)N;
  *p->permuted_size = (int32_t)P;
}
