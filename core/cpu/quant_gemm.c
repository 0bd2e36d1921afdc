/*
 * quant_gemm.c - GEMM1 and GEMM2 of an FP8 or MXFP4 run on the CPU reference backend
 * (docs/formats.md, "FP8" and "MXFP4"). Routing, the plan and finalize are those of BF16 runs.
 *
 * Operands: weights e4m3 (FP8, prepared layout version 2) or MXFP4 (packed e2m1 + ue8m0 per 32
 * along K, kernels/mxfp4_math.h); activations e4m3 (FP8 runs and W4A8) or bf16 (W4A16).
 * Quantization points of e4m3 activations, each with the rule of kernels/fp8_math.h (scale =
 * amax / 448 over the group's finite values, 1 if 0; q = e4m3(x / s), round to nearest even,
 * saturating):
 *   (1) bf16 hidden states -> e4m3: BLOCK one scale per token per 128 columns (dynamic);
 *       PER_TENSOR and W4A8 the caller's gemm1_input_scale. e4m3 hidden states are used as
 *       given. W4A16 reads the bf16 hidden states as they are.
 *   (2) GEMM1: acc = dot(x', W1'[row]) + bias1, activation in fp32 (activation.h, as BF16),
 *       then y -> e4m3 directly (no bf16 rounding): BLOCK one scale per permuted row per 128
 *       features of I (dynamic); PER_TENSOR and W4A8 the caller's gemm2_input_scale. W4A16
 *       rounds y to bf16, as BF16 runs do.
 *   (3) GEMM2: acc = dot(a', W2'[h]) + bias2, rounded to bf16 (gemm2_out).
 * Dequantization is exact up to one fp32 rounding: e4m3 v' = fl(decode(q) * s), the scale of
 * the element's group; e2m1 v' = decode(q) * 2^(s-127), exact (a power of two); bf16 exact.
 * dot(a, b) over n (a multiple of 32) accumulates fl(a'[k] * b'[k]) in eight fp32 lanes, lane
 * k % 8, k ascending, then ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) - the order of the BF16 path,
 * so each output element has one fixed order whatever the thread count. (W4A16: every product
 * of a bf16 and an exact MXFP4 weight is exact in fp32, so a W4A16 run gives the bits of a
 * BF16 run on the dequantized weights.)
 *
 * Buffers: quantized hidden states e4m3 [T, H] + fp32 [T, H/128] go to args->act_scratch
 * (the workspace's GEMM2 output region, 2 * max_rows * H bytes with max_rows >= T, unused until
 * GEMM2); GEMM1's output e4m3 [max_rows, I] + fp32 [max_rows, I/128] (or bf16 [max_rows, I]) to
 * the gemm1_out region (2 * max_rows * I bytes). Both fit: n + 255 + n/32 <= 2n for n >= 264
 * bytes, and a non-empty plan has max_rows >= 8 rows of >= 128 columns (FP8's shape rule).
 *
 * Work items are (CTA j, a slice of output columns: 128 for FP8, one scale group of BLOCK;
 * 32 for MXFP4, whose H and I are multiples of 32 only): the CTA's rows are
 * [j*ctaTile, min((j+1)*ctaTile, cta_to_mn_limit[j])) of local expert cta_to_batch[j], so
 * padding rows are never computed. Inside an item, tiles of up to 32 valid rows x 8 weight rows
 * (dot_tile) dequantize each operand block of 32 once per tile; that changes the speed (about
 * that of the BF16 path), never the bits. Stack per worker: about 20 KiB.
 */
#include <string.h>

#include "moe_trtllm.h"

#include "activation.h"
#include "cpu_internal.h"
#include "kernels/fp8_math.h"
#include "kernels/mxfp4_math.h"

#define B MOE_FP8_BLOCK
#define SB MOE_MX_BLOCK /* elements of K dequantized at a time */
#define LANES 8

/* Element kinds of an operand row. */
#define KIND_E4M3 0 /* e4m3 codes, fp32 scale per 128 of K (or one per tensor) */
#define KIND_BF16 1 /* bf16 values */
#define KIND_E2M1 2 /* packed e2m1 pairs, ue8m0 scale per 32 of K */

/* One operand row of a dot product: its elements and the scales that decode them. */
typedef struct qrow {
  const void *v;      /* e4m3 codes, bf16 values or prepared e2m1 blocks (16 bytes per 32) */
  const float *fs;    /* e4m3: the scale of element k is fs[(k / 128) * fs_blk] */
  int64_t fs_blk;     /* 1 per 128-block scales, 0 one scale */
  const uint8_t *mxs; /* e2m1: the ue8m0 scale of element k is mxs[k / 32] */
} qrow;

typedef struct quant_job {
  const moe_k_run *a;
  const moe_k_plan *p;
  float lut[256]; /* decode of every e4m3 code */
  float lut4[16]; /* decode of every e2m1 code */
  int64_t cta_tile, slices, slice;
  int block;        /* FP8 BLOCK mode (dynamic activation scales) */
  int mx;           /* MXFP4 weights (else e4m3) */
  int act_fp8;      /* e4m3 activations (else bf16: W4A16) */
  int xkind, wkind; /* KIND_* of the activation and the weight operands */
  /* GEMM1 input: e4m3 [T, H]; scale of token t, column block b = xs[t*xs_row + b*xs_blk] */
  const uint8_t *x;
  const float *xs;
  int64_t xs_row, xs_blk;
  /* GEMM1 output / GEMM2 input: e4m3 [max_rows, I]; scale of row r, block b likewise; or
   * bf16 [max_rows, I] (g1h, W4A16) */
  uint8_t *g1;
  float *g1s;
  int64_t g1s_row, g1s_blk;
  uint16_t *g1h;
  /* weights: prepared bytes; e4m3: their fp32 scale arrays (prepared layout version 2) */
  const uint8_t *w1, *w2;
  const float *w1s, *w2s;
} quant_job;

static inline float lane_sum(const float *l) {
  return MOE_FADD(MOE_FADD(MOE_FADD(l[0], l[1]), MOE_FADD(l[2], l[3])),
                  MOE_FADD(MOE_FADD(l[4], l[5]), MOE_FADD(l[6], l[7])));
}

#define RC 32 /* activation rows per tile */
#define WC 8  /* weight rows per tile */

/* Elements [b*32, b*32 + 32) of row @p r, dequantized to fp32. */
static void decode_block(const quant_job *g, int kind, const qrow *r, int64_t b, float *out) {
  const int64_t k0 = b * SB;
  if (kind == KIND_E4M3) {
    const uint8_t *c = (const uint8_t *)r->v + k0;
    const float s = r->fs[(k0 / B) * r->fs_blk];
    for (int k = 0; k < SB; ++k) out[k] = MOE_FMUL(g->lut[c[k]], s);
  } else if (kind == KIND_BF16) {
    const uint16_t *h = (const uint16_t *)r->v + k0;
    for (int k = 0; k < SB; ++k) out[k] = moe_bf16_to_f32(h[k]);
  } else {
    uint8_t c[SB]; /* the codes of a prepared block (16 bytes) */
    moe_mx_unpack_block((const uint8_t *)r->v + k0 / 2, c);
    const float s = moe_ue8m0_to_f32(r->mxs[b]);
    for (int k = 0; k < SB; ++k) out[k] = MOE_FMUL(g->lut4[c[k]], s);
  }
}

/*
 * out[r * WC + q] = dot(x_r', w_q') over n for r < nr (<= RC), q < nw (<= WC): each block of
 * 32 of every operand row is dequantized once per tile into fp32 (the weights are shared by RC
 * rows, the activations by WC weight rows); each (r, q) accumulates in its own eight lanes, k
 * ascending, so the result is the order described at the top, whatever the tiling.
 */
static void dot_tile(const quant_job *g, const qrow *x, int nr, const qrow *w, int nw, int64_t n,
                     float *out) {
  float l[RC][WC][LANES];
  float wv[WC][SB], xv[SB];
  memset(l, 0, sizeof l);
  for (int64_t b = 0; b < n / SB; ++b) {
    for (int q = 0; q < nw; ++q) decode_block(g, g->wkind, &w[q], b, wv[q]);
    for (int r = 0; r < nr; ++r) {
      decode_block(g, g->xkind, &x[r], b, xv);
      for (int q = 0; q < nw; ++q)
        for (int k = 0; k < SB; k += LANES)
          for (int j = 0; j < LANES; ++j)
            l[r][q][j] = MOE_FADD(l[r][q][j], MOE_FMUL(xv[k + j], wv[q][k + j]));
    }
  }
  for (int r = 0; r < nr; ++r)
    for (int q = 0; q < nw; ++q) out[r * WC + q] = lane_sum(l[r][q]);
}

/* Rows [*r0, *r1) of CTA j (empty past its expert's last row); returns its local expert. */
static int64_t cta_rows(const quant_job *g, int64_t j, int64_t *r0, int64_t *r1) {
  const int64_t lim = g->p->cta_to_mn_limit[j];
  *r0 = j * g->cta_tile;
  *r1 = (j + 1) * g->cta_tile < lim ? (j + 1) * g->cta_tile : lim;
  return g->p->cta_to_batch[j];
}

/*
 * Prepared weight row @p prow of expert e of a [el, rows, cols] tensor at @p w, whose scales
 * (e4m3) are those of canonical row @p crow in @p s.
 */
static qrow weight_row(const quant_job *g, const uint8_t *w, const float *s, int64_t e,
                       int64_t rows, int64_t cols, int64_t prow, int64_t crow) {
  qrow q;
  memset(&q, 0, sizeof q);
  if (g->mx) {
    const uint8_t *base = w + e * moe_mx_expert_bytes(rows, cols);
    q.v = base + prow * (cols / 2);
    q.mxs = base + moe_mx_scales_offset(rows, cols) + prow * (cols / SB);
    return q;
  }
  q.v = w + (e * rows + prow) * cols;
  q.fs_blk = g->block ? 1 : 0;
  q.fs = g->block ? s + (e * (rows / B) + crow / B) * (cols / B) : s + e;
  return q;
}

/* (1): bf16 hidden states -> e4m3 + scales, one token per item. */
static void quantize_hidden_body(void *ctx, int64_t begin, int64_t end) {
  const quant_job *g = (const quant_job *)ctx;
  const moe_k_run *a = g->a;
  const int64_t H = a->hidden_size, n = g->block ? B : H; /* one group, or all of H */
  uint8_t *xq = (uint8_t *)g->x;
  float *xs = (float *)g->xs;
  for (int64_t t = begin; t < end; ++t) {
    const uint16_t *row = a->hidden + t * H;
    for (int64_t b = 0; b < H / n; ++b) {
      float s;
      if (g->block) {
        float amax = 0.0f;
        for (int k = 0; k < B; ++k) amax = moe_fp8_amax_step(amax, moe_bf16_to_f32(row[b * B + k]));
        s = moe_fp8_scale(amax);
        xs[t * (H / B) + b] = s;
      } else {
        s = *a->input_scale1;
      }
      for (int64_t k = 0; k < n; ++k)
        xq[t * H + b * n + k] = moe_fp8_quantize(moe_bf16_to_f32(row[b * n + k]), s);
    }
  }
}

/* The valid rows (token >= 0) of [*r, r1), up to RC of them; advances *r. */
static int next_rows(const quant_job *g, int64_t *r, int64_t r1, int64_t *rows, int32_t *tokens) {
  int n = 0;
  for (; *r < r1 && n < RC; ++*r) {
    const int32_t t = g->p->permuted_to_token[*r];
    if (t < 0) continue;
    rows[n] = *r;
    tokens[n++] = t;
  }
  return n;
}

/* An activation row: e4m3 codes + scales, or bf16. */
static qrow act_row(const void *v, const float *fs, int64_t fs_blk) {
  qrow q;
  memset(&q, 0, sizeof q);
  q.v = v;
  q.fs = fs;
  q.fs_blk = fs_blk;
  return q;
}

/* GEMM1's output of one tile of rows, features [f0, f0 + slice): e4m3 (per 128-feature group
 * in BLOCK mode, else the static s2) or bf16. */
static void store_gemm1(const quant_job *g, int nr, const int64_t *rows, int64_t f0,
                        float (*yv)[B]) {
  const moe_k_run *a = g->a;
  const int64_t I = a->intermediate_size, n = g->slice;
  for (int i = 0; i < nr; ++i) {
    if (!g->act_fp8) {
      for (int64_t k = 0; k < n; ++k) g->g1h[rows[i] * I + f0 + k] = moe_f32_to_bf16(yv[i][k]);
      continue;
    }
    float s;
    if (g->block) {
      float amax = 0.0f;
      for (int64_t k = 0; k < n; ++k) amax = moe_fp8_amax_step(amax, yv[i][k]);
      s = moe_fp8_scale(amax);
      g->g1s[rows[i] * g->g1s_row + f0 / B] = s;
    } else {
      s = *a->input_scale2;
    }
    for (int64_t k = 0; k < n; ++k) g->g1[rows[i] * I + f0 + k] = moe_fp8_quantize(yv[i][k], s);
  }
}

/* (2): GEMM1 + activation, stored per slice of features. */
static void gemm1_body(void *ctx, int64_t begin, int64_t end) {
  const quant_job *g = (const quant_job *)ctx;
  const moe_k_run *a = g->a;
  const int64_t H = a->hidden_size, I = a->intermediate_size;
  const int32_t act = a->activation;
  const int gated = act == MOE_ACTIVATION_SWIGLU || act == MOE_ACTIVATION_GEGLU;
  const int64_t w1_rows = gated ? 2 * I : I;
  const int fpt = gated ? WC / 2 : WC; /* features per tile: up + gate rows when gated */
  float yv[RC][B], acc[RC * WC];
  int64_t rows[RC];
  int32_t tokens[RC];
  qrow xr[RC], wr[WC];
  for (int64_t it = begin; it < end; ++it) {
    const int64_t j = it / g->slices, f0 = (it % g->slices) * g->slice;
    int64_t r, r1;
    const int64_t e = cta_rows(g, j, &r, &r1);
    const moe_cpu_bias b1 = moe_cpu_bias_of(a->bias1, a->bias1_bf16, e * w1_rows);
    const float alpha = a->alpha ? a->alpha[e] : 1.0f;
    const float beta = a->beta ? a->beta[e] : 0.0f;
    const int has_limit = a->clamp_limit != NULL;
    const float limit = has_limit ? a->clamp_limit[e] : 0.0f;
    for (int nr; (nr = next_rows(g, &r, r1, rows, tokens)) > 0;) {
      for (int i = 0; i < nr; ++i)
        xr[i] = g->act_fp8 ? act_row(g->x + (int64_t)tokens[i] * H, g->xs + tokens[i] * g->xs_row,
                                     g->xs_blk)
                           : act_row(a->hidden + (int64_t)tokens[i] * H, NULL, 0);
      for (int64_t f = f0; f < f0 + g->slice; f += fpt) {
        int64_t crow[WC]; /* canonical W1 row of each weight row of the tile */
        for (int q = 0; q < WC; ++q) {
          const int64_t ff = f + (gated ? q % fpt : q), half = gated ? q / fpt : 0;
          crow[q] = half * I + ff;
          const int64_t prow = gated ? moe_cpu_w1_row(I, ff, (int32_t)half) : ff;
          wr[q] = weight_row(g, g->w1, g->w1s, e, w1_rows, H, prow, crow[q]);
        }
        dot_tile(g, xr, nr, wr, WC, H, acc);
        for (int i = 0; i < nr; ++i)
          for (int q = 0; q < fpt; ++q) {
            float up = acc[i * WC + q];
            if (moe_cpu_has_bias(b1)) up = MOE_FADD(up, moe_cpu_bias_get(b1, crow[q]));
            if (!gated) {
              yv[i][f - f0 + q] = moe_cpu_act_plain(act, up);
              continue;
            }
            float gate = acc[i * WC + fpt + q];
            if (moe_cpu_has_bias(b1)) gate = MOE_FADD(gate, moe_cpu_bias_get(b1, crow[fpt + q]));
            yv[i][f - f0 + q] = moe_cpu_act_gated(act, up, gate, alpha, beta, has_limit, limit);
          }
      }
      store_gemm1(g, nr, rows, f0, yv);
    }
  }
}

/* (3): GEMM2 + bias, rounded to bf16. */
static void gemm2_body(void *ctx, int64_t begin, int64_t end) {
  const quant_job *g = (const quant_job *)ctx;
  const moe_k_run *a = g->a;
  const int64_t H = a->hidden_size, I = a->intermediate_size;
  float acc[RC * WC];
  int64_t rows[RC];
  int32_t tokens[RC];
  qrow xr[RC], wr[WC];
  for (int64_t it = begin; it < end; ++it) {
    const int64_t j = it / g->slices, h0 = (it % g->slices) * g->slice;
    int64_t r, r1;
    const int64_t e = cta_rows(g, j, &r, &r1);
    const moe_cpu_bias b2 = moe_cpu_bias_of(a->bias2, a->bias2_bf16, e * H);
    for (int nr; (nr = next_rows(g, &r, r1, rows, tokens)) > 0;) {
      for (int i = 0; i < nr; ++i)
        xr[i] = g->act_fp8 ? act_row(g->g1 + rows[i] * I, g->g1s + rows[i] * g->g1s_row, g->g1s_blk)
                           : act_row(g->g1h + rows[i] * I, NULL, 0);
      for (int64_t h = h0; h < h0 + g->slice; h += WC) {
        for (int q = 0; q < WC; ++q) wr[q] = weight_row(g, g->w2, g->w2s, e, H, I, h + q, h + q);
        dot_tile(g, xr, nr, wr, WC, I, acc);
        for (int i = 0; i < nr; ++i)
          for (int q = 0; q < WC; ++q) {
            const float v = acc[i * WC + q];
            a->gemm2_out[rows[i] * H + h + q] = moe_f32_to_bf16(
                moe_cpu_has_bias(b2) ? MOE_FADD(v, moe_cpu_bias_get(b2, h + q)) : v);
          }
      }
    }
  }
}

void moe_cpu_quant_gemms(const moe_k_run *a, const moe_k_plan *p, int32_t num_threads) {
  const int64_t T = a->num_tokens, H = a->hidden_size, I = a->intermediate_size;
  const int64_t El = a->local_num_experts;
  const int gated = a->activation == MOE_ACTIVATION_SWIGLU || a->activation == MOE_ACTIVATION_GEGLU;
  const int64_t w1_values = El * (gated ? 2 : 1) * I * H, w2_values = El * H * I;
  quant_job g;
  memset(&g, 0, sizeof g);
  g.a = a;
  g.p = p;
  for (int q = 0; q < 256; ++q) g.lut[q] = moe_e4m3_to_f32((uint8_t)q);
  for (int q = 0; q < 16; ++q) g.lut4[q] = moe_e2m1_to_f32((uint32_t)q);
  g.cta_tile = a->tile / a->cluster_size;
  g.block = a->scaling_mode == MOE_K_SCALING_BLOCK;
  g.mx = a->scaling_mode == MOE_K_SCALING_MX;
  g.act_fp8 = a->act_fp8;
  g.xkind = g.act_fp8 ? KIND_E4M3 : KIND_BF16;
  g.wkind = g.mx ? KIND_E2M1 : KIND_E4M3;
  g.slice = g.mx ? SB : B;
  g.w1 = (const uint8_t *)a->w1;
  g.w2 = (const uint8_t *)a->w2;
  if (!g.mx) {
    g.w1s = (const float *)(g.w1 + moe_k_fp8_scales_offset(w1_values));
    g.w2s = (const float *)(g.w2 + moe_k_fp8_scales_offset(w2_values));
  }
  /* (1) the GEMM1 input */
  if (!g.act_fp8) {
    /* W4A16: GEMM1 reads the bf16 hidden states */
  } else if (a->hidden_fp8) {
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
  g.g1h = a->gemm1_out;
  g.g1s = g.block ? (float *)((char *)a->gemm1_out + moe_k_fp8_scales_offset(p->max_rows * I))
                  : (float *)a->input_scale2;
  g.g1s_row = g.block ? I / B : 0;
  g.g1s_blk = g.block ? 1 : 0;
  const int64_t n_ctas = *p->num_ctas;
  g.slices = I / g.slice;
  moe_cpu_parallel_for(n_ctas * g.slices, 1, num_threads, gemm1_body, &g);
  /* (3) GEMM2 */
  g.slices = H / g.slice;
  moe_cpu_parallel_for(n_ctas * g.slices, 1, num_threads, gemm2_body, &g);
}
