/*
 * fp8_gemm.c - GEMM1 and GEMM2 of an FP8 run on the CPU reference backend (docs/formats.md,
 * "FP8"). Routing, the plan and finalize are those of BF16 runs.
 *
 * Quantization points, each with the rule of kernels/fp8_math.h (scale = amax / 448 over the
 * group's finite values, 1 if 0; q = e4m3(x / s), round to nearest even, saturating):
 *   (1) bf16 hidden states -> e4m3: BLOCK one scale per token per 128 columns (dynamic);
 *       PER_TENSOR the caller's gemm1_input_scale. e4m3 hidden states are used as given.
 *   (2) GEMM1: acc = dot(x', W1'[row]) + bias1, activation in fp32 (activation.h, as BF16),
 *       then y -> e4m3 directly (no bf16 rounding): BLOCK one scale per permuted row per 128
 *       features of I (dynamic); PER_TENSOR the caller's gemm2_input_scale.
 *   (3) GEMM2: acc = dot(a', W2'[h]) + bias2, rounded to bf16 (gemm2_out).
 * Dequantization is exact up to one fp32 rounding: v' = fl(decode(q) * s), the scale of the
 * element's group. dot(a, b) over n (a multiple of 128) accumulates fl(a'[k] * b'[k]) in eight
 * fp32 lanes, lane k % 8, k ascending, then ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) - the order
 * of the BF16 path, so each output element has one fixed order whatever the thread count.
 *
 * Buffers: quantized hidden states e4m3 [T, H] + fp32 [T, H/128] go to args->act_scratch
 * (the workspace's GEMM2 output region, 2 * max_rows * H bytes with max_rows >= T, unused until
 * GEMM2); GEMM1's output e4m3 [max_rows, I] + fp32 [max_rows, I/128] to the gemm1_out region
 * (2 * max_rows * I bytes). Both fit: n + 255 + n/32 <= 2n for n >= 264 bytes, and a non-empty
 * plan has max_rows >= 8 rows of >= 128 columns.
 *
 * Work items are (CTA j, 128 output columns): the CTA's rows are
 * [j*ctaTile, min((j+1)*ctaTile, cta_to_mn_limit[j])) of local expert cta_to_batch[j], so
 * padding rows are never computed, and one item owns a whole 128-column scale group of GEMM1.
 * Inside an item, tiles of up to 32 valid rows x 8 weight rows (dot_tile) dequantize each
 * operand block once per tile; that changes the speed (about that of the BF16 path), never the
 * bits. Stack per worker: about 30 KiB.
 */
#include <string.h>

#include "moe_trtllm.h"

#include "activation.h"
#include "cpu_internal.h"
#include "kernels/fp8_math.h"

#define B MOE_FP8_BLOCK
#define LANES 8

typedef struct fp8_job {
  const moe_k_run *a;
  const moe_k_plan *p;
  float lut[256]; /* decode of every e4m3 code */
  int64_t cta_tile, slices;
  int block; /* BLOCK mode (else PER_TENSOR) */
  /* GEMM1 input: e4m3 [T, H]; scale of token t, column block b = xs[t*xs_row + b*xs_blk] */
  const uint8_t *x;
  const float *xs;
  int64_t xs_row, xs_blk;
  /* GEMM1 output / GEMM2 input: e4m3 [max_rows, I]; scale of row r, block b likewise */
  uint8_t *g1;
  float *g1s;
  int64_t g1s_row, g1s_blk;
  /* weights: e4m3 values and their scale arrays (prepared layout version 2) */
  const uint8_t *w1, *w2;
  const float *w1s, *w2s;
} fp8_job;

static inline float lane_sum(const float *l) {
  return MOE_FADD(MOE_FADD(MOE_FADD(l[0], l[1]), MOE_FADD(l[2], l[3])),
                  MOE_FADD(MOE_FADD(l[4], l[5]), MOE_FADD(l[6], l[7])));
}

#define RC 32 /* activation rows per tile */
#define WC 8  /* weight rows per tile */

/*
 * out[r * WC + q] = dot(x_r', w_q') over n for r < nr (<= RC), q < nw (<= WC), with
 * x_r' = fl(lut[x_r[k]] * xs_r[(k/128) * xs_blk]), w_q' = fl(lut[w_q[k]] * ws_q[(k/128) * ws_blk]).
 * Each 128-block of every operand row is dequantized once per tile into fp32 (the weights are
 * shared by RC rows, the activations by WC weight rows); each (r, q) accumulates in its own
 * eight lanes, k ascending, so the result is the order described at the top, whatever the
 * tiling.
 */
static void dot_tile(const float *lut, const uint8_t *const *x, const float *const *xs,
                     int64_t xs_blk, int nr, const uint8_t *const *w, const float *const *ws,
                     int64_t ws_blk, int nw, int64_t n, float *out) {
  float l[RC][WC][LANES];
  float wv[WC][B], xv[B];
  memset(l, 0, sizeof l);
  for (int64_t b = 0; b < n / B; ++b) {
    for (int q = 0; q < nw; ++q) {
      const float sw = ws[q][b * ws_blk];
      const uint8_t *wq = w[q] + b * B;
      for (int k = 0; k < B; ++k) wv[q][k] = MOE_FMUL(lut[wq[k]], sw);
    }
    for (int r = 0; r < nr; ++r) {
      const float sx = xs[r][b * xs_blk];
      const uint8_t *xr = x[r] + b * B;
      for (int k = 0; k < B; ++k) xv[k] = MOE_FMUL(lut[xr[k]], sx);
      for (int q = 0; q < nw; ++q)
        for (int k = 0; k < B; k += LANES)
          for (int j = 0; j < LANES; ++j)
            l[r][q][j] = MOE_FADD(l[r][q][j], MOE_FMUL(xv[k + j], wv[q][k + j]));
    }
  }
  for (int r = 0; r < nr; ++r)
    for (int q = 0; q < nw; ++q) out[r * WC + q] = lane_sum(l[r][q]);
}

/* Rows [*r0, *r1) of CTA j (empty past its expert's last row); returns its local expert. */
static int64_t cta_rows(const fp8_job *g, int64_t j, int64_t *r0, int64_t *r1) {
  const int64_t lim = g->p->cta_to_mn_limit[j];
  *r0 = j * g->cta_tile;
  *r1 = (j + 1) * g->cta_tile < lim ? (j + 1) * g->cta_tile : lim;
  return g->p->cta_to_batch[j];
}

/* Scale array and block step of weight row c of expert e in a [el, rows, cols] tensor. */
static const float *wscale(const fp8_job *g, const float *s, int64_t e, int64_t rows, int64_t cols,
                           int64_t c, int64_t *blk) {
  *blk = g->block ? 1 : 0;
  if (!g->block) return s + e;
  return s + (e * (rows / B) + c / B) * (cols / B);
}

/* (1): bf16 hidden states -> e4m3 + scales, one token per item. */
static void quantize_hidden_body(void *ctx, int64_t begin, int64_t end) {
  const fp8_job *g = (const fp8_job *)ctx;
  const moe_k_run *a = g->a;
  const int64_t H = a->hidden_size;
  uint8_t *xq = (uint8_t *)g->x;
  float *xs = (float *)g->xs;
  for (int64_t t = begin; t < end; ++t) {
    const uint16_t *row = a->hidden + t * H;
    for (int64_t b = 0; b < H / B; ++b) {
      float s;
      if (g->block) {
        float amax = 0.0f;
        for (int k = 0; k < B; ++k) amax = moe_fp8_amax_step(amax, moe_bf16_to_f32(row[b * B + k]));
        s = moe_fp8_scale(amax);
        xs[t * (H / B) + b] = s;
      } else {
        s = *a->input_scale1;
      }
      for (int k = 0; k < B; ++k)
        xq[t * H + b * B + k] = moe_fp8_quantize(moe_bf16_to_f32(row[b * B + k]), s);
    }
  }
}

/* The valid rows (token >= 0) of [*r, r1), up to RC of them; advances *r. */
static int next_rows(const fp8_job *g, int64_t *r, int64_t r1, int64_t *rows, int32_t *tokens) {
  int n = 0;
  for (; *r < r1 && n < RC; ++*r) {
    const int32_t t = g->p->permuted_to_token[*r];
    if (t < 0) continue;
    rows[n] = *r;
    tokens[n++] = t;
  }
  return n;
}

/* (2): GEMM1 + activation, quantized per 128 features. */
static void gemm1_body(void *ctx, int64_t begin, int64_t end) {
  const fp8_job *g = (const fp8_job *)ctx;
  const moe_k_run *a = g->a;
  const int64_t H = a->hidden_size, I = a->intermediate_size;
  const int32_t act = a->activation;
  const int gated = act == MOE_ACTIVATION_SWIGLU || act == MOE_ACTIVATION_GEGLU;
  const int64_t w1_rows = gated ? 2 * I : I;
  const int fpt = gated ? WC / 2 : WC; /* features per tile: up + gate rows when gated */
  float yv[RC][B], acc[RC * WC];
  int64_t rows[RC];
  int32_t tokens[RC];
  const uint8_t *xp[RC];
  const float *xsp[RC];
  for (int64_t it = begin; it < end; ++it) {
    const int64_t j = it / g->slices, f0 = (it % g->slices) * B;
    int64_t r, r1;
    const int64_t e = cta_rows(g, j, &r, &r1);
    const uint8_t *w = g->w1 + e * w1_rows * H;
    const float *b1 = a->bias1 ? a->bias1 + e * w1_rows : NULL;
    const float alpha = a->alpha ? a->alpha[e] : 1.0f;
    const float beta = a->beta ? a->beta[e] : 0.0f;
    const int has_limit = a->clamp_limit != NULL;
    const float limit = has_limit ? a->clamp_limit[e] : 0.0f;
    for (int nr; (nr = next_rows(g, &r, r1, rows, tokens)) > 0;) {
      for (int i = 0; i < nr; ++i) {
        xp[i] = g->x + (int64_t)tokens[i] * H;
        xsp[i] = g->xs + tokens[i] * g->xs_row;
      }
      for (int64_t f = f0; f < f0 + B; f += fpt) {
        const uint8_t *wp[WC];
        const float *sp[WC];
        int64_t crow[WC]; /* canonical W1 row of each weight row of the tile */
        int64_t blk = 0;
        for (int q = 0; q < WC; ++q) {
          const int64_t ff = f + (gated ? q % fpt : q), half = gated ? q / fpt : 0;
          crow[q] = half * I + ff;
          wp[q] = w + (gated ? moe_cpu_w1_row(I, ff, (int32_t)half) : ff) * H;
          sp[q] = wscale(g, g->w1s, e, w1_rows, H, crow[q], &blk);
        }
        dot_tile(g->lut, xp, xsp, g->xs_blk, nr, wp, sp, blk, WC, H, acc);
        for (int i = 0; i < nr; ++i)
          for (int q = 0; q < fpt; ++q) {
            float up = acc[i * WC + q];
            if (b1) up = MOE_FADD(up, b1[crow[q]]);
            if (!gated) {
              yv[i][f - f0 + q] = moe_cpu_act_plain(act, up);
              continue;
            }
            float gate = acc[i * WC + fpt + q];
            if (b1) gate = MOE_FADD(gate, b1[crow[fpt + q]]);
            yv[i][f - f0 + q] = moe_cpu_act_gated(act, up, gate, alpha, beta, has_limit, limit);
          }
      }
      for (int i = 0; i < nr; ++i) {
        float s;
        if (g->block) {
          float amax = 0.0f;
          for (int k = 0; k < B; ++k) amax = moe_fp8_amax_step(amax, yv[i][k]);
          s = moe_fp8_scale(amax);
          g->g1s[rows[i] * g->g1s_row + f0 / B] = s;
        } else {
          s = *a->input_scale2;
        }
        for (int k = 0; k < B; ++k) g->g1[rows[i] * I + f0 + k] = moe_fp8_quantize(yv[i][k], s);
      }
    }
  }
}

/* (3): GEMM2 + bias, rounded to bf16. */
static void gemm2_body(void *ctx, int64_t begin, int64_t end) {
  const fp8_job *g = (const fp8_job *)ctx;
  const moe_k_run *a = g->a;
  const int64_t H = a->hidden_size, I = a->intermediate_size;
  float acc[RC * WC];
  int64_t rows[RC];
  int32_t tokens[RC];
  const uint8_t *xp[RC];
  const float *xsp[RC];
  for (int64_t it = begin; it < end; ++it) {
    const int64_t j = it / g->slices, h0 = (it % g->slices) * B;
    int64_t r, r1;
    const int64_t e = cta_rows(g, j, &r, &r1);
    const float *b2 = a->bias2 ? a->bias2 + e * H : NULL;
    for (int nr; (nr = next_rows(g, &r, r1, rows, tokens)) > 0;) {
      for (int i = 0; i < nr; ++i) {
        xp[i] = g->g1 + rows[i] * I;
        xsp[i] = g->g1s + rows[i] * g->g1s_row;
      }
      for (int64_t h = h0; h < h0 + B; h += WC) {
        const uint8_t *wp[WC];
        const float *sp[WC];
        int64_t blk = 0;
        for (int q = 0; q < WC; ++q) {
          wp[q] = g->w2 + (e * H + h + q) * I;
          sp[q] = wscale(g, g->w2s, e, H, I, h + q, &blk);
        }
        dot_tile(g->lut, xp, xsp, g->g1s_blk, nr, wp, sp, blk, WC, I, acc);
        for (int i = 0; i < nr; ++i)
          for (int q = 0; q < WC; ++q) {
            const float v = acc[i * WC + q];
            a->gemm2_out[rows[i] * H + h + q] = moe_f32_to_bf16(b2 ? MOE_FADD(v, b2[h + q]) : v);
          }
      }
    }
  }
}

void moe_cpu_fp8_gemms(const moe_k_run *a, const moe_k_plan *p, int32_t num_threads) {
  const int64_t T = a->num_tokens, H = a->hidden_size, I = a->intermediate_size;
  const int64_t El = a->local_num_experts;
  const int gated = a->activation == MOE_ACTIVATION_SWIGLU || a->activation == MOE_ACTIVATION_GEGLU;
  const int64_t w1_values = El * (gated ? 2 : 1) * I * H, w2_values = El * H * I;
  fp8_job g;
  memset(&g, 0, sizeof g);
  g.a = a;
  g.p = p;
  for (int q = 0; q < 256; ++q) g.lut[q] = moe_e4m3_to_f32((uint8_t)q);
  g.cta_tile = a->tile / a->cluster_size;
  g.block = a->scaling_mode == MOE_K_SCALING_BLOCK;
  g.w1 = (const uint8_t *)a->w1;
  g.w2 = (const uint8_t *)a->w2;
  g.w1s = (const float *)(g.w1 + moe_k_fp8_scales_offset(w1_values));
  g.w2s = (const float *)(g.w2 + moe_k_fp8_scales_offset(w2_values));
  /* (1) the GEMM1 input */
  if (a->hidden_fp8) {
    g.x = (const uint8_t *)a->hidden;
    g.xs = g.block ? a->hidden_scale : a->input_scale1;
  } else {
    g.x = (const uint8_t *)a->act_scratch;
    g.xs = g.block ? (const float *)((char *)a->act_scratch + moe_k_fp8_scales_offset(T * H))
                   : a->input_scale1;
    moe_cpu_parallel_for(T, 16, num_threads, quantize_hidden_body, &g);
  }
  g.xs_row = g.block ? H / B : 0;
  g.xs_blk = g.block ? 1 : 0;
  /* (2) GEMM1 into the gemm1_out region */
  g.g1 = (uint8_t *)a->gemm1_out;
  g.g1s = g.block ? (float *)((char *)a->gemm1_out + moe_k_fp8_scales_offset(p->max_rows * I))
                  : (float *)a->input_scale2;
  g.g1s_row = g.block ? I / B : 0;
  g.g1s_blk = g.block ? 1 : 0;
  const int64_t n_ctas = *p->num_ctas;
  g.slices = I / B;
  moe_cpu_parallel_for(n_ctas * g.slices, 1, num_threads, gemm1_body, &g);
  /* (3) GEMM2 */
  g.slices = H / B;
  moe_cpu_parallel_for(n_ctas * g.slices, 1, num_threads, gemm2_body, &g);
}
