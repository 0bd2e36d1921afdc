/*
 * test_large_t.c - every model preset's forward at prefill sizes whose row offsets (rows x H or
 * I elements) pass the int32 range: T = 65536 by default (DeepSeek-V3: 590k padded rows x 7168),
 * and further where memory allows, in BF16 and in FP8 (e4m3 weights and activations: block
 * scales for deepseek-v3, qwen3-235b and qwen3-30b, per-tensor scales for mixtral-8x7b and
 * llama4-maverick, as bench/moe_bench.c runs them; gpt-oss-120b's H = I = 2880 are not
 * multiples of 128, so it has no FP8 run), and gpt-oss-120b in MXFP4 W4A16 (as moe-bench's
 * gpt-oss-120b-mxfp4: fp32 biases, gpt-oss's clamped SwiGLU). GPU only (the CPU oracle cannot run
 * these sizes in a test); sampled tokens (the first, the last, and random ones, whose rows sit at
 * the far end of the permuted buffers) are checked against a float64 reference with the library's
 * rounding and quantization points, and every output element must be written and finite.
 *
 * Bound: relative L2 <= 1e-2 per sampled token, except two FP8 cases where the hardware's own
 * accumulation costs more, both traced with a host model of the H100's e4m3 tensor-core
 * accumulation (tc_row_dot: the accumulator keeps 13 fraction bits and truncates; Khattak and
 * Mikaitis, "Accurate Models of NVIDIA Tensor Cores", arXiv 2512.07004):
 *  - PER_TENSOR accumulates the whole K in one accumulator (as the serving engines'
 *    fast-accumulation FP8 GEMMs do), which costs 1-2e-2 at K = 4096-14336, a bias the model
 *    reproduces token by token: a token above 1e-2 passes only within the model's error on that
 *    same token (docs/performance.md, "Accuracy of the e4m3 accumulation").
 *  - BLOCK promotes every 128 of K, so its accumulation error is small, but GEMM1's output is
 *    requantized to e4m3 per 128 features, and where the accumulation moves a value or its
 *    group's amax across an e4m3 rounding boundary the code moves by a whole e4m3 step (6-12%).
 *    A token's error is then a handful of such flips: heavy-tailed and not reproducible by any
 *    model short of the hardware's exact bits (on 200 qwen3-30b tokens the model gives a median
 *    of 4.8e-3, 13 tokens above 1e-2, at most 2.0e-2 and an RMS of 6.1e-3; fp32 accumulation of
 *    the same codes, <= 2.2e-3). So the block bound is the per-case one: the RMS of the
 *    sampled tokens' errors <= 1e-2, and each token <= 4e-2 (twice the model's largest; a token
 *    given a wrong row or expert is off by O(1)).
 * Every FP8 token still compares against the float64 reference of fp32-exact codes, not against
 * the model.
 *
 * Weights: each preset's E experts are built on the device from a pool of 4 random experts,
 * expert e being pool expert e % 4 with its rows rotated by an e-dependent amount, so every
 * expert differs (a wrong expert index changes the result) without generating tens of GB on the
 * host. FP8 runners quantize them in moe_weights_prepare; the reference quantizes the pool once
 * on the host with kernels/fp8_math.h (the rule both backends use) and reads expert e's codes
 * and scales through the rotation (rot_w1, rot_w2), and the prepared scales of every expert are
 * checked against it. MXFP4: the pool is random packed e2m1 bytes with ue8m0 scales
 * (conformance generator streams 4, 5, 12, 13), each row's scales moving with its values under
 * the rotation, prepared by moe_weights_prepare_scaled one expert at a time into its section of
 * the prepared tensor (docs/formats.md, version 4: expert e at e times the per-expert size); the
 * last expert's prepared bytes are checked against the pool's through the rotation. Routing:
 * pre-routed random ids and weights (conformance generator streams 6 and 7); one set of inputs
 * per preset and T serves every dtype, FP8 with magnitudes that vary per scale group
 * (fp8_magnitudes).
 *
 * MOE_TEST_LARGE_T=T[,T..] overrides the token counts (each applied to every preset);
 * MOE_TEST_LARGE_PRESETS=name[,name..] picks presets; MOE_TEST_LARGE_DTYPES=bf16,fp8,mxfp4
 * (the default: all three) picks the dtypes; MOE_TEST_LARGE_VERBOSE=1 prints every sampled FP8
 * token's error beside the accumulation model's (and, above 1e-2, per 128 output columns);
 * MOE_TEST_LARGE_SAMPLES=n samples n random tokens instead of 4, MOE_TEST_LARGE_TOKENS=t[,t..]
 * checks these tokens too (those below T).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"
#include "fp8_ref.h"
#include "kernels/fp8_math.h"
#include "kernels/mxfp4_math.h"
#include "mx_layout.h"

#ifdef MOE_TEST_WITH_CUDA
#include <cuda_runtime.h>

#define POOL 4
#define SAMPLE_EDGE 4       /* first and last tokens checked */
#define SAMPLE_RANDOM 4     /* plus these many random ones */
#define BOUND_GPU 1e-2      /* GPU vs float64 reference, per sampled token (BF16 and FP8) */
#define BOUND_TC_MODEL 4e-2 /* sanity cap of the FP8 accumulation model's own error */
/* A block-scaled FP8 token (the run's sampled tokens within an RMS of BOUND_GPU): see above */
#define BOUND_FP8_BLOCK_TOKEN 4e-2
#define BLK REF_FP8_BLOCK

typedef struct preset {
  const char *name;
  int32_t E, K;
  int64_t H, I;
  /* a second, larger T (0: none) where T = 65536 keeps the row offsets inside int32: there
   * the offsets pass int32 (checked), and it fits an 80 GB card */
  int64_t extra_t;
  int32_t fp8_mode; /* the FP8 scaling mode bench/moe_bench.c runs the preset with */
  int mxfp4;        /* an MXFP4 W4A16 run too (moe-bench's NAME-mxfp4 preset) */
} preset;

/* The moe-bench presets (bench/moe_bench.c), SwiGLU. */
static const preset k_presets[] = {
    {"deepseek-v3", 256, 8, 7168, 2048, 0, MOE_SCALING_BLOCK, 0},
    {"qwen3-235b", 128, 8, 4096, 1536, 0, MOE_SCALING_BLOCK, 0},
    {"qwen3-30b", 128, 8, 2048, 768, 262144, MOE_SCALING_BLOCK, 0},
    {"mixtral-8x7b", 8, 2, 4096, 14336, 131072, MOE_SCALING_PER_TENSOR, 0},
    {"gpt-oss-120b", 128, 4, 2880, 2880, 196608, MOE_SCALING_BLOCK, 1}, /* no FP8: H, I % 128 */
    {"llama4-maverick", 128, 1, 5120, 8192, 262144, MOE_SCALING_PER_TENSOR, 0},
};

static void cuda_ok(cudaError_t e, const char *what) {
  ++tc_checks;
  if (e != cudaSuccess) {
    tc_fail(__FILE__, __LINE__, "%s: %s", what, cudaGetErrorString(e));
    exit(tc_summary("test_large_t"));
  }
}

static const char *mode_name(int mode) {
  return mode == MOE_SCALING_BLOCK        ? "fp8 block"
         : mode == MOE_SCALING_PER_TENSOR ? "fp8 tensor"
         : mode == MOE_SCALING_MX         ? "mxfp4"
                                          : "bf16";
}

/*
 * Row rotation of expert e's W1 [2I, H] and W2 [H, I] (@p mode: MOE_SCALING_NONE for BF16).
 * BF16 and per-tensor FP8: e-dependent amounts; a per-tensor scale is the amax of the whole
 * matrix, which a rotation keeps, so expert e's scale is its pool expert's. Block-scaled FP8:
 * whole 128-row blocks, so expert e's 128x128 scale blocks are its pool expert's in rotated
 * order (a rotation by part of a block would regroup the rows of every block); e / POOL in mixed
 * radix over the W1 and W2 block-row counts keeps the experts distinct while
 * E <= POOL * (2I/128) * (H/128) (checked in run_dtype).
 */
static int64_t rot_w1(const preset *ps, int64_t e, int mode) {
  const int64_t rows = 2 * ps->I;
  if (mode != MOE_SCALING_BLOCK) return (e * 7 + 3) % rows;
  return BLK * ((e / POOL + 1) % (rows / BLK));
}
static int64_t rot_w2(const preset *ps, int64_t e, int mode) {
  const int64_t rows = ps->H;
  if (mode != MOE_SCALING_BLOCK) return (e * 5 + 1) % rows;
  return BLK * ((e / POOL / (2 * ps->I / BLK) + 1) % (rows / BLK));
}

/* dst rows r = src rows (r + rot) % rows, [rows, cols] bf16 on the device. */
static void rotated_copy(uint16_t *dst, const uint16_t *src, int64_t rows, int64_t cols,
                         int64_t rot) {
  const size_t row_bytes = (size_t)cols * 2;
  cuda_ok(
      cudaMemcpy(dst, src + rot * cols, (size_t)(rows - rot) * row_bytes, cudaMemcpyDeviceToDevice),
      "rotated copy (head)");
  if (rot > 0)
    cuda_ok(cudaMemcpy(dst + (rows - rot) * cols, src, (size_t)rot * row_bytes,
                       cudaMemcpyDeviceToDevice),
            "rotated copy (tail)");
}

/*
 * Prepared weights of all E experts, one expert at a time from the rotated pool. BF16: the
 * prepared tensor is E one-expert layouts in a row, each prepared in place. FP8
 * (docs/formats.md, "Prepared weight layout (version 2: FP8)"): the codes of all experts, then
 * (R*C being a multiple of 256, no padding) the scales of all experts; a one-expert layout is
 * its codes then its scales, so each expert is prepared into a scratch tensor and its two parts
 * copied to their places.
 */
static void prepare_weights(moe_runner *r, const preset *ps, int mode, int which,
                            const uint16_t *pool_dev, ttensor *prepared) {
  const int64_t H = ps->H, I = ps->I;
  const int64_t rows = which == MOE_WEIGHTS_GEMM1 ? 2 * I : H, cols = which == 1 ? H : I;
  moe_problem p1;
  t_problem(&p1, 1, 1, 1, 0, 1, H, I);
  size_t per = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p1, which, &per));
  CHECK(per * (size_t)ps->E == prepared->bytes, "%s W%d: per-expert size %zu x %d != %zu", ps->name,
        which, per, ps->E, prepared->bytes);
  const size_t codes = mode == MOE_SCALING_NONE ? per : (size_t)(rows * cols);
  ttensor *canon = tt_new(MOE_BACKEND_CUDA, DT_BF16, 3, (int64_t[]){1, rows, cols});
  ttensor *scratch =
      codes == per ? NULL : tt_new(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){(int64_t)per});
  uint8_t *base = (uint8_t *)prepared->t.data;
  for (int64_t e = 0; e < ps->E; ++e) {
    const int64_t rot = which == MOE_WEIGHTS_GEMM1 ? rot_w1(ps, e, mode) : rot_w2(ps, e, mode);
    rotated_copy((uint16_t *)canon->t.data, pool_dev + (e % POOL) * rows * cols, rows, cols, rot);
    DLTensor slice = scratch ? scratch->t : prepared->t;
    int64_t shape[1] = {(int64_t)per};
    slice.shape = shape;
    slice.byte_offset = scratch ? 0 : (uint64_t)(e * (int64_t)per);
    if (CHECK_OK(moe_weights_prepare(r, &p1, which, &canon->t, &slice, NULL))) break;
    if (!scratch) continue;
    const uint8_t *sp = (const uint8_t *)scratch->t.data;
    cuda_ok(cudaMemcpy(base + e * codes, sp, codes, cudaMemcpyDeviceToDevice), "codes copy");
    cuda_ok(cudaMemcpy(base + ps->E * codes + e * (per - codes), sp + codes, per - codes,
                       cudaMemcpyDeviceToDevice),
            "scales copy");
  }
  tmem_sync(MOE_BACKEND_CUDA);
  tt_free(canon);
  tt_free(scratch);
}

/* The MXFP4 weights of one preset: the pool in the checkpoint layout (library row order) and
 * the gpt-oss extras, one per expert. */
typedef struct mx_pool {
  uint8_t *q1, *q2;            /* packed e2m1 [POOL, 2I, H/2], [POOL, H, I/2] */
  uint8_t *s1, *s2;            /* ue8m0 [POOL, 2I, H/32], [POOL, H, I/32] */
  float *b1, *b2;              /* fp32 biases [E, 2I], [E, H] */
  float *alpha, *beta, *limit; /* [E]: 1.702, 1, 7 */
  double value[256][16];       /* [scale][code] -> e2m1 * 2^(scale - 127) */
} mx_pool;

/* The host inputs of one preset and T, shared by its BF16, MXFP4 and FP8 runs. */
typedef struct inputs {
  const preset *ps;
  int64_t T;
  uint64_t seed;
  uint16_t *pool1, *pool2; /* [POOL, 2I, H], [POOL, H, I] */
  uint16_t *hidden;        /* [T, H] */
  int32_t *ids;            /* [T, K] */
  uint16_t *pw;            /* [T, K] */
  mx_pool *mx;             /* MXFP4 runs only */
} inputs;

/* The pool quantized on the host by the rule of kernels/fp8_math.h (FP8 runs). */
typedef struct fp8_pool {
  int mode;
  uint8_t *q1, *q2;  /* codes [POOL, 2I, H], [POOL, H, I] */
  float *s1, *s2;    /* scales [POOL, 2I/128, H/128], [POOL, H/128, I/128] (BLOCK) or [POOL] */
  float in1, in2;    /* PER_TENSOR static input scales */
  double value[256]; /* e4m3 code -> value */
} fp8_pool;

/* Scale of pool expert p's weight (row, col) of a [rows, cols] matrix. */
static float pool_scale(const fp8_pool *f, const float *s, int64_t p, int64_t rows, int64_t cols,
                        int64_t row, int64_t col) {
  if (f->mode != MOE_SCALING_BLOCK) return s[p];
  return s[(p * (rows / BLK) + row / BLK) * (cols / BLK) + col / BLK];
}

/* sum_c x[c] * W'[row, c] of pool expert p's dequantized row, W' = decode(q) * scale (the
 * scale factored out per 128 columns: in double that changes only the rounding). */
static double fp8_row_dot(const fp8_pool *f, const uint8_t *q, const float *s, int64_t p,
                          int64_t rows, int64_t cols, int64_t row, const double *x) {
  const uint8_t *w = q + (p * rows + row) * cols;
  double sum = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += BLK) {
    double part = 0;
    for (int64_t c = c0; c < c0 + BLK; ++c) part += x[c] * f->value[w[c]];
    sum += part * pool_scale(f, s, p, rows, cols, row, c0);
  }
  return sum;
}

/*
 * fp8_row_dot as the kernels' tensor cores compute it, modelled: each wgmma k-step adds 32 exact
 * e4m3 products to the accumulator after aligning all of them and the accumulator to the
 * largest exponent among them, truncating at 13 fraction bits (the H100's e8m13 accumulator),
 * and the result stays an fp32 register. Per-tensor: one accumulator over the whole K, times the
 * scale at the end; block: a fresh accumulator per 128 of K promoted into fp32 times its scale
 * (sm90_fp8_block_grouped.cuh). The model aligns the dequantized values, not the codes: for a
 * sampled token that changes which bits are cut, not how many.
 */
#define TC_FRACTION_BITS 13
#define TC_K_STEP 32
static float tc_k_step(float acc, const double *prod) {
  double m = fabs((double)acc);
  for (int i = 0; i < TC_K_STEP; ++i) m = fabs(prod[i]) > m ? fabs(prod[i]) : m;
  if (m == 0) return acc;
  int ex;
  frexp(m, &ex);
  const double q = ldexp(1.0, ex - 1 - TC_FRACTION_BITS);
  double sum = trunc((double)acc / q) * q;
  for (int i = 0; i < TC_K_STEP; ++i) sum += trunc(prod[i] / q) * q;
  return (float)sum;
}
static double tc_row_dot(const fp8_pool *f, const uint8_t *q, const float *s, int64_t p,
                         int64_t rows, int64_t cols, int64_t row, const double *x) {
  const uint8_t *w = q + (p * rows + row) * cols;
  const int block = f->mode == MOE_SCALING_BLOCK;
  float total = 0.0f, acc = 0.0f;
  double prod[TC_K_STEP];
  for (int64_t c0 = 0; c0 < cols; c0 += TC_K_STEP) {
    for (int i = 0; i < TC_K_STEP; ++i) prod[i] = x[c0 + i] * f->value[w[c0 + i]];
    acc = tc_k_step(acc, prod);
    if (block && (c0 + TC_K_STEP) % BLK == 0) {
      total = fmaf(acc, pool_scale(f, s, p, rows, cols, row, c0), total);
      acc = 0.0f;
    }
  }
  return block ? (double)total : (double)acc * pool_scale(f, s, p, rows, cols, row, 0);
}

typedef double (*fp8_dot_fn)(const fp8_pool *, const uint8_t *, const float *, int64_t, int64_t,
                             int64_t, int64_t, const double *);

static double silu_glu(double up, double gate) {
  return gate / (1.0 + exp(-gate)) * up;
}

/*
 * out[0..H) for token t, with the library's rounding points (docs/formats.md). @p f NULL: BF16
 * (bf16 operands, GEMM1's activation output rounded to bf16). Else FP8: the hidden states and
 * GEMM1's activation output quantized by the rule (BLOCK: one scale per 128 values of the row;
 * PER_TENSOR: the static input scales), the weights those of the pool quantized by the rule,
 * read through the rotation.
 */
static void reference_token(const inputs *in, const fp8_pool *f, fp8_dot_fn dot, const int32_t *ids,
                            const uint16_t *w, int64_t t, double *x, double *h1, double *a,
                            float *acc, double *out) {
  const preset *ps = in->ps;
  const int64_t H = ps->H, I = ps->I, K = ps->K;
  const int mode = f ? f->mode : MOE_SCALING_NONE;
  float g[BLK];
  for (int64_t h = 0; h < H; ++h) acc[h] = 0.0f;
  for (int64_t h0 = 0; h0 < H; h0 += BLK) { /* the GEMM1 input */
    for (int64_t h = h0; h < h0 + BLK && h < H; ++h) x[h] = bf16_to_f32(in->hidden[t * H + h]);
    if (!f) continue;
    for (int k = 0; k < BLK; ++k) g[k] = (float)x[h0 + k];
    ref_fp8_dequantized_group(g, BLK, mode == MOE_SCALING_BLOCK ? 0.0f : f->in1, moe_fp8_quantize,
                              x + h0);
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t e = ids[t * K + k], pe = e % POOL;
    const int64_t r1 = rot_w1(ps, e, mode), r2 = rot_w2(ps, e, mode);
    for (int64_t r = 0; r < 2 * I; ++r) {
      const int64_t pr = (r + r1) % (2 * I);
      if (f) {
        h1[r] = dot(f, f->q1, f->s1, pe, 2 * I, H, pr, x);
        continue;
      }
      const uint16_t *row = in->pool1 + (pe * 2 * I + pr) * H;
      double s = 0;
      for (int64_t h = 0; h < H; ++h) s += x[h] * bf16_to_f32(row[h]);
      h1[r] = s;
    }
    for (int64_t i0 = 0; i0 < I; i0 += BLK) { /* the GEMM1 output (the GEMM2 input) */
      for (int64_t i = i0; i < i0 + BLK && i < I; ++i) {
        const float y = (float)silu_glu(h1[i], h1[I + i]);
        if (f) g[i - i0] = y;
        a[i] = bf16_to_f32(f32_to_bf16(y));
      }
      if (f)
        ref_fp8_dequantized_group(g, BLK, mode == MOE_SCALING_BLOCK ? 0.0f : f->in2,
                                  moe_fp8_quantize, a + i0);
    }
    const float wk = bf16_to_f32(w[t * K + k]);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t pr = (h + r2) % H;
      double s = 0;
      if (f) {
        s = dot(f, f->q2, f->s2, pe, H, I, pr, a);
      } else {
        const uint16_t *row = in->pool2 + (pe * H + pr) * I;
        for (int64_t i = 0; i < I; ++i) s += a[i] * bf16_to_f32(row[i]);
      }
      acc[h] += wk * bf16_to_f32(f32_to_bf16((float)s));
    }
  }
  for (int64_t h = 0; h < H; ++h) out[h] = bf16_to_f32(f32_to_bf16(acc[h]));
}

/*
 * The FP8 side of the host: the pool quantized by the rule (moe_weights_prepare's rule: one
 * scale per pool expert, or per 128x128 block), and for PER_TENSOR the static input scales
 * calibrated as bench/moe_bench.c does (calibrate_scales): s1 = amax / 448 of all hidden
 * states; s2 = amax / 448 of GEMM1's activation output in fp32 for the first min(T, 16) tokens
 * x the first min(I, 64) features of expert 0. A sample: larger values saturate, in the GPU
 * and in the reference alike.
 */
static void fp8_pool_init(const inputs *in, int mode, fp8_pool *f) {
  const preset *ps = in->ps;
  const int64_t H = ps->H, I = ps->I, T = in->T;
  const int64_t ns1 = mode == MOE_SCALING_BLOCK ? POOL * (2 * I / BLK) * (H / BLK) : POOL;
  const int64_t ns2 = mode == MOE_SCALING_BLOCK ? POOL * (H / BLK) * (I / BLK) : POOL;
  memset(f, 0, sizeof *f);
  f->mode = mode;
  for (int c = 0; c < 256; ++c) f->value[c] = ref_e4m3_value((uint8_t)c);
  f->q1 = t_xmalloc((size_t)(POOL * 2 * I * H));
  f->q2 = t_xmalloc((size_t)(POOL * H * I));
  f->s1 = t_xmalloc(sizeof(float) * (size_t)ns1);
  f->s2 = t_xmalloc(sizeof(float) * (size_t)ns2);
  ref_fp8_quantize_weights(mode, in->pool1, POOL, 2 * I, H, moe_fp8_quantize, f->q1, f->s1);
  ref_fp8_quantize_weights(mode, in->pool2, POOL, H, I, moe_fp8_quantize, f->q2, f->s2);
  if (mode != MOE_SCALING_PER_TENSOR) return;
  uint16_t amax_bits = 0; /* |bf16| orders as its bits (the inputs are finite) */
  for (int64_t i = 0; i < T * H; ++i) {
    const uint16_t m = in->hidden[i] & 0x7FFF;
    amax_bits = m > amax_bits ? m : amax_bits;
  }
  float ay = 0.0f;
  const int64_t r1 = rot_w1(ps, 0, mode);
  for (int64_t t = 0; t < (T < 16 ? T : 16); ++t)
    for (int64_t j = 0; j < (I < 64 ? I : 64); ++j) {
      const uint16_t *up_row = in->pool1 + ((j + r1) % (2 * I)) * H;
      const uint16_t *gate_row = in->pool1 + ((I + j + r1) % (2 * I)) * H;
      float up = 0.0f, gate = 0.0f;
      for (int64_t c = 0; c < H; ++c) {
        const float xv = bf16_to_f32(in->hidden[t * H + c]);
        up += xv * bf16_to_f32(up_row[c]);
        gate += xv * bf16_to_f32(gate_row[c]);
      }
      ay = fmaxf(ay, fabsf(up * gate / (1.0f + expf(-gate))));
    }
  f->in1 = moe_fp8_scale(bf16_to_f32(amax_bits));
  f->in2 = moe_fp8_scale(ay);
}

static void fp8_pool_free(fp8_pool *f) {
  free(f->q1);
  free(f->q2);
  free(f->s1);
  free(f->s2);
}

/* The prepared scales of every expert (after the E * R * C codes) against the pool's, read
 * through the rotation: the GPU quantized what the reference reads. */
static void check_prepared_scales(const preset *ps, const fp8_pool *f, int which,
                                  const ttensor *prepared) {
  const int64_t rows = which == MOE_WEIGHTS_GEMM1 ? 2 * ps->I : ps->H;
  const int64_t cols = which == MOE_WEIGHTS_GEMM1 ? ps->H : ps->I;
  const int64_t per = f->mode == MOE_SCALING_BLOCK ? (rows / BLK) * (cols / BLK) : 1;
  const float *pool_s = which == MOE_WEIGHTS_GEMM1 ? f->s1 : f->s2;
  float *got = t_xmalloc(sizeof(float) * (size_t)(ps->E * per));
  tmem_download(MOE_BACKEND_CUDA, got, (const uint8_t *)prepared->t.data + ps->E * rows * cols,
                sizeof(float) * (size_t)(ps->E * per));
  int64_t bad = 0;
  for (int64_t e = 0; e < ps->E; ++e) {
    const int64_t rot =
        which == MOE_WEIGHTS_GEMM1 ? rot_w1(ps, e, f->mode) : rot_w2(ps, e, f->mode);
    for (int64_t i = 0; i < per; ++i) {
      const int64_t row = (i / (cols / BLK)) * BLK, col = (i % (cols / BLK)) * BLK;
      const float want = pool_scale(f, pool_s, e % POOL, rows, cols, (row + rot) % rows, col);
      bad += memcmp(&want, &got[e * per + i], sizeof want) != 0;
    }
  }
  CHECK(bad == 0, "%s %s W%d: %lld prepared scales differ from the pool's through the rotation",
        ps->name, mode_name(f->mode), which, (long long)bad);
  free(got);
}

/* ---- MXFP4 (W4A16) ------------------------------------------------------------------------- */

#define GPT_OSS_ALPHA 1.702f
#define GPT_OSS_LIMIT 7.0f

/*
 * The MXFP4 pool and extras of @p in (conformance generator streams of the preset's seed):
 * packed e2m1 bytes (streams 4, 5) and ue8m0 scales (12, 13: codes 118..125); W1's scales
 * lowered by 2^-3 so that GEMM1's outputs (sums of 2880 products) straddle gpt-oss's clamp at 7
 * instead of saturating it. fp32 biases (streams 8, 9, |b| < 2^-3), alpha 1.702, beta 1, limit 7.
 */
static mx_pool *mx_pool_new(const inputs *in) {
  const preset *ps = in->ps;
  const int64_t H = ps->H, I = ps->I, E = ps->E;
  mx_pool *m = t_xmalloc(sizeof *m);
  m->q1 = t_xmalloc((size_t)(POOL * 2 * I * H / 2));
  m->q2 = t_xmalloc((size_t)(POOL * H * I / 2));
  m->s1 = t_xmalloc((size_t)(POOL * 2 * I * H / MOE_MX_BLOCK));
  m->s2 = t_xmalloc((size_t)(POOL * H * I / MOE_MX_BLOCK));
  gen_fill_e2m1x2(in->seed, GEN_STREAM_W1, m->q1, POOL * 2 * I * H / 2);
  gen_fill_e2m1x2(in->seed, GEN_STREAM_W2, m->q2, POOL * H * I / 2);
  gen_fill_ue8m0(in->seed, GEN_STREAM_W1_SCALE, m->s1, POOL * 2 * I * H / MOE_MX_BLOCK);
  gen_fill_ue8m0(in->seed, GEN_STREAM_W2_SCALE, m->s2, POOL * H * I / MOE_MX_BLOCK);
  for (int64_t i = 0; i < POOL * 2 * I * H / MOE_MX_BLOCK; ++i) m->s1[i] -= 3;
  m->b1 = t_xmalloc(sizeof(float) * (size_t)(E * 2 * I));
  m->b2 = t_xmalloc(sizeof(float) * (size_t)(E * H));
  gen_fill_f32(in->seed, GEN_STREAM_GEMM1_BIAS, GEN_SCALE_GEMM_BIAS, m->b1, E * 2 * I);
  gen_fill_f32(in->seed, GEN_STREAM_GEMM2_BIAS, GEN_SCALE_GEMM_BIAS, m->b2, E * H);
  m->alpha = t_xmalloc(sizeof(float) * (size_t)E);
  m->beta = t_xmalloc(sizeof(float) * (size_t)E);
  m->limit = t_xmalloc(sizeof(float) * (size_t)E);
  for (int64_t e = 0; e < E; ++e) {
    m->alpha[e] = GPT_OSS_ALPHA;
    m->beta[e] = 1.0f;
    m->limit[e] = GPT_OSS_LIMIT;
  }
  for (uint32_t sc = 0; sc < 256; ++sc)
    for (uint32_t c = 0; c < 16; ++c)
      m->value[sc][c] = (double)moe_e2m1_to_f32(c) * ldexp(1.0, (int)sc - 127);
  return m;
}

static void mx_pool_free(mx_pool *m) {
  if (!m) return;
  free(m->q1);
  free(m->q2);
  free(m->s1);
  free(m->s2);
  free(m->b1);
  free(m->b2);
  free(m->alpha);
  free(m->beta);
  free(m->limit);
  free(m);
}

static moe_runner *mx_runner(void) {
  moe_runner_options o;
  if (CHECK_OK(moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION))) return NULL;
  o.backend = MOE_BACKEND_CUDA;
  o.activation = MOE_ACTIVATION_SWIGLU;
  o.activation_dtype = MOE_DTYPE_BF16;
  o.weight_dtype = MOE_DTYPE_MXFP4;
  o.scaling_mode = MOE_SCALING_MX;
  o.sm_version = 90;
  moe_runner *r = NULL;
  if (CHECK_OK(moe_runner_create(&o, &r))) return NULL;
  return r;
}

/* dst rows r = src rows (r + rot) % rows, [rows, row_bytes] bytes on the device. */
static void rotated_copy_bytes(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t row_bytes,
                               int64_t rot) {
  cuda_ok(cudaMemcpy(dst, src + rot * row_bytes, (size_t)((rows - rot) * row_bytes),
                     cudaMemcpyDeviceToDevice),
          "rotated byte copy (head)");
  if (rot > 0)
    cuda_ok(cudaMemcpy(dst + (rows - rot) * row_bytes, src, (size_t)(rot * row_bytes),
                       cudaMemcpyDeviceToDevice),
            "rotated byte copy (tail)");
}

/*
 * MXFP4 prepared weights of all E experts: expert e's checkpoint tensors (pool expert e % 4,
 * rows rotated by rot_w1 / rot_w2 with their scales) prepared by moe_weights_prepare_scaled
 * into its section [e * S_e, (e + 1) * S_e) of @p prepared (S_e 128-byte aligned).
 */
static void prepare_mx_weights(moe_runner *r, const preset *ps, int which, const uint8_t *q_dev,
                               const uint8_t *s_dev, ttensor *prepared) {
  const int64_t H = ps->H, I = ps->I;
  const int64_t rows = which == MOE_WEIGHTS_GEMM1 ? 2 * I : H, cols = which == 1 ? H : I;
  const int64_t vb = cols / 2, sb = cols / MOE_MX_BLOCK;
  moe_problem p1;
  t_problem(&p1, 1, 1, 1, 0, 1, H, I);
  size_t per = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p1, which, &per));
  CHECK(per == (size_t)moe_mx_expert_bytes(rows, cols) && per * (size_t)ps->E == prepared->bytes,
        "%s mxfp4 W%d: per-expert size %zu x %d != %zu", ps->name, which, per, ps->E,
        prepared->bytes);
  ttensor *cq = tt_new(MOE_BACKEND_CUDA, DT_U8, 3, (int64_t[]){1, rows, vb});
  ttensor *cs = tt_new(MOE_BACKEND_CUDA, DT_U8, 3, (int64_t[]){1, rows, sb});
  for (int64_t e = 0; e < ps->E; ++e) {
    const int64_t rot =
        which == MOE_WEIGHTS_GEMM1 ? rot_w1(ps, e, MOE_SCALING_MX) : rot_w2(ps, e, MOE_SCALING_MX);
    rotated_copy_bytes((uint8_t *)cq->t.data, q_dev + (e % POOL) * rows * vb, rows, vb, rot);
    rotated_copy_bytes((uint8_t *)cs->t.data, s_dev + (e % POOL) * rows * sb, rows, sb, rot);
    DLTensor slice = prepared->t;
    int64_t shape[1] = {(int64_t)per};
    slice.shape = shape;
    slice.byte_offset = (uint64_t)(e * (int64_t)per);
    if (CHECK_OK(moe_weights_prepare_scaled(r, &p1, which, &cq->t, &cs->t, &slice, NULL))) break;
  }
  tmem_sync(MOE_BACKEND_CUDA);
  tt_free(cq);
  tt_free(cs);
}

/* The last expert's prepared section (the far end of the tensor) against the pool through the
 * rotation, the prepared row order and bit order (docs/formats.md, version 4), pads zero. */
static void check_mx_prepared(const preset *ps, const mx_pool *m, int which,
                              const ttensor *prepared) {
  const int64_t I = ps->I, rows = which == MOE_WEIGHTS_GEMM1 ? 2 * I : ps->H;
  const int64_t cols = which == MOE_WEIGHTS_GEMM1 ? ps->H : I;
  const int64_t vb = cols / 2, sb = cols / MOE_MX_BLOCK, e = ps->E - 1;
  const int64_t per = moe_mx_expert_bytes(rows, cols), soff = moe_mx_scales_offset(rows, cols);
  const int64_t rot =
      which == MOE_WEIGHTS_GEMM1 ? rot_w1(ps, e, MOE_SCALING_MX) : rot_w2(ps, e, MOE_SCALING_MX);
  const uint8_t *q = which == MOE_WEIGHTS_GEMM1 ? m->q1 : m->q2;
  const uint8_t *s = which == MOE_WEIGHTS_GEMM1 ? m->s1 : m->s2;
  uint8_t *got = t_xmalloc((size_t)per);
  tmem_download(MOE_BACKEND_CUDA, got, (const uint8_t *)prepared->t.data + e * per, (size_t)per);
  int64_t bad = 0;
  for (int64_t p = 0; p < rows; ++p) {
    /* gated W1: 8-row blocks of up and gate */
    const int64_t c = which == MOE_WEIGHTS_GEMM1 ? ((p / 8) % 2 ? I : 0) + 8 * (p / 16) + p % 8 : p;
    const int64_t src = (e % POOL) * rows + (c + rot) % rows;
    bad += mx_row_mismatches(got + p * vb, q + src * vb, cols) != 0;
    bad += memcmp(got + soff + p * sb, s + src * sb, (size_t)sb) != 0;
  }
  for (int64_t i = rows * vb; i < soff; ++i) bad += got[i] != 0;
  for (int64_t i = soff + rows * sb; i < per; ++i) bad += got[i] != 0;
  CHECK(bad == 0, "%s mxfp4 W%d: %lld prepared rows or pads of expert %lld differ from the pool's",
        ps->name, which, (long long)bad, (long long)e);
  free(got);
}

/* sum_c x[c] * W[row, c] of pool expert p's dequantized MXFP4 row (exact weights, double). */
static double mx_row_dot(const mx_pool *m, const uint8_t *q, const uint8_t *s, int64_t p,
                         int64_t rows, int64_t cols, int64_t row, const double *x) {
  const uint8_t *qr = q + (p * rows + row) * (cols / 2);
  const uint8_t *sr = s + (p * rows + row) * (cols / MOE_MX_BLOCK);
  double sum = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += MOE_MX_BLOCK) {
    const double *v = m->value[sr[c0 / MOE_MX_BLOCK]];
    for (int64_t c = c0; c < c0 + MOE_MX_BLOCK; c += 2) {
      const uint8_t b = qr[c / 2];
      sum += x[c] * v[b & 15u] + x[c + 1] * v[b >> 4];
    }
  }
  return sum;
}

/* out[0..H) for token t of an MXFP4 W4A16 run, with the rounding points of a BF16 run
 * (docs/formats.md): GEMM1 + bias and gpt-oss's clamped SwiGLU in double, rounded to bf16;
 * GEMM2 + bias rounded to bf16; finalize in fp32, rounded to bf16. */
static void reference_token_mx(const inputs *in, const int32_t *ids, const uint16_t *w, int64_t t,
                               double *x, double *h1, double *a, float *acc, double *out) {
  const preset *ps = in->ps;
  const mx_pool *m = in->mx;
  const int64_t H = ps->H, I = ps->I, K = ps->K;
  for (int64_t h = 0; h < H; ++h) {
    x[h] = bf16_to_f32(in->hidden[t * H + h]);
    acc[h] = 0.0f;
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t e = ids[t * K + k], pe = e % POOL;
    const int64_t r1 = rot_w1(ps, e, MOE_SCALING_MX), r2 = rot_w2(ps, e, MOE_SCALING_MX);
    for (int64_t r = 0; r < 2 * I; ++r)
      h1[r] =
          mx_row_dot(m, m->q1, m->s1, pe, 2 * I, H, (r + r1) % (2 * I), x) + m->b1[e * 2 * I + r];
    for (int64_t i = 0; i < I; ++i) {
      const double lim = GPT_OSS_LIMIT;
      const double up = h1[i] < -lim ? -lim : h1[i] > lim ? lim : h1[i];
      const double gate = h1[I + i] > lim ? lim : h1[I + i];
      const double y = gate / (1.0 + exp(-(double)GPT_OSS_ALPHA * gate)) * (up + 1.0);
      a[i] = bf16_to_f32(f32_to_bf16((float)y));
    }
    const float wk = bf16_to_f32(w[t * K + k]);
    for (int64_t h = 0; h < H; ++h) {
      const double v = mx_row_dot(m, m->q2, m->s2, pe, H, I, (h + r2) % H, a) + m->b2[e * H + h];
      acc[h] += wk * bf16_to_f32(f32_to_bf16((float)v));
    }
  }
  for (int64_t h = 0; h < H; ++h) out[h] = bf16_to_f32(f32_to_bf16(acc[h]));
}

/* One dtype's forward of @p in on the GPU: @p mode MOE_SCALING_NONE (BF16), an FP8 mode, or
 * MOE_SCALING_MX (MXFP4 W4A16, the gpt-oss extras of in->mx). */
/*
 * The sampled tokens of one run: the first and the last SAMPLE_EDGE, MOE_TEST_LARGE_SAMPLES
 * random ones (default SAMPLE_RANDOM), and those MOE_TEST_LARGE_TOKENS=t[,t..] names that are
 * below T. The generators are prefix-stable (token t's inputs and routing do not depend on T),
 * so a named token can be checked again at another T, where its rows sit elsewhere.
 */
#define SAMPLE_MAX 512
typedef struct {
  int n;
  int64_t t[SAMPLE_MAX];
} sample_set;
static void sample_tokens(int64_t T, t_rng *rng, sample_set *ss) {
  const char *sr = getenv("MOE_TEST_LARGE_SAMPLES");
  int64_t random = sr && *sr ? strtoll(sr, NULL, 10) : SAMPLE_RANDOM;
  if (random < 0) random = 0;
  ss->n = 0;
  for (int64_t i = 0; i < 2 * SAMPLE_EDGE && i < T; ++i)
    ss->t[ss->n++] = i < SAMPLE_EDGE ? i : T - 2 * SAMPLE_EDGE + i;
  for (int64_t i = 0; i < random && ss->n < SAMPLE_MAX; ++i)
    ss->t[ss->n++] = t_rng_range(rng, 0, T - 1);
  const char *tl = getenv("MOE_TEST_LARGE_TOKENS");
  for (const char *c = tl; c && *c && ss->n < SAMPLE_MAX;) {
    char *end = NULL;
    const long long t = strtoll(c, &end, 10);
    if (end == c) break;
    if (t >= 0 && t < T) ss->t[ss->n++] = t;
    c = *end == ',' ? end + 1 : end;
  }
}

/* MOE_TEST_LARGE_VERBOSE: a failing FP8 token's relative L2 per 128 output columns, the GPU's
 * beside the accumulation model's (a wrong scale or weight block shows as one column block). */
static void print_block_errors(const uint16_t *gpu, const uint16_t *model, const double *ref,
                               int64_t H) {
  printf("  per 128 columns, GPU / model:");
  for (int64_t h0 = 0; h0 < H; h0 += BLK) {
    const int64_t n = H - h0 < BLK ? H - h0 : BLK;
    printf(" %.2g/%.2g", t_rel_err_ref(gpu + h0, ref + h0, n),
           t_rel_err_ref(model + h0, ref + h0, n));
  }
  printf("\n");
}

static void run_dtype(const inputs *in, int mode, int must_cross) {
  const preset *ps = in->ps;
  const int64_t H = ps->H, I = ps->I, E = ps->E, K = ps->K, T = in->T;
  const char *dt = mode_name(mode);
  const int mx = mode == MOE_SCALING_MX, fp8 = mode != MOE_SCALING_NONE && !mx;
  if (fp8 && (H % BLK || I % BLK)) {
    printf("SKIP %s fp8: H = %lld, I = %lld are not multiples of 128 (FP8 needs them)\n", ps->name,
           (long long)H, (long long)I);
    return;
  }
  if (mode == MOE_SCALING_BLOCK)
    CHECK(E <= POOL * (2 * I / BLK) * (H / BLK), "%s: block rotations do not tell %d experts apart",
          ps->name, ps->E);
  moe_runner *r = mx ? mx_runner()
                  : mode == MOE_SCALING_NONE
                      ? t_runner(MOE_BACKEND_CUDA, MOE_ACTIVATION_SWIGLU)
                      : t_fp8_runner(MOE_BACKEND_CUDA, mode, MOE_ACTIVATION_SWIGLU, 0);
  if (!r) return;
  moe_problem p;
  t_problem(&p, (int32_t)E, T, (int32_t)K, 0, (int32_t)E, H, I);
  int32_t cfg = -1;
  if (CHECK_OK(moe_runner_get_default_config(r, &p, &cfg))) {
    moe_runner_destroy(r);
    return;
  }
  size_t b1 = 0, b2 = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM1, &b1));
  CHECK_OK(moe_weights_prepared_size(r, &p, MOE_WEIGHTS_GEMM2, &b2));
  size_t free_b = 0, total_b = 0, ws_b = 0;
  CHECK_OK(moe_runner_get_workspace_size(r, &p, cfg, &ws_b));
  cuda_ok(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const size_t need = b1 + b2 + ws_b + (size_t)(2 * T * H * 2) + ((size_t)1 << 30);
  if (need > free_b) {
    printf("SKIP %s %s T=%lld: needs %.1f GB, %.1f GB free on this card\n", ps->name, dt,
           (long long)T, need / 1e9, free_b / 1e9);
    moe_runner_destroy(r);
    return;
  }
  fp8_pool fp = {0};
  if (fp8) fp8_pool_init(in, mode, &fp);

  t_weights w;
  w.w1 = tt_new(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){(int64_t)b1});
  w.w2 = tt_new(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){(int64_t)b2});
  if (mx) {
    const mx_pool *m = in->mx;
    ttensor *q1 =
        tt_from_host(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){POOL * 2 * I * H / 2}, m->q1);
    ttensor *s1 = tt_from_host(MOE_BACKEND_CUDA, DT_U8, 1,
                               (int64_t[]){POOL * 2 * I * H / MOE_MX_BLOCK}, m->s1);
    ttensor *q2 = tt_from_host(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){POOL * H * I / 2}, m->q2);
    ttensor *s2 =
        tt_from_host(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){POOL * H * I / MOE_MX_BLOCK}, m->s2);
    prepare_mx_weights(r, ps, MOE_WEIGHTS_GEMM1, (const uint8_t *)q1->t.data,
                       (const uint8_t *)s1->t.data, w.w1);
    prepare_mx_weights(r, ps, MOE_WEIGHTS_GEMM2, (const uint8_t *)q2->t.data,
                       (const uint8_t *)s2->t.data, w.w2);
    tt_free(q1);
    tt_free(s1);
    tt_free(q2);
    tt_free(s2);
    check_mx_prepared(ps, m, MOE_WEIGHTS_GEMM1, w.w1);
    check_mx_prepared(ps, m, MOE_WEIGHTS_GEMM2, w.w2);
  } else {
    ttensor *pool1_d =
        tt_from_host(MOE_BACKEND_CUDA, DT_BF16, 1, (int64_t[]){POOL * 2 * I * H}, in->pool1);
    ttensor *pool2_d =
        tt_from_host(MOE_BACKEND_CUDA, DT_BF16, 1, (int64_t[]){POOL * H * I}, in->pool2);
    prepare_weights(r, ps, mode, MOE_WEIGHTS_GEMM1, (const uint16_t *)pool1_d->t.data, w.w1);
    prepare_weights(r, ps, mode, MOE_WEIGHTS_GEMM2, (const uint16_t *)pool2_d->t.data, w.w2);
    tt_free(pool1_d);
    tt_free(pool2_d);
  }
  if (fp8) {
    check_prepared_scales(ps, &fp, MOE_WEIGHTS_GEMM1, w.w1);
    check_prepared_scales(ps, &fp, MOE_WEIGHTS_GEMM2, w.w2);
  }

  t_ws ws;
  uint16_t *out = t_xmalloc((size_t)(T * H) * 2);
  if (!CHECK_OK(t_ws_alloc(r, MOE_BACKEND_CUDA, &p, cfg, &ws))) {
    t_route route;
    t_route_init(&route);
    route.method = MOE_ROUTING_TOPK;
    route.input = T_INPUT_IDS;
    route.ids = in->ids;
    route.weights = in->pw;
    moe_plan plan;
    t_moe_in tin = {in->hidden, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (mx) { /* gpt-oss-120b-mxfp4: fp32 biases, alpha 1.702, beta 1, limit 7 */
      tin.bias1 = in->mx->b1;
      tin.bias2 = in->mx->b2;
      tin.alpha = in->mx->alpha;
      tin.beta = in->mx->beta;
      tin.clamp_limit = in->mx->limit;
    }
    const float in_scales[2] = {mode == MOE_SCALING_PER_TENSOR ? fp.in1 : 0.0f,
                                mode == MOE_SCALING_PER_TENSOR ? fp.in2 : 0.0f};
    host_plan hp;
    moe_status_t st = MOE_STATUS_INTERNAL;
    if (!CHECK_OK(t_prepare(r, MOE_BACKEND_CUDA, &p, &route, cfg, &ws, &plan))) {
      st = t_run_scaled(r, MOE_BACKEND_CUDA, &p, MOE_ACTIVATION_SWIGLU, &tin, &w, cfg, &plan, &ws,
                        1, mode == MOE_SCALING_PER_TENSOR ? in_scales : NULL, out);
      if (st == MOE_STATUS_NOT_SUPPORTED && fp8)
        printf("SKIP %s %s T=%lld: %s\n", ps->name, dt, (long long)T, moe_get_last_error());
      else
        CHECK(st == MOE_STATUS_SUCCESS, "%s %s T=%lld: run -> %d: %s", ps->name, dt, (long long)T,
              (int)st, moe_get_last_error());
    }
    if (st == MOE_STATUS_SUCCESS && t_read_plan(r, &plan, &ws, (int32_t)E, &hp) == 0) {
      const int64_t bad = t_count_nonfinite(out, T * H);
      CHECK(bad == 0, "%s %s T=%lld: %lld output elements not finite or not written", ps->name, dt,
            (long long)T, (long long)bad);
      /* the permuted rows reached past 2^31 elements (the point of this test), checked on
       * each preset's largest default T */
      const int crossed =
          (int64_t)hp.permuted_size * (H > I ? H : I) > INT32_MAX || T * H > INT32_MAX;
      printf("%-16s %-10s T=%-7lld row offsets %s the int32 range\n", ps->name, dt, (long long)T,
             crossed ? "pass" : "stay inside");
      CHECK(crossed || !must_cross, "%s %s T=%lld: %d permuted rows stay inside int32 offsets",
            ps->name, dt, (long long)T, hp.permuted_size);
      double *x = t_xmalloc((size_t)H * sizeof(double));
      double *h1 = t_xmalloc((size_t)(2 * I) * sizeof(double));
      double *a = t_xmalloc((size_t)I * sizeof(double));
      float *acc = t_xmalloc((size_t)H * sizeof(float));
      double *ref = t_xmalloc((size_t)H * sizeof(double));
      double *model = t_xmalloc((size_t)H * sizeof(double));
      uint16_t *model_bf16 = t_xmalloc((size_t)H * sizeof(uint16_t));
      t_rng rng = {in->seed ^ 0x9E3779B97F4A7C15ull};
      double worst = 0, sum_sq = 0;
      const char *vb = getenv("MOE_TEST_LARGE_VERBOSE");
      const int verbose = vb != NULL && *vb != '\0' && *vb != '0';
      const int block = mode == MOE_SCALING_BLOCK;
      sample_set ss;
      sample_tokens(T, &rng, &ss);
      for (int i = 0; i < ss.n; ++i) {
        const int64_t t = ss.t[i];
        if (mx)
          reference_token_mx(in, hp.topk_ids, hp.weights, t, x, h1, a, acc, ref);
        else
          reference_token(in, fp8 ? &fp : NULL, fp8_row_dot, hp.topk_ids, hp.weights, t, x, h1, a,
                          acc, ref);
        const double err = t_rel_err_ref(out + t * H, ref, H);
        if (err > worst) worst = err;
        sum_sq += err * err;
        double bound = BOUND_GPU;
        if (fp8 && block && err > BOUND_GPU) bound = BOUND_FP8_BLOCK_TOKEN;
        if (fp8 && ((!block && err > BOUND_GPU) || verbose)) {
          /* per-tensor: within the whole-K accumulation's own cost on this token? */
          reference_token(in, &fp, tc_row_dot, hp.topk_ids, hp.weights, t, x, h1, a, acc, model);
          for (int64_t h = 0; h < H; ++h) model_bf16[h] = f32_to_bf16((float)model[h]);
          const double me = t_rel_err_ref(model_bf16, ref, H);
          printf(
              "%-16s %-10s T=%-7lld token %lld: relative L2 %.3g, the accumulation model's %.3g\n",
              ps->name, dt, (long long)T, (long long)t, err, me);
          if (verbose && err > BOUND_GPU) print_block_errors(out + t * H, model_bf16, ref, H);
          /* fp32 accumulation of the same codes stays within 2.2e-3 and the model within 2.6e-2
           * on these presets: a larger model error is the model's fault, never a pass */
          CHECK(me <= BOUND_TC_MODEL,
                "%s %s T=%lld token %lld: accumulation model error %.3g > %.0e", ps->name, dt,
                (long long)T, (long long)t, me, BOUND_TC_MODEL);
          if (!block && me > BOUND_GPU && me <= BOUND_TC_MODEL) bound = me;
        }
        CHECK(err <= bound, "%s %s T=%lld token %lld: relative L2 %.3g > %.3g (%s)", ps->name, dt,
              (long long)T, (long long)t, err, bound,
              !fp8    ? "1e-2"
              : block ? "1e-2, or 4e-2 for a block-scaled token within a case RMS of 1e-2"
                      : "1e-2, or above it the error of the tensor-core accumulation model");
      }
      const double rms = ss.n > 0 ? sqrt(sum_sq / ss.n) : 0.0;
      if (fp8 && block)
        CHECK(rms <= BOUND_GPU,
              "%s %s T=%lld: RMS of the %d sampled tokens' relative L2 %.3g > %.0e", ps->name, dt,
              (long long)T, ss.n, rms, BOUND_GPU);
      printf(
          "%-16s %-10s T=%-7lld config %d, %d permuted rows: sampled-token relative L2 worst "
          "%.2e, RMS %.2e (%d tokens)\n",
          ps->name, dt, (long long)T, cfg, hp.permuted_size, worst, rms, ss.n);
      free(x);
      free(h1);
      free(a);
      free(acc);
      free(ref);
      free(model);
      free(model_bf16);
      t_free_plan(&hp);
    }
    t_ws_free(&ws);
  }
  t_weights_free(&w);
  free(out);
  if (fp8) fp8_pool_free(&fp);
  moe_runner_destroy(r);
}

/* x * 2^m (m <= 0) for a normal bf16 x that stays normal; other values are kept. */
static uint16_t bf16_pow2(uint16_t x, int m) {
  const int ex = (x >> 7) & 0xFF;
  return ex != 0 && ex != 0xFF && ex + m >= 1 ? (uint16_t)((int)x + m * 128) : x;
}

/*
 * FP8 inputs: the BF16 inputs with magnitudes 2^m, m in [-4, 0], that vary where the FP8 path
 * keeps a scale, so that a scale taken from the wrong place changes the result (uniform random
 * values give every group nearly the same amax). BLOCK: per 128x128 block of each pool expert
 * and per token per 128 columns of the hidden states (GEMM1's output groups follow W1's row
 * blocks). PER_TENSOR: per pool expert (W1: 2^-p, so that expert 0, the calibration sample,
 * stays the largest) and per token.
 */
static void fp8_magnitudes(inputs *in, int mode) {
  const preset *ps = in->ps;
  const int64_t H = ps->H, I = ps->I;
  const int block = mode == MOE_SCALING_BLOCK;
  if (H % BLK || I % BLK) return; /* no FP8 run */
  for (int which = 1; which <= 2; ++which) {
    const int64_t rows = which == 1 ? 2 * I : H, cols = which == 1 ? H : I;
    uint16_t *w = which == 1 ? in->pool1 : in->pool2;
    for (int64_t p = 0; p < POOL; ++p)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c0 = 0; c0 < cols; c0 += BLK) {
          const int m = block ? -(int)((p + r / BLK * 2 + c0 / BLK * 3) % 5)
                              : (which == 1 ? -(int)p : (int)p - 3);
          uint16_t *x = w + (p * rows + r) * cols + c0;
          for (int64_t c = 0; c < BLK; ++c) x[c] = bf16_pow2(x[c], m);
        }
  }
  for (int64_t t = 0; t < in->T; ++t)
    for (int64_t h0 = 0; h0 < H; h0 += BLK) {
      const int m = block ? -(int)((t * 3 + h0 / BLK) % 5) : -(int)(t % 4);
      uint16_t *x = in->hidden + t * H + h0;
      for (int64_t h = 0; h < BLK; ++h) x[h] = bf16_pow2(x[h], m);
    }
}

/* One preset at one T: the host inputs, then the forward of each selected dtype. */
static void run_preset(const preset *ps, int64_t T, uint64_t seed, int must_cross, int bf16,
                       int fp8, int mxfp4) {
  const int64_t H = ps->H, I = ps->I, E = ps->E, K = ps->K;
  if (!bf16 && !fp8 && !(mxfp4 && ps->mxfp4)) return; /* nothing selected runs this preset */
  inputs in = {ps, T, seed, NULL, NULL, NULL, NULL, NULL, NULL};
  in.pool1 = t_xmalloc((size_t)(POOL * 2 * I * H) * 2);
  in.pool2 = t_xmalloc((size_t)(POOL * H * I) * 2);
  gen_fill_bf16(seed, GEN_STREAM_W1, GEN_SCALE_W1, in.pool1, POOL * 2 * I * H);
  gen_fill_bf16(seed, GEN_STREAM_W2, GEN_SCALE_W2, in.pool2, POOL * H * I);
  in.hidden = t_xmalloc((size_t)(T * H) * 2);
  gen_fill_bf16(seed, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, in.hidden, T * H);
  in.ids = t_xmalloc((size_t)(T * K) * 4);
  in.pw = t_xmalloc((size_t)(T * K) * 2);
  gen_routed(seed, T, (int32_t)K, (int32_t)E, in.ids, in.pw);
  if (bf16) run_dtype(&in, MOE_SCALING_NONE, must_cross);
  if (mxfp4 && ps->mxfp4) { /* before FP8's magnitudes change the hidden states */
    in.mx = mx_pool_new(&in);
    run_dtype(&in, MOE_SCALING_MX, must_cross);
    mx_pool_free(in.mx);
    in.mx = NULL;
  }
  if (fp8) { /* after BF16: the magnitudes change the inputs in place */
    fp8_magnitudes(&in, ps->fp8_mode);
    run_dtype(&in, ps->fp8_mode, must_cross);
  }
  free(in.pool1);
  free(in.pool2);
  free(in.hidden);
  free(in.ids);
  free(in.pw);
}

static int selected(const char *list, const char *name) {
  if (!list || !*list) return 1;
  const size_t n = strlen(name);
  for (const char *c = list; (c = strstr(c, name)) != NULL; c += n)
    if ((c == list || c[-1] == ',') && (c[n] == ',' || c[n] == '\0')) return 1;
  return 0;
}
#endif

int main(void) {
#ifdef MOE_TEST_WITH_CUDA
  if (!t_have_cuda()) {
    printf("SKIP: no CUDA device (the large-T forwards run on the GPU only)\n");
    return tc_summary("test_large_t");
  }
  const char *tl = getenv("MOE_TEST_LARGE_T");
  const char *pl = getenv("MOE_TEST_LARGE_PRESETS");
  const char *dl = getenv("MOE_TEST_LARGE_DTYPES");
  const int bf16 = selected(dl, "bf16"), fp8 = selected(dl, "fp8"), mx = selected(dl, "mxfp4");
  for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; ++i) {
    const preset *ps = &k_presets[i];
    if (!selected(pl, ps->name)) continue;
    if (tl && *tl) {
      for (const char *c = tl; *c;) {
        char *end = NULL;
        const long long T = strtoll(c, &end, 10);
        if (end == c || T <= 0) break;
        run_preset(ps, T, 0x1A46E0000ull + i, 0, bf16, fp8, mx);
        c = *end == ',' ? end + 1 : end;
      }
    } else {
      run_preset(ps, 65536, 0x1A46E0000ull + i, ps->extra_t == 0, bf16, fp8, mx);
      if (ps->extra_t) run_preset(ps, ps->extra_t, 0x1A46E1000ull + i, 1, bf16, fp8, mx);
    }
  }
#else
  printf("SKIP: built without CUDA (the large-T forwards run on the GPU only)\n");
#endif
  return tc_summary("test_large_t");
}
