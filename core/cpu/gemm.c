/*
 * gemm.c - GEMM1 (+ fused activation) and GEMM2 of the CPU reference backend.
 *
 * Work items are (a few consecutive CTAs of one expert, slice of output columns); a CTA's
 * rows are [j*ctaTile, min((j+1)*ctaTile, cta_to_mn_limit[j])) of local expert
 * cta_to_batch[j], so padding rows are never computed, exactly as on the GPU. Each output
 * element is computed by one item with a fixed order, so results do not depend on the thread
 * count or on how the rows are grouped:
 *
 *   dot(a, w, n): eight fp32 lanes; lane j = 0.0f, then for k = j, j+8, j+16, ... < n
 *                 (ascending): lane j = lane j + a[k]*w[k]   (a, w bf16 widened exactly; the
 *                 product of two bf16 is exact in fp32, so FMA or not gives the same bits);
 *                 result = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
 *   GEMM1:  acc = dot(x[permuted_to_token[r]], W1p[row], H) + bias1[e, canonical row]
 *           gated: y = act(acc_up, acc_gate) (activation.h); else y = act(acc)
 *           gemm1_out[r, f] = bf16(y)
 *   GEMM2:  gemm2_out[r, h] = bf16(dot(gemm1_out[r], W2[e, h], I) + bias2[e, h])
 *   (no bias tensor: no addition.) e = the local expert; x and W rows are read in place, no
 *   fp32 copies: bf16 -> fp32 is a 16-bit shift done in registers, which measured faster
 *   than converting weight tiles to fp32 buffers and needs no allocation.
 */
#include <string.h>

#include "moe_trtllm.h"

#include "activation.h"
#include "cpu_internal.h"

#define LANES 8

static inline float lane_sum(const float *l) {
  return MOE_FADD(MOE_FADD(MOE_FADD(l[0], l[1]), MOE_FADD(l[2], l[3])),
                  MOE_FADD(MOE_FADD(l[4], l[5]), MOE_FADD(l[6], l[7])));
}

#if !defined(MOE_CPU_PORTABLE_DOT) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
/*
 * GNU vector extensions: eight lanes as one vector, so the lane order above is explicit and
 * the speed does not hinge on the auto-vectoriser (gcc -O3 handles the scalar form badly).
 * Element-wise vector ops are the same IEEE operations as the scalar fallback below.
 */
typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
/* dst = eight bf16 at p widened to fp32 (a macro: no vector arguments or returns, which
 * would change the ABI without AVX). */
#define LOAD8(dst, p)                                      \
  do {                                                     \
    v8h h_;                                                \
    memcpy(&h_, (p), sizeof h_);                           \
    const v8u u_ = __builtin_convertvector(h_, v8u) << 16; \
    memcpy(&(dst), &u_, sizeof u_);                        \
  } while (0)

/* Four dot products of one activation row with four weight rows (see the order above). */
static void dot4(const uint16_t *restrict x, const uint16_t *restrict w0,
                 const uint16_t *restrict w1, const uint16_t *restrict w2,
                 const uint16_t *restrict w3, int64_t n, float out[4]) {
  v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
  const int64_t n8 = n - n % LANES;
  for (int64_t k = 0; k < n8; k += LANES) {
    v8f xv, wv;
    LOAD8(xv, x + k);
    LOAD8(wv, w0 + k);
    a0 += xv * wv;
    LOAD8(wv, w1 + k);
    a1 += xv * wv;
    LOAD8(wv, w2 + k);
    a2 += xv * wv;
    LOAD8(wv, w3 + k);
    a3 += xv * wv;
  }
  float l[4][LANES];
  memcpy(l[0], &a0, sizeof a0);
  memcpy(l[1], &a1, sizeof a1);
  memcpy(l[2], &a2, sizeof a2);
  memcpy(l[3], &a3, sizeof a3);
  const uint16_t *w[4] = {w0, w1, w2, w3};
  for (int64_t k = n8; k < n; ++k) {
    const float xv = moe_bf16_to_f32(x[k]);
    for (int q = 0; q < 4; ++q)
      l[q][k - n8] = MOE_FADD(l[q][k - n8], MOE_FMUL(xv, moe_bf16_to_f32(w[q][k])));
  }
  for (int q = 0; q < 4; ++q) out[q] = lane_sum(l[q]);
}
#else
/* Portable form of the same computation. */
static void dot4(const uint16_t *restrict x, const uint16_t *restrict w0,
                 const uint16_t *restrict w1, const uint16_t *restrict w2,
                 const uint16_t *restrict w3, int64_t n, float out[4]) {
  float l[4][LANES];
  const uint16_t *w[4] = {w0, w1, w2, w3};
  for (int q = 0; q < 4; ++q)
    for (int j = 0; j < LANES; ++j) l[q][j] = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const float xv = moe_bf16_to_f32(x[k]);
    for (int q = 0; q < 4; ++q)
      l[q][k % LANES] = MOE_FADD(l[q][k % LANES], MOE_FMUL(xv, moe_bf16_to_f32(w[q][k])));
  }
  for (int q = 0; q < 4; ++q) out[q] = lane_sum(l[q]);
}
#endif

/* Columns per work item: enough items to balance threads, few enough to amortise. */
#define GEMM1_SLICE 64  /* features of I (128 weight rows when gated) */
#define GEMM2_SLICE 128 /* rows of W2 (columns of H) */

/* Consecutive CTAs of one expert merged into one work item (up to this many rows), so the
 * weights are read once for them. */
#define ROW_GROUP 64

typedef struct gemm_job {
  const moe_k_run *a;
  const moe_k_plan *p;
  int64_t cta_tile, group, num_ctas, slices, slice;
} gemm_job;

/*
 * Rows [*r0, *r1) of the work item led by CTA j; returns its local expert. CTA j leads when
 * j % group == 0 or it is the first CTA of its expert; the item then covers CTA j and the
 * following CTAs of the same expert up to the next leader. Other CTAs get an empty range.
 * Per CTA the rows are [j*ctaTile, min((j+1)*ctaTile, cta_to_mn_limit[j])) (empty past the
 * expert's last valid row), so the item's rows are exactly the valid rows of its CTAs.
 */
static int64_t item_rows(const gemm_job *g, int64_t j, int64_t *r0, int64_t *r1) {
  const int32_t *batch = g->p->cta_to_batch, *lim = g->p->cta_to_mn_limit;
  const int64_t e = batch[j];
  *r0 = *r1 = j * g->cta_tile;
  if (j % g->group != 0 && batch[j - 1] == e) return e;
  for (int64_t c = j; c < g->num_ctas && batch[c] == e && (c == j || c % g->group != 0); ++c) {
    const int64_t end = (c + 1) * g->cta_tile < lim[c] ? (c + 1) * g->cta_tile : lim[c];
    if (end > *r1) *r1 = end;
  }
  return e;
}

static void gemm1_body(void *ctx, int64_t begin, int64_t end) {
  const gemm_job *g = (const gemm_job *)ctx;
  const moe_k_run *a = g->a;
  const moe_k_plan *p = g->p;
  const int64_t H = a->hidden_size, I = a->intermediate_size;
  const int32_t act = a->activation;
  const int gated = act == MOE_ACTIVATION_SWIGLU || act == MOE_ACTIVATION_GEGLU;
  const int64_t w1_rows = gated ? 2 * I : I;
  for (int64_t it = begin; it < end; ++it) {
    const int64_t j = it / g->slices, s = it % g->slices;
    int64_t r0, r1;
    const int64_t e = item_rows(g, j, &r0, &r1);
    if (r1 <= r0) continue;
    const int64_t f0 = s * g->slice, f1 = f0 + g->slice < I ? f0 + g->slice : I;
    const uint16_t *w = a->w1 + e * w1_rows * H;
    const moe_cpu_bias b1 = moe_cpu_bias_of(a->bias1, a->bias1_bf16, e * w1_rows);
    const float alpha = a->alpha ? a->alpha[e] : 1.0f;
    const float beta = a->beta ? a->beta[e] : 0.0f;
    const int has_limit = a->clamp_limit != NULL;
    const float limit = has_limit ? a->clamp_limit[e] : 0.0f;
    /* 2 features (4 weight rows) when gated, 4 features when not */
    const int64_t step = gated ? 2 : 4;
    for (int64_t f = f0; f < f1; f += step) {
      const int64_t nf = f1 - f < step ? f1 - f : step;
      int64_t rows[4]; /* canonical W1 row of each of the 4 dot products */
      const uint16_t *wp[4];
      for (int q = 0; q < 4; ++q) {
        if (gated) {
          const int64_t ff = f + (q / 2 < nf ? q / 2 : 0);
          rows[q] = (q % 2) * I + ff;
          wp[q] = w + moe_cpu_w1_row(I, ff, q % 2) * H;
        } else {
          const int64_t ff = f + (q < nf ? q : 0);
          rows[q] = ff;
          wp[q] = w + ff * H;
        }
      }
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t t = p->permuted_to_token[r];
        if (t < 0) continue;
        float acc[4];
        dot4(a->hidden + (int64_t)t * H, wp[0], wp[1], wp[2], wp[3], H, acc);
        if (moe_cpu_has_bias(b1))
          for (int q = 0; q < 4; ++q) acc[q] = MOE_FADD(acc[q], moe_cpu_bias_get(b1, rows[q]));
        uint16_t *out = a->gemm1_out + r * I + f;
        for (int64_t q = 0; q < nf; ++q) {
          const float y = gated ? moe_cpu_act_gated(act, acc[2 * q], acc[2 * q + 1], alpha, beta,
                                                    has_limit, limit)
                                : moe_cpu_act_plain(act, acc[q]);
          out[q] = moe_f32_to_bf16(y);
        }
      }
    }
  }
}

static void gemm2_body(void *ctx, int64_t begin, int64_t end) {
  const gemm_job *g = (const gemm_job *)ctx;
  const moe_k_run *a = g->a;
  const moe_k_plan *p = g->p;
  const int64_t H = a->hidden_size, I = a->intermediate_size;
  for (int64_t it = begin; it < end; ++it) {
    const int64_t j = it / g->slices, s = it % g->slices;
    int64_t r0, r1;
    const int64_t e = item_rows(g, j, &r0, &r1);
    if (r1 <= r0) continue;
    const int64_t h0 = s * g->slice, h1 = h0 + g->slice < H ? h0 + g->slice : H;
    const uint16_t *w = a->w2 + e * H * I;
    const moe_cpu_bias b2 = moe_cpu_bias_of(a->bias2, a->bias2_bf16, e * H);
    for (int64_t h = h0; h < h1; h += 4) {
      const int64_t nh = h1 - h < 4 ? h1 - h : 4;
      const uint16_t *wp[4];
      for (int64_t q = 0; q < 4; ++q) wp[q] = w + (h + (q < nh ? q : 0)) * I;
      for (int64_t r = r0; r < r1; ++r) {
        if (p->permuted_to_token[r] < 0) continue;
        float acc[4];
        dot4(a->gemm1_out + r * I, wp[0], wp[1], wp[2], wp[3], I, acc);
        uint16_t *out = a->gemm2_out + r * H + h;
        for (int64_t q = 0; q < nh; ++q)
          out[q] = moe_f32_to_bf16(
              moe_cpu_has_bias(b2) ? MOE_FADD(acc[q], moe_cpu_bias_get(b2, h + q)) : acc[q]);
      }
    }
  }
}

static void run_gemm(const moe_k_run *a, const moe_k_plan *p, int32_t num_threads, int64_t cols,
                     int64_t slice, moe_cpu_body_fn body) {
  const int64_t n_ctas = *p->num_ctas;
  gemm_job g;
  g.a = a;
  g.p = p;
  g.cta_tile = a->tile / a->cluster_size;
  g.group = g.cta_tile < ROW_GROUP ? ROW_GROUP / g.cta_tile : 1;
  g.num_ctas = n_ctas;
  g.slice = slice;
  g.slices = cols > 0 ? (cols + slice - 1) / slice : 0;
  moe_cpu_parallel_for(n_ctas * g.slices, 1, num_threads, body, &g);
}

void moe_cpu_gemm1(const moe_k_run *a, const moe_k_plan *p, int32_t num_threads) {
  run_gemm(a, p, num_threads, a->intermediate_size, GEMM1_SLICE, gemm1_body);
}

void moe_cpu_gemm2(const moe_k_run *a, const moe_k_plan *p, int32_t num_threads) {
  run_gemm(a, p, num_threads, a->hidden_size, GEMM2_SLICE, gemm2_body);
}
