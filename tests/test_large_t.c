/*
 * test_large_t.c - every model preset's forward at prefill sizes whose row offsets (rows x H or
 * I elements) pass the int32 range: T = 65536 by default (DeepSeek-V3: 590k padded rows x 7168),
 * and further where memory allows. GPU only (the CPU oracle cannot run these sizes in a test);
 * sampled tokens (the first, the last, and random ones, whose rows sit at the far end of the
 * permuted buffers) are checked against a float64 reference with the library's rounding points,
 * and every output element must be written and finite.
 *
 * Weights: each preset's E experts are built on the device from a pool of 4 random experts,
 * expert e being pool expert e % 4 with its rows rotated by an e-dependent amount, so every
 * expert differs (a wrong expert index changes the result) without generating tens of GB on the
 * host. Routing: pre-routed random ids and weights (conformance generator streams 6 and 7).
 *
 * MOE_TEST_LARGE_T=T[,T..] overrides the token counts (each applied to every preset);
 * MOE_TEST_LARGE_PRESETS=name[,name..] picks presets.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

#ifdef MOE_TEST_WITH_CUDA
#include <cuda_runtime.h>

#define POOL 4
#define SAMPLE_EDGE 4   /* first and last tokens checked */
#define SAMPLE_RANDOM 4 /* plus these many random ones */
#define BOUND_GPU 1e-2

typedef struct preset {
  const char *name;
  int32_t E, K;
  int64_t H, I;
  /* a second, larger T (0: none) where T = 65536 keeps the row offsets inside int32: there
   * the offsets pass int32 (checked), and it fits an 80 GB card */
  int64_t extra_t;
} preset;

/* The moe-bench presets (bench/moe_bench.c), SwiGLU. */
static const preset k_presets[] = {
    {"deepseek-v3", 256, 8, 7168, 2048, 0},       {"qwen3-235b", 128, 8, 4096, 1536, 0},
    {"qwen3-30b", 128, 8, 2048, 768, 262144},     {"mixtral-8x7b", 8, 2, 4096, 14336, 131072},
    {"gpt-oss-120b", 128, 4, 2880, 2880, 196608}, {"llama4-maverick", 128, 1, 5120, 8192, 262144},
};

static void cuda_ok(cudaError_t e, const char *what) {
  ++tc_checks;
  if (e != cudaSuccess) {
    tc_fail(__FILE__, __LINE__, "%s: %s", what, cudaGetErrorString(e));
    exit(tc_summary("test_large_t"));
  }
}

static int64_t rot_w1(int64_t e, int64_t rows) {
  return (e * 7 + 3) % rows;
}
static int64_t rot_w2(int64_t e, int64_t rows) {
  return (e * 5 + 1) % rows;
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

/* Prepared weights of all E experts, one expert at a time from the rotated pool. */
static void prepare_weights(moe_runner *r, const preset *ps, int which, const uint16_t *pool_dev,
                            ttensor *prepared) {
  const int64_t H = ps->H, I = ps->I;
  const int64_t rows = which == MOE_WEIGHTS_GEMM1 ? 2 * I : H, cols = which == 1 ? H : I;
  moe_problem p1;
  t_problem(&p1, 1, 1, 1, 0, 1, H, I);
  size_t per = 0;
  CHECK_OK(moe_weights_prepared_size(r, &p1, which, &per));
  CHECK(per * (size_t)ps->E == prepared->bytes, "%s W%d: per-expert size %zu x %d != %zu", ps->name,
        which, per, ps->E, prepared->bytes);
  ttensor *canon = tt_new(MOE_BACKEND_CUDA, DT_BF16, 3, (int64_t[]){1, rows, cols});
  for (int64_t e = 0; e < ps->E; ++e) {
    const int64_t rot = which == MOE_WEIGHTS_GEMM1 ? rot_w1(e, rows) : rot_w2(e, rows);
    rotated_copy((uint16_t *)canon->t.data, pool_dev + (e % POOL) * rows * cols, rows, cols, rot);
    DLTensor slice = prepared->t;
    int64_t shape[1] = {(int64_t)per};
    slice.shape = shape;
    slice.byte_offset = (uint64_t)(e * (int64_t)per);
    if (CHECK_OK(moe_weights_prepare(r, &p1, which, &canon->t, &slice, NULL))) break;
  }
  tmem_sync(MOE_BACKEND_CUDA);
  tt_free(canon);
}

static double silu_glu(double up, double gate) {
  return gate / (1.0 + exp(-gate)) * up;
}

/* out[0..H) for token t, with the library's rounding points (docs/formats.md). */
static void reference_token(const preset *ps, const uint16_t *hidden, const uint16_t *pool1,
                            const uint16_t *pool2, const int32_t *ids, const uint16_t *w, int64_t t,
                            double *h1, double *a, float *acc, double *out) {
  const int64_t H = ps->H, I = ps->I, K = ps->K;
  for (int64_t h = 0; h < H; ++h) acc[h] = 0.0f;
  const uint16_t *x = hidden + t * H;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t e = ids[t * K + k];
    const uint16_t *W1 = pool1 + (e % POOL) * 2 * I * H, *W2 = pool2 + (e % POOL) * H * I;
    const int64_t r1 = rot_w1(e, 2 * I), r2 = rot_w2(e, H);
    for (int64_t r = 0; r < 2 * I; ++r) {
      const uint16_t *row = W1 + ((r + r1) % (2 * I)) * H;
      double s = 0;
      for (int64_t h = 0; h < H; ++h) s += (double)bf16_to_f32(x[h]) * bf16_to_f32(row[h]);
      h1[r] = s;
    }
    for (int64_t i = 0; i < I; ++i)
      a[i] = bf16_to_f32(f32_to_bf16((float)silu_glu(h1[i], h1[I + i])));
    const float wk = bf16_to_f32(w[t * K + k]);
    for (int64_t h = 0; h < H; ++h) {
      const uint16_t *row = W2 + ((h + r2) % H) * I;
      double s = 0;
      for (int64_t i = 0; i < I; ++i) s += a[i] * bf16_to_f32(row[i]);
      acc[h] += wk * bf16_to_f32(f32_to_bf16((float)s));
    }
  }
  for (int64_t h = 0; h < H; ++h) out[h] = bf16_to_f32(f32_to_bf16(acc[h]));
}

static void run_preset(const preset *ps, int64_t T, uint64_t seed, int must_cross) {
  const int64_t H = ps->H, I = ps->I, E = ps->E, K = ps->K;
  moe_runner *r = t_runner(MOE_BACKEND_CUDA, MOE_ACTIVATION_SWIGLU);
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
    printf("SKIP %s T=%lld: needs %.1f GB, %.1f GB free on this card\n", ps->name, (long long)T,
           need / 1e9, free_b / 1e9);
    moe_runner_destroy(r);
    return;
  }
  /* Host inputs: the expert pool, hidden states, routing. */
  uint16_t *pool1 = t_xmalloc((size_t)(POOL * 2 * I * H) * 2);
  uint16_t *pool2 = t_xmalloc((size_t)(POOL * H * I) * 2);
  gen_fill_bf16(seed, GEN_STREAM_W1, GEN_SCALE_W1, pool1, POOL * 2 * I * H);
  gen_fill_bf16(seed, GEN_STREAM_W2, GEN_SCALE_W2, pool2, POOL * H * I);
  uint16_t *hidden = t_xmalloc((size_t)(T * H) * 2);
  gen_fill_bf16(seed, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, hidden, T * H);
  int32_t *ids = t_xmalloc((size_t)(T * K) * 4);
  uint16_t *pw = t_xmalloc((size_t)(T * K) * 2);
  gen_routed(seed, T, (int32_t)K, (int32_t)E, ids, pw);

  ttensor *pool1_d =
      tt_from_host(MOE_BACKEND_CUDA, DT_BF16, 1, (int64_t[]){POOL * 2 * I * H}, pool1);
  ttensor *pool2_d = tt_from_host(MOE_BACKEND_CUDA, DT_BF16, 1, (int64_t[]){POOL * H * I}, pool2);
  t_weights w;
  w.w1 = tt_new(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){(int64_t)b1});
  w.w2 = tt_new(MOE_BACKEND_CUDA, DT_U8, 1, (int64_t[]){(int64_t)b2});
  prepare_weights(r, ps, MOE_WEIGHTS_GEMM1, (const uint16_t *)pool1_d->t.data, w.w1);
  prepare_weights(r, ps, MOE_WEIGHTS_GEMM2, (const uint16_t *)pool2_d->t.data, w.w2);
  tt_free(pool1_d);
  tt_free(pool2_d);

  t_ws ws;
  uint16_t *out = t_xmalloc((size_t)(T * H) * 2);
  if (!CHECK_OK(t_ws_alloc(r, MOE_BACKEND_CUDA, &p, cfg, &ws))) {
    t_route route;
    t_route_init(&route);
    route.method = MOE_ROUTING_TOPK;
    route.input = T_INPUT_IDS;
    route.ids = ids;
    route.weights = pw;
    moe_plan plan;
    t_moe_in in = {hidden, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    host_plan hp;
    if (!CHECK_OK(t_prepare(r, MOE_BACKEND_CUDA, &p, &route, cfg, &ws, &plan)) &&
        !CHECK_OK(t_run(r, MOE_BACKEND_CUDA, &p, MOE_ACTIVATION_SWIGLU, &in, &w, cfg, &plan, &ws, 1,
                        out)) &&
        t_read_plan(r, &plan, &ws, (int32_t)E, &hp) == 0) {
      const int64_t bad = t_count_nonfinite(out, T * H);
      CHECK(bad == 0, "%s T=%lld: %lld output elements not finite or not written", ps->name,
            (long long)T, (long long)bad);
      /* the permuted rows reached past 2^31 elements (the point of this test), checked on
       * each preset's largest default T */
      const int crossed =
          (int64_t)hp.permuted_size * (H > I ? H : I) > INT32_MAX || T * H > INT32_MAX;
      printf("%-16s T=%-7lld row offsets %s the int32 range\n", ps->name, (long long)T,
             crossed ? "pass" : "stay inside");
      CHECK(crossed || !must_cross, "%s T=%lld: %d permuted rows stay inside int32 offsets",
            ps->name, (long long)T, hp.permuted_size);
      double *h1 = t_xmalloc((size_t)(2 * I) * sizeof(double));
      double *a = t_xmalloc((size_t)I * sizeof(double));
      float *acc = t_xmalloc((size_t)H * sizeof(float));
      double *ref = t_xmalloc((size_t)H * sizeof(double));
      t_rng rng = {seed ^ 0x9E3779B97F4A7C15ull};
      double worst = 0;
      for (int i = 0; i < 2 * SAMPLE_EDGE + SAMPLE_RANDOM; ++i) {
        const int64_t t = i < SAMPLE_EDGE       ? i
                          : i < 2 * SAMPLE_EDGE ? T - 2 * SAMPLE_EDGE + i
                                                : t_rng_range(&rng, 0, T - 1);
        reference_token(ps, hidden, pool1, pool2, hp.topk_ids, hp.weights, t, h1, a, acc, ref);
        const double err = t_rel_err_ref(out + t * H, ref, H);
        if (err > worst) worst = err;
        CHECK(err <= BOUND_GPU, "%s T=%lld token %lld: relative L2 %.3g > %.0e", ps->name,
              (long long)T, (long long)t, err, BOUND_GPU);
      }
      printf("%-16s T=%-7lld config %d, %d permuted rows: worst sampled-token relative L2 %.2e\n",
             ps->name, (long long)T, cfg, hp.permuted_size, worst);
      free(h1);
      free(a);
      free(acc);
      free(ref);
      t_free_plan(&hp);
    }
    t_ws_free(&ws);
  }
  t_weights_free(&w);
  free(out);
  free(pool1);
  free(pool2);
  free(hidden);
  free(ids);
  free(pw);
  moe_runner_destroy(r);
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
  for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; ++i) {
    const preset *ps = &k_presets[i];
    if (!selected(pl, ps->name)) continue;
    if (tl && *tl) {
      for (const char *c = tl; *c;) {
        char *end = NULL;
        const long long T = strtoll(c, &end, 10);
        if (end == c || T <= 0) break;
        run_preset(ps, T, 0x1A46E0000ull + i, 0);
        c = *end == ',' ? end + 1 : end;
      }
    } else {
      run_preset(ps, 65536, 0x1A46E0000ull + i, ps->extra_t == 0);
      if (ps->extra_t) run_preset(ps, ps->extra_t, 0x1A46E1000ull + i, 1);
    }
  }
#else
  printf("SKIP: built without CUDA (the large-T forwards run on the GPU only)\n");
#endif
  return tc_summary("test_large_t");
}
