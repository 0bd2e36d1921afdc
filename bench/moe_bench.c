/*
 * moe-bench - the main job: real MoE forwards of model presets through the public API, on the
 * GPU when one is present, else on the CPU reference backend; prints a table (or JSON lines).
 *
 * Per row: µs per forward (median), TFLOP/s = 2·Σ_local cnt_e·(f·I·H + I·H) / t, TB/s of the
 * bytes that must move (each distinct active local expert's weights once, with their scales in
 * FP8, + hidden states in + output out), and on the GPU the same-run ceilings (device copy
 * bandwidth, read-only streaming bandwidth, dense bf16 GEMM rate through cuBLAS, dense e4m3 GEMM
 * rate through cuBLASLt) with the floor max(bytes / read BW, FLOPs / the GEMM rate of the
 * preset's dtype) and t/floor as a % of limit.
 * FP8 presets (-fp8) take bf16 hidden states (the library quantizes them) and bf16 weights that
 * moe_weights_prepare quantizes; per-tensor ones get static input scales calibrated as
 * amax / 448 of a sample (calibrate_scales). MXFP4 presets (-mxfp4, W4A16) take random packed
 * e2m1 blocks and ue8m0 scales (the checkpoint layout) through moe_weights_prepare_scaled; the
 * byte model counts 4.25 bits a weight (4 + one 8-bit scale per 32). A preset whose scaling mode
 * the backend cannot run is reported on one line ("NAME: skipped: <library message>") and gets no
 * rows. GPU timing: CUDA events around CUDA-graph replays (routing + GEMMs + finalize), weights
 * rotated over several copies so L2 stays cold; NVTX ranges around the timed region. µs is the
 * steady state of 8 forwards per graph for forwards under 1 ms (the graph launch amortised, as
 * in a model's graph), the JSON's us_single one forward per graph launch.
 * On the CPU backend there are no ceilings, so no floor; a preset whose prepared weights exceed
 * --cpu-weight-gb runs with H and I scaled down (E, K and routing kept), and says so.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moe_trtllm.h"
#include "bench_device.h"
#include "bench_preset.h"

typedef struct {
  const char *presets;
  const char *tokens;
  int backend; /* MOE_BACKEND_* */
  int routing_only;
  int iters;
  int json;
  const char *configs;  /* NULL = the default config; "all" = every valid one; "tuned" = the
                         * fastest by moe_runner_autotune; or "a,b,.." */
  double cpu_weight_gb; /* CPU backend: prepared-weight budget per preset (H, I scaled down) */
  int dry_run;          /* resolve every cell (configs, sizes, support) without running it */
  int sm_budget;        /* moe_runner_options.sm_budget (0 = all SMs) */
} options;

static const char *dtype_name(const preset *p) {
  return p->scaling == MOE_SCALING_NONE ? "bf16"
         : p->scaling == MOE_SCALING_MX ? "mxfp4"
                                        : "fp8_e4m3";
}
static const char *scaling_name(const preset *p) {
  return p->scaling == MOE_SCALING_PER_TENSOR ? "per_tensor"
         : p->scaling == MOE_SCALING_BLOCK    ? "block"
         : p->scaling == MOE_SCALING_MX       ? "mx"
                                              : "none";
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: moe-bench [--preset NAME[,NAME..]|all] [--tokens N[,N..]] [--backend "
      "auto|cpu|cuda]\n"
      "                 [--stage all|routing] [--iters N] [--config N[,N..]|all|tuned] [--json]\n"
      "                 [--cpu-weight-gb G] [--dry-run] [--sm-budget N]\n"
      "presets:");
  for (int i = 0; i < k_num_presets; ++i) fprintf(f, " %s", k_presets[i].name);
  fprintf(f, "\n");
}

static void help(void) {
  usage(stdout);
  printf(
      "\nTimes whole MoE forwards (routing + GEMM1 + activation + GEMM2 + finalize; --stage\n"
      "routing: routing alone) of model presets through the public API, on the GPU when one is\n"
      "present (else the CPU reference backend). Defaults: every preset; T = 1..16384 on the GPU,\n"
      "T = 1,8,32 on the CPU; the default config of each cell.\n"
      "\nFP8 presets (NAME-fp8): the BF16 preset's shape, routing and inputs on an e4m3 runner;\n"
      "bf16 hidden states (the library quantizes them) and bf16 weights quantized by\n"
      "moe_weights_prepare. Block scales (128x128 weights, 1x128 activations): deepseek-v3-fp8,\n"
      "qwen3-235b-fp8, qwen3-30b-fp8. Per-tensor scales: mixtral-8x7b-fp8, llama4-maverick-fp8,\n"
      "with static input scales calibrated as amax / 448 of a sample (the hidden states; GEMM1's\n"
      "activation output for 16 tokens x 64 rows of expert 0). A preset whose scaling mode the\n"
      "backend cannot run prints 'NAME: skipped: <the library's reason>' (stderr with --json)\n"
      "and gets no rows; a run in which every preset was skipped exits 1.\n"
      "\nMXFP4 presets (NAME-mxfp4, W4A16): gpt-oss-120b-mxfp4 (with fp32 biases on both GEMMs\n"
      "and gpt-oss's clamped SwiGLU: alpha 1.702, beta 1, limit 7; gpt-oss-120b's routing and\n"
      "hidden states) and gpt-oss-20b-mxfp4; random packed e2m1 weights with ue8m0 scales (the\n"
      "checkpoint layout) prepared by moe_weights_prepare_scaled; bf16 hidden states.\n"
      "\ncolumns (and JSON keys):\n"
      "  preset    model shape: E experts, top-K, hidden H, intermediate I, routing method,\n"
      "            dtype and scaling (JSON: dtype bf16|fp8_e4m3|mxfp4, scaling\n"
      "            none|per_tensor|block|mx)\n"
      "  T         tokens of the forward (tokens)\n"
      "  H, I      (CPU) hidden and intermediate size run; smaller than the model's when scaled\n"
      "  slots     routed (token, expert) pairs on this rank, sum of cnt_e (local_slots)\n"
      "  us        median microseconds per forward; on the GPU the steady state of 8 forwards\n"
      "            per CUDA graph below 1 ms (us_single: one forward per graph launch)\n"
      "  TFLOP/s   2*slots*(2I*H + I*H) / us: the GEMMs' useful FLOPs per second (tflops)\n"
      "  TB/s      bytes that must move / us: each active expert's W1 and W2 once (bf16: 2 bytes\n"
      "            a weight; fp8: 1 byte a weight + its fp32 scales: 4 bytes per expert and\n"
      "            tensor per-tensor, 4 per 128x128 block; mxfp4: 4.25 bits a weight, + the fp32\n"
      "            biases of gpt-oss-120b-mxfp4), hidden states in, output out (tbps)\n"
      "  floor_us  (GPU) max(bytes / read-only bandwidth, FLOPs / dense GEMM rate of the\n"
      "            preset's dtype), ceilings measured in the same run: the fastest this forward\n"
      "            could be (floor_us; the ceilings used: floor_tbps, floor_tflops)\n"
      "  %%floor    (GPU) floor_us / us, the share of the limit reached (pct_floor)\n"
      "  config    (GPU) the kernel config's name: token tile t, cluster size c, weight rows m,\n"
      "            pipeline stages s (config = its index, config_name)\n"
      "  plan      (CPU) the config's routing-plan tile and cluster size (the CPU backend runs\n"
      "            no GPU kernels; config = its index, config_name)\n"
      "  JSON only: active_experts (local experts with at least one slot), backend, device,\n"
      "            stage, scaled, hidden_size, intermediate_size, flops and bytes (the models\n"
      "            behind TFLOP/s and TB/s); per-tensor FP8:\n"
      "            gemm1_input_scale, gemm2_input_scale; GPU: the same-run ceilings copy_tbps\n"
      "            (device copy, read + written), read_tbps (read-only streaming), gemm_tflops\n"
      "            (cuBLAS bf16), fp8_gemm_tflops (cuBLASLt e4m3; fp8_fast_accum: whether the\n"
      "            fastest used fast accumulation)\n"
      "  --dry-run columns: weights_gb (prepared W1 + W2, one copy), workspace_mb\n"
      "\noptions: --preset a list or all; --tokens the T list; --backend auto picks the GPU when\n"
      "present; --stage routing times moe_routing_prepare alone; --iters timed repetitions\n"
      "(default 50 GPU, 3 CPU); --config a list of config indices, all valid ones, or tuned\n"
      "(moe_runner_autotune's pick); --json one JSON object per row (bench/plot.py draws them);\n"
      "--dry-run runs nothing: per cell the configs, prepared-weight and workspace sizes, and\n"
      "the presets the backend cannot run (with --backend cuda and no GPU: the sm_90 catalogue,\n"
      "as the GPU would run it; --config tuned lists every valid config); --sm-budget N creates\n"
      "the runners with moe_runner_options.sm_budget = N (the GEMMs' persistent kernels and\n"
      "copy grids use at most N SMs, docs/ep.md; 0 = all): its cost is the difference from a\n"
      "run without it (JSON key sm_budget; the text header names it).\n"
      "The CPU backend has no ceilings, so no floor columns. A preset whose prepared weights\n"
      "exceed --cpu-weight-gb (default 1.5) runs on the CPU with H and I halved until they fit\n"
      "(multiples of 64, of 128 for FP8; E, K and routing kept); the run says which presets it\n"
      "scaled and why, and JSON rows carry scaled, hidden_size and intermediate_size.\n");
}

static int parse(int argc, char **argv, options *o) {
  o->presets = NULL;
  o->tokens = NULL;
  o->backend = MOE_BACKEND_AUTO;
  o->routing_only = 0;
  o->iters = 0;
  o->json = 0;
  o->configs = NULL;
  o->cpu_weight_gb = 1.5;
  o->dry_run = 0;
  o->sm_budget = 0;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--preset") && v)
      o->presets = argv[++i];
    else if (!strcmp(a, "--tokens") && v)
      o->tokens = argv[++i];
    else if (!strcmp(a, "--backend") && v) {
      ++i;
      o->backend = parse_backend(v);
      if (o->backend == -2) {
        fprintf(stderr, "moe-bench: --backend: expected auto, cpu or cuda, given '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(a, "--stage") && v) {
      o->routing_only = !strcmp(argv[++i], "routing");
      if (!o->routing_only && strcmp(v, "all")) {
        fprintf(stderr, "moe-bench: --stage: expected all or routing, given '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(a, "--iters") && v)
      o->iters = atoi(argv[++i]);
    else if (!strcmp(a, "--config") && v)
      o->configs = argv[++i];
    else if (!strcmp(a, "--json"))
      o->json = 1;
    else if (!strcmp(a, "--dry-run"))
      o->dry_run = 1;
    else if (!strcmp(a, "--cpu-weight-gb") && v) {
      o->cpu_weight_gb = strtod(argv[++i], NULL);
      if (!(o->cpu_weight_gb > 0)) {
        fprintf(stderr, "moe-bench: --cpu-weight-gb: expected a positive number, given '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(a, "--sm-budget") && v) {
      char *end = NULL;
      const long n = strtol(argv[++i], &end, 10);
      if (end == v || *end != '\0' || n < 0 || n > 65535) {
        fprintf(stderr, "moe-bench: --sm-budget: expected 0..65535 SMs, given '%s'\n", v);
        return 2;
      }
      o->sm_budget = (int)n;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      help();
      return 1;
    } else {
      fprintf(stderr, "moe-bench: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (o->dry_run && o->json) {
    fprintf(stderr, "moe-bench: --dry-run prints a table; it does not take --json\n");
    return 2;
  }
  return 0;
}

/* Fill @p bytes of (device) memory with repeats of a random block of bytes in [lo, lo + span). */
static int fill_bytes(bench_dev *d, void *dst, size_t bytes, int lo, int span) {
  size_t block = bytes < ((size_t)16 << 20) ? bytes : ((size_t)16 << 20);
  uint8_t *h = (uint8_t *)malloc(block + 1);
  if (!h) return 1;
  for (size_t i = 0; i < block; ++i) h[i] = (uint8_t)(lo + (int)(rnd() % (uint64_t)span));
  int rc = bench_fill_repeat(d, dst, bytes, h, block);
  free(h);
  return rc;
}

static float bf16_at(const host_block *b, int64_t i) {
  const uint32_t u = (uint32_t)b->h[(size_t)i % b->n] << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* The largest finite e4m3fn value (docs/formats.md, "FP8"). */
static const float kE4m3Max = 448.0f;

/* Static per-tensor input scales, calibrated as a serving stack calibrates them: amax / 448 of
 * a sample. s1 (GEMM1's input): the exact amax of the hidden states (the tensor repeats the host
 * block x). s2 (GEMM2's input): the amax of GEMM1's activation output up * silu(gate) in fp32 for
 * the first min(T, 16) tokens against the first 64 rows of expert 0 (w1: the host block of the
 * first weight copy's canonical bf16 W1 [E, 2I, H], before quantization). A sample, so some
 * values of the whole tensor may saturate, as with a real calibration. */
static void calibrate_scales(const host_block *x, const host_block *w1, int64_t T, int64_t H,
                             int64_t I, float *s1, float *s2) {
  float ax = 0.0f, ay = 0.0f;
  for (size_t i = 0; i < x->n; ++i) ax = fmaxf(ax, fabsf(bf16_at(x, (int64_t)i)));
  const int64_t nt = T < 16 ? T : 16, nr = I < 64 ? I : 64;
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t j = 0; j < nr; ++j) {
      float up = 0.0f, gate = 0.0f;
      for (int64_t c = 0; c < H; ++c) {
        const float xv = bf16_at(x, t * H + c);
        up += xv * bf16_at(w1, j * H + c);
        gate += xv * bf16_at(w1, (I + j) * H + c);
      }
      ay = fmaxf(ay, fabsf(up * gate / (1.0f + expf(-gate))));
    }
  *s1 = ax > 0.0f ? ax / kE4m3Max : 1.0f;
  *s2 = ay > 0.0f ? ay / kE4m3Max : 1.0f;
}

typedef struct {
  double us, us_single, tflops, tbps, floor_us;
  double floor_bw, floor_rate; /* the ceilings of floor_us (bytes/s, FLOP/s) */
  double bytes, flops;         /* the model behind tbps and tflops */
  int64_t local_slots, active_experts;
  int32_t config;
  char config_name[64];
  float s1, s2;                         /* per-tensor FP8: the static input scales */
  size_t weight_bytes, workspace_bytes; /* --dry-run: prepared W1 + W2 (one copy), workspace */
} row_result;

#define MAX_CONFIGS 64

/* Steady-state timing (run_case): forwards per graph (rounded up to whole rounds of weight
 * copies), and the single-forward time below which it is measured. */
enum { kForwardsPerGraph = 8 };
static const double kSteadyBelowUs = 1000.0;

/* Median microseconds per forward of `iters` timings by bench_time (t: scratch of `iters`);
 * nonzero on failure. */
static int time_median(bench_dev *d, const bench_case *bc, int per_graph, int iters, double *t,
                       double *us) {
  if (bench_time(d, bc, per_graph, iters, t)) return 1;
  qsort(t, (size_t)iters, sizeof *t, cmp_double);
  *us = t[iters / 2];
  return 0;
}

/* The configs --config names for this problem (default: the runner's default config). */
static int resolve_configs(moe_runner *r, const moe_problem *prob, const char *spec,
                           int32_t *cfgs) {
  if (!spec)
    return check(moe_runner_get_default_config(r, prob, &cfgs[0]), "default config") ? -1 : 1;
  if (!strcmp(spec, "all") || !strcmp(spec, "tuned")) { /* tuned: autotune picks in run_case */
    int32_t n = 0;
    if (check(moe_runner_get_valid_configs(r, prob, cfgs, MAX_CONFIGS, &n), "valid configs"))
      return -1;
    return n < MAX_CONFIGS ? n : MAX_CONFIGS;
  }
  int64_t v[MAX_CONFIGS];
  const int n = parse_list(spec, v, MAX_CONFIGS);
  if (n <= 0) {
    fprintf(stderr, "moe-bench: --config: expected N[,N..], all or tuned, given '%s'\n", spec);
    return -1;
  }
  for (int i = 0; i < n; ++i) cfgs[i] = (int32_t)v[i];
  return n;
}

/* Bytes of one expert's prepared W1 and W2 (and biases) that a forward must read: bf16 2 bytes a
 * weight; FP8 1 byte a weight + the fp32 scales (per-tensor: one per expert and tensor; block:
 * one per 128x128 block); MXFP4 4.25 bits a weight (a 4-bit value + an 8-bit scale per 32);
 * gpt-oss presets also their fp32 biases (2I + H). */
static double expert_weight_bytes(const preset *p, int64_t H, int64_t I) {
  const double f = 2.0, weights = f * I * H + (double)H * I; /* gated presets */
  const double biases = p->gpt_oss ? 4.0 * (f * I + (double)H) : 0.0;
  if (p->scaling == MOE_SCALING_NONE) return 2.0 * weights + biases;
  if (p->scaling == MOE_SCALING_MX) return weights * 4.25 / 8.0 + biases; /* e2m1 + ue8m0 / 32 */
  if (p->scaling == MOE_SCALING_PER_TENSOR) return weights + 2 * 4.0;
  const double b = 128.0;
  return weights + 4.0 * ((f * I / b) * (H / b) + (H / b) * (I / b));
}

/* One preset at one T: build inputs, prepare weights once, time forwards with each config of
 * --config (one result each, in order). With --dry-run only the configs and sizes. Returns the
 * number of results, -2 on failure. */
static int run_case(bench_dev *d, moe_runner *r, const preset *p, int64_t T, const options *o,
                    row_result *results) {
  const int gpu = bench_is_gpu(d);
  const int dev = gpu ? kDLCUDA : kDLCPU;
  const int per_tensor = p->scaling == MOE_SCALING_PER_TENSOR, mx = p->scaling == MOE_SCALING_MX;
  const int fp8 = per_tensor || p->scaling == MOE_SCALING_BLOCK;
  seed_cell(p->base ? p->base : p->name, T); /* an FP8 preset: its BF16 preset's inputs */
  moe_problem prob = preset_problem(p, T);
  /* Routing does not depend on H and I; the routing stage sizes its workspace with H = I = 64
   * (128 for FP8, whose shapes must be multiples of 128) so that large T is not limited by the
   * int32 row offsets of the GEMM buffers. */
  if (o->routing_only) prob.hidden_size = prob.intermediate_size = fp8 ? 128 : 64;
  const int64_t H = prob.hidden_size, I = prob.intermediate_size;
  int32_t cfgs[MAX_CONFIGS];
  int ncfg = resolve_configs(
      r, &prob, o->dry_run && o->configs && !strcmp(o->configs, "tuned") ? "all" : o->configs,
      cfgs);
  if (ncfg <= 0) return -2;
  size_t ws_bytes = 0, w1_bytes = 0, w2_bytes = 0;
  for (int ci = 0; ci < ncfg; ++ci) { /* one workspace that fits every listed config */
    size_t b = 0;
    if (check(moe_runner_get_workspace_size(r, &prob, cfgs[ci], &b), "workspace size")) return -2;
    if (b > ws_bytes) ws_bytes = b;
  }
  if (check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM1, &w1_bytes), "w1 size") ||
      check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM2, &w2_bytes), "w2 size"))
    return -2;
  if (o->dry_run) {
    int32_t backend = MOE_BACKEND_CPU;
    for (int ci = 0; ci < ncfg; ++ci) {
      moe_config_info info;
      if (check(moe_runner_describe_config(r, cfgs[ci], &info), "describe config")) return -2;
      results[ci].config = cfgs[ci];
      if (moe_runner_get_backend(r, &backend) == MOE_STATUS_SUCCESS && backend == MOE_BACKEND_CUDA)
        snprintf(results[ci].config_name, sizeof results[ci].config_name, "%s", info.name);
      else /* as in the CPU table: the routing plan's tile and cluster size */
        snprintf(results[ci].config_name, sizeof results[ci].config_name, "tile%d_c%d",
                 (int)info.tile, (int)info.cluster_size);
      results[ci].weight_bytes = w1_bytes + w2_bytes;
      results[ci].workspace_bytes = ws_bytes;
    }
    return ncfg;
  }
  /* Canonical bf16 weights (the source of moe_weights_prepare): W1 [E, 2I, H], W2 [E, H, I];
   * MXFP4: the packed e2m1 blocks [E, R, C/2] (+ ue8m0 scales [E, R, C/32] in mx_scales). */
  const size_t c1_bytes = (size_t)p->E * (size_t)(2 * I) * (size_t)H * (mx ? 1 : 4) / 2,
               c2_bytes = (size_t)p->E * (size_t)H * (size_t)I * (mx ? 1 : 4) / 2,
               canon_bytes = c1_bytes > c2_bytes ? c1_bytes : c2_bytes;
  /* Rotating weight copies keep L2 cold on the GPU (enough that one pass exceeds it 4x). */
  int copies = 1;
  if (gpu && !o->routing_only)
    copies = weight_copies(d, (double)(w1_bytes + w2_bytes), ws_bytes + 2.0 * (double)canon_bytes);
  const int ds = p->method == MOE_ROUTING_DEEPSEEK_V3;
  int64_t sh_logits[2] = {T, p->E}, sh_bias[1] = {p->E}, sh_x[2] = {T, H};
  int64_t sh_w1[3] = {p->E, 2 * I, mx ? H / 2 : H}, sh_w2[3] = {p->E, H, mx ? I / 2 : I};
  int64_t sh_s1[3] = {p->E, 2 * I, H / 32}, sh_s2[3] = {p->E, H, I / 32};
  int64_t sh_b1[2] = {p->E, 2 * I}, sh_b2[2] = {p->E, H}, sh_e[1] = {p->E};
  int64_t sh_p1[1] = {(int64_t)w1_bytes}, sh_p2[1] = {(int64_t)w2_bytes}, sh_s[1] = {1};
  size_t logit_bytes = (size_t)(T * p->E * (ds ? 4 : 2));
  void *logits = bench_alloc(d, logit_bytes + 16), *bias = bench_alloc(d, (size_t)p->E * 2 + 16);
  void *x = bench_alloc(d, (size_t)(T * H * 2) + 16),
       *out = bench_alloc(d, (size_t)(T * H * 2) + 16);
  void *ws = bench_alloc(d, ws_bytes);
  void *scales = per_tensor ? bench_alloc(d, 256) : NULL; /* s1, s2 (fp32) */
  /* gpt-oss: fp32 biases [E, 2I] and [E, H], then alpha, beta, limit [E] each */
  const size_t gb1 = (size_t)p->E * (size_t)(2 * I) * 4, gb2 = (size_t)p->E * (size_t)H * 4;
  void *gpt = p->gpt_oss && !o->routing_only ? bench_alloc(d, gb1 + gb2 + 12 * (size_t)p->E) : NULL;
  void *w1[4] = {0}, *w2[4] = {0};
  host_block xb = {NULL, 0}, w1b = {NULL, 0};
  float s1 = 0.0f, s2 = 0.0f;
  int rc = -2;
  if (!logits || !bias || !x || !out || !ws || (per_tensor && !scales) ||
      (p->gpt_oss && !o->routing_only && !gpt))
    goto done;
  if (gpt) { /* biases in [-0.25, 0.25), then alpha 1.702, beta 1, limit 7 per expert */
    const size_t nb = (gb1 + gb2) / 4, ne = (size_t)p->E;
    float *h = (float *)malloc((nb + 3 * ne) * sizeof(float));
    if (!h) goto done;
    for (size_t i = 0; i < nb; ++i) h[i] = ldexpf((float)((int)(rnd() >> 56) - 128), -9);
    for (size_t i = 0; i < ne; ++i) {
      h[nb + i] = 1.702f;
      h[nb + ne + i] = 1.0f;
      h[nb + 2 * ne + i] = 7.0f;
    }
    const int e = bench_upload(d, gpt, h, (nb + 3 * ne) * sizeof(float));
    free(h);
    if (e) goto done;
  }
  {
    const int e = upload_logits(d, p, T, logits, bias);
    if (e || fill_random_keep(d, x, (size_t)(T * H * 2), 6, per_tensor ? &xb : NULL)) goto done;
  }
  for (int c = 0; c < copies && mx; ++c) { /* MXFP4: the checkpoint layout */
    void *canon = bench_alloc(d, canon_bytes), *cs = bench_alloc(d, canon_bytes / 16 + 16);
    w1[c] = bench_alloc(d, w1_bytes);
    w2[c] = bench_alloc(d, w2_bytes);
    if (!canon || !cs || !w1[c] || !w2[c]) {
      bench_free(d, canon);
      bench_free(d, cs);
      goto done;
    }
    DLTensor tc1 = bench_tensor(canon, dev, kDLUInt, 8, 3, sh_w1);
    DLTensor tc2 = bench_tensor(canon, dev, kDLUInt, 8, 3, sh_w2);
    DLTensor ts1 = bench_tensor(cs, dev, kDLFloat8_e8m0fnu, 8, 3, sh_s1);
    DLTensor ts2 = bench_tensor(cs, dev, kDLFloat8_e8m0fnu, 8, 3, sh_s2);
    DLTensor tp1 = bench_tensor(w1[c], dev, kDLUInt, 8, 1, sh_p1);
    DLTensor tp2 = bench_tensor(w2[c], dev, kDLUInt, 8, 1, sh_p2);
    /* random e2m1 pairs; scales 2^-7 .. 2^-4 (codes 120..123) */
    int e = fill_bytes(d, canon, c1_bytes, 0, 256) || fill_bytes(d, cs, c1_bytes / 16, 120, 4) ||
            check(moe_weights_prepare_scaled(r, &prob, MOE_WEIGHTS_GEMM1, &tc1, &ts1, &tp1,
                                             bench_stream(d)),
                  "prepare W1") ||
            fill_bytes(d, canon, c2_bytes, 0, 256) || fill_bytes(d, cs, c2_bytes / 16, 120, 4) ||
            check(moe_weights_prepare_scaled(r, &prob, MOE_WEIGHTS_GEMM2, &tc2, &ts2, &tp2,
                                             bench_stream(d)),
                  "prepare W2");
    bench_sync(d);
    bench_free(d, canon);
    bench_free(d, cs);
    if (e) goto done;
  }
  for (int c = 0; c < copies && !mx; ++c) {
    void *canon = bench_alloc(d, canon_bytes);
    w1[c] = bench_alloc(d, w1_bytes);
    w2[c] = bench_alloc(d, w2_bytes);
    if (!canon || !w1[c] || !w2[c]) {
      bench_free(d, canon);
      goto done;
    }
    DLTensor tc1 = bench_tensor(canon, dev, kDLBfloat, 16, 3, sh_w1);
    DLTensor tc2 = bench_tensor(canon, dev, kDLBfloat, 16, 3, sh_w2);
    DLTensor tp1 = bench_tensor(w1[c], dev, kDLUInt, 8, 1, sh_p1);
    DLTensor tp2 = bench_tensor(w2[c], dev, kDLUInt, 8, 1, sh_p2);
    /* On an FP8 runner moe_weights_prepare quantizes the bf16 weights (amax / 448 per expert or
     * per 128x128 block, docs/formats.md). */
    int e = fill_random_keep(d, canon, c1_bytes, 8, per_tensor && c == 0 ? &w1b : NULL) ||
            check(moe_weights_prepare(r, &prob, MOE_WEIGHTS_GEMM1, &tc1, &tp1, bench_stream(d)),
                  "prepare W1") ||
            fill_random(d, canon, c2_bytes, 8) ||
            check(moe_weights_prepare(r, &prob, MOE_WEIGHTS_GEMM2, &tc2, &tp2, bench_stream(d)),
                  "prepare W2");
    bench_sync(d);
    bench_free(d, canon);
    if (e) goto done;
  }
  if (per_tensor && !o->routing_only) {
    calibrate_scales(&xb, &w1b, T, H, I, &s1, &s2);
    const float sv[2] = {s1, s2};
    if (bench_upload(d, scales, sv, sizeof sv)) goto done;
  }
  {
    DLTensor t_logits =
        bench_tensor(logits, dev, ds ? kDLFloat : kDLBfloat, ds ? 32 : 16, 2, sh_logits);
    DLTensor t_bias = bench_tensor(bias, dev, kDLBfloat, 16, 1, sh_bias);
    DLTensor t_x = bench_tensor(x, dev, kDLBfloat, 16, 2, sh_x);
    DLTensor t_out = bench_tensor(out, dev, kDLBfloat, 16, 2, sh_x);
    DLTensor t_s1 = bench_tensor(scales, dev, kDLFloat, 32, 1, sh_s);
    DLTensor t_s2 = bench_tensor(scales ? (char *)scales + 4 : NULL, dev, kDLFloat, 32, 1, sh_s);
    DLTensor t_w1[4], t_w2[4];
    char *g = (char *)gpt;
    DLTensor t_b1 = bench_tensor(g, dev, kDLFloat, 32, 2, sh_b1);
    DLTensor t_b2 = bench_tensor(g ? g + gb1 : NULL, dev, kDLFloat, 32, 2, sh_b2);
    DLTensor t_al = bench_tensor(g ? g + gb1 + gb2 : NULL, dev, kDLFloat, 32, 1, sh_e);
    DLTensor t_be =
        bench_tensor(g ? g + gb1 + gb2 + 4 * (size_t)p->E : NULL, dev, kDLFloat, 32, 1, sh_e);
    DLTensor t_li =
        bench_tensor(g ? g + gb1 + gb2 + 8 * (size_t)p->E : NULL, dev, kDLFloat, 32, 1, sh_e);
    const moe_routing_args ra = routing_args_of(p, &t_logits, &t_bias);
    moe_run_args runs[4];
    for (int c = 0; c < copies; ++c) {
      t_w1[c] = bench_tensor(w1[c], dev, kDLUInt, 8, 1, sh_p1);
      t_w2[c] = bench_tensor(w2[c], dev, kDLUInt, 8, 1, sh_p2);
      moe_run_args_init(&runs[c], MOE_RUN_ARGS_VERSION);
      runs[c].hidden_states = &t_x; /* bf16: an FP8 runner quantizes it */
      runs[c].gemm1_weights = &t_w1[c];
      runs[c].gemm2_weights = &t_w2[c];
      runs[c].output = &t_out;
      if (per_tensor) {
        runs[c].gemm1_input_scale = &t_s1;
        runs[c].gemm2_input_scale = &t_s2;
      }
      if (gpt) {
        runs[c].gemm1_bias = &t_b1;
        runs[c].gemm2_bias = &t_b2;
        runs[c].gemm1_alpha = &t_al;
        runs[c].gemm1_beta = &t_be;
        runs[c].gemm1_clamp_limit = &t_li;
      }
    }
    /* Routed counts for the FLOP / byte model: one untimed routing (they do not depend on the
     * config). */
    moe_plan plan;
    moe_plan_init(&plan, MOE_PLAN_VERSION);
    if (check(moe_routing_prepare(r, &prob, &ra, cfgs[0], ws, ws_bytes, &plan, bench_stream(d)),
              "routing prepare"))
      goto done;
    int32_t *counts = (int32_t *)calloc((size_t)p->E, sizeof(int32_t));
    if (!counts || check(moe_plan_read(r, &plan, ws, ws_bytes, MOE_PLAN_EXPERT_COUNTS, counts,
                                       (size_t)p->E * 4, bench_stream(d)),
                         "plan read")) {
      free(counts);
      goto done;
    }
    int64_t local_slots = 0, active_experts = 0;
    for (int e = 0; e < p->E; ++e) {
      local_slots += counts[e];
      active_experts += counts[e] > 0;
    }
    free(counts);
    const double f = 2.0; /* gated presets */
    const double flops =
        o->routing_only ? 0.0 : 2.0 * (double)local_slots * (f * I * H + (double)I * H);
    const double bytes =
        o->routing_only ? (double)T * p->E * (ds ? 4 : 2)
                        : (double)active_experts * expert_weight_bytes(p, H, I) + 2.0 * T * H * 2.0;
    /* The floor: bytes at the read-only streaming bandwidth (a forward reads its weights and
     * writes little), FLOPs at the dense GEMM rate of the preset's dtype. */
    const double bw = bench_read_bw(d), rate = fp8 ? bench_fp8_gemm_rate(d) : bench_gemm_rate(d);
    const double floor_us = bw > 0 && rate > 0 ? fmax(bytes / bw * 1e6, flops / rate * 1e6) : 0.0;
    const int iters = o->iters > 0 ? o->iters : (gpu ? 50 : 3);
    /* --config tuned: the library's autotune orders the valid configs (cfgs, whose workspace
     * ws fits them all) on this problem and routing, with the first weight copy; the fastest is
     * then timed like any other config. */
    if (o->configs && !strcmp(o->configs, "tuned") && !o->routing_only) {
      int32_t n = 0;
      if (check(moe_runner_autotune(r, &prob, &ra, &runs[0], ws, ws_bytes, gpu ? 10 : 1, cfgs, NULL,
                                    MAX_CONFIGS, &n, bench_stream(d)),
                "autotune"))
        goto done;
      ncfg = n > 0 ? 1 : 0;
    }
    double *t = (double *)malloc(sizeof(double) * (size_t)iters);
    if (!t) goto done;
    for (int ci = 0; ci < ncfg; ++ci) {
      const int32_t cfg = cfgs[ci];
      row_result *res = &results[ci];
      moe_config_info info;
      /* One untimed routing with this config outside graph capture (any lazy per-config setup
       * of the library happens here, as it did before --config took lists); the timed
       * forwards route into `plan` again themselves. */
      if (check(moe_runner_describe_config(r, cfg, &info), "describe config") ||
          check(moe_routing_prepare(r, &prob, &ra, cfg, ws, ws_bytes, &plan, bench_stream(d)),
                "routing prepare")) {
        free(t);
        goto done;
      }
      bench_case bc = {r, &prob, &ra, runs, copies, cfg, ws, ws_bytes, &plan, o->routing_only};
      /* us_single: one forward per graph launch, so it includes the launch of the graph (a few
       * us). us: the steady state of kForwardsPerGraph forwards in one graph (rotating weight
       * copies, L2 still cold), as a model's graph runs its MoE layers; measured for forwards
       * under kSteadyBelowUs, where that launch is not negligible (for longer ones us =
       * us_single). */
      int e = time_median(d, &bc, 1, iters, t, &res->us_single);
      res->us = res->us_single;
      if (!e && gpu && !o->routing_only && res->us_single < kSteadyBelowUs)
        e = time_median(d, &bc, (kForwardsPerGraph + copies - 1) / copies * copies, iters, t,
                        &res->us);
      if (e) {
        free(t);
        goto done;
      }
      res->local_slots = local_slots;
      res->active_experts = active_experts;
      res->tflops = flops / (res->us * 1e-6) / 1e12;
      res->tbps = bytes / (res->us * 1e-6) / 1e12;
      res->floor_us = floor_us;
      res->bytes = bytes;
      res->flops = flops;
      res->floor_bw = floor_us > 0 ? bw : 0.0;
      res->floor_rate = floor_us > 0 ? rate : 0.0;
      res->s1 = s1;
      res->s2 = s2;
      res->config = cfg;
      if (gpu)
        snprintf(res->config_name, sizeof res->config_name, "%s", info.name);
      else /* the CPU backend runs no kernels: the config shapes only the routing plan */
        snprintf(res->config_name, sizeof res->config_name, "tile%d_c%d", (int)info.tile,
                 (int)info.cluster_size);
    }
    free(t);
  }
  rc = ncfg;
done:
  bench_sync(d);
  for (int c = 0; c < 4; ++c) {
    bench_free(d, w1[c]);
    bench_free(d, w2[c]);
  }
  free(xb.h);
  free(w1b.h);
  bench_free(d, logits);
  bench_free(d, bias);
  bench_free(d, x);
  bench_free(d, out);
  bench_free(d, ws);
  bench_free(d, scales);
  bench_free(d, gpt);
  return rc;
}

/* Whether runner @p r can run forwards of preset @p p. moe_runner_run checks the runner's
 * precision against its backend before its arguments (core/fp8.c, moe_check_fp8_backend): a
 * call with the preset's problem and no plan or tensors answers NOT_SUPPORTED, with the
 * library's reason (left in @p why), where the backend cannot run the preset's mode (e.g.
 * MXFP4 W4A8 on CUDA in this build), and an argument error otherwise. */
static int runner_can_run(moe_runner *r, const preset *p, char *why, size_t why_size) {
  const moe_problem prob = preset_problem(p, 1);
  int32_t cfg = 0;
  moe_status_t s = moe_runner_get_default_config(r, &prob, &cfg);
  if (s == MOE_STATUS_SUCCESS) s = moe_runner_run(r, &prob, NULL, cfg, NULL, NULL, 0, NULL);
  if (s != MOE_STATUS_NOT_SUPPORTED) return 1;
  snprintf(why, why_size, "%s", moe_get_last_error());
  return 0;
}

int main(int argc, char **argv) {
  options o;
  int pr = parse(argc, argv, &o);
  if (pr) return pr == 1 ? 0 : 2;
  const char *presets = o.presets ? o.presets : "all";
  if (!presets_known(presets)) return 2;
  /* --dry-run --backend cuda without a usable GPU: device-less CUDA runners (sm_version 90)
   * answer config queries and sizes as the GPU would; nothing runs. */
  int32_t ndev = 0;
  moe_cuda_device_count(&ndev);
  const int query_only = o.dry_run && o.backend == MOE_BACKEND_CUDA && ndev == 0;
  bench_dev *d = NULL;
  if (bench_open(query_only ? MOE_BACKEND_CPU : o.backend, &d)) return 1;
  const int gpu = bench_is_gpu(d);
  const int32_t runner_backend = gpu || query_only ? MOE_BACKEND_CUDA : MOE_BACKEND_CPU;

  const char *tokens =
      o.tokens
          ? o.tokens
          : (o.routing_only ? "1,16,64,256,1024,4096,16384,65536"
                            : (runner_backend == MOE_BACKEND_CUDA ? "1,8,32,128,512,2048,8192,16384"
                                                                  : "1,8,32"));
  int64_t tlist[64];
  int nt = parse_list(tokens, tlist, 64);
  if (nt <= 0) {
    fprintf(stderr, "moe-bench: --tokens: expected N[,N..] (at most 64), given '%s'\n", tokens);
    return 2;
  }
  if (!o.json)
    printf("moe-bench: %s, %s%s",
           query_only ? "CUDA backend (sm_90 catalogue, no GPU)"
           : gpu      ? "CUDA backend"
                      : "CPU backend (no GPU found)",
           bench_device_name(d), o.dry_run ? "; dry run: nothing is run or timed" : "");
  if (!o.json && o.sm_budget > 0) printf("; sm_budget %d", o.sm_budget);
  if (!o.json) printf("\n");
  FILE *notes = o.json ? stderr : stdout; /* lines that are not rows */
  /* The presets to run, as run: each on a runner of its dtype and scaling; a mode the backend
   * cannot run is said and skipped; on the CPU scaled to the weight budget (routing alone does
   * not depend on H and I). */
  preset run[k_num_presets];
  moe_runner *runners[k_num_presets];
  int scaled[k_num_presets], nrun = 0, nskipped = 0;
  for (int pi = 0; pi < k_num_presets; ++pi) {
    if (!in_list(presets, k_presets[pi].name)) continue;
    run[nrun] = k_presets[pi];
    scaled[nrun] = 0;
    moe_runner *r = NULL;
    char why[512];
    moe_status_t s = open_runner(&run[nrun], runner_backend, query_only, o.sm_budget, &r);
    if (s == MOE_STATUS_NOT_SUPPORTED ||
        (!s && !o.routing_only && !runner_can_run(r, &run[nrun], why, sizeof why))) {
      if (s) snprintf(why, sizeof why, "%s", moe_get_last_error());
      fprintf(notes, "%s: skipped: %s\n", run[nrun].name, why);
      moe_runner_destroy(r);
      ++nskipped;
      continue;
    }
    if (check(s, "runner create")) return 1;
    if (runner_backend == MOE_BACKEND_CPU && !o.routing_only) {
      double full_gb = 0.0;
      scaled[nrun] = scale_to_budget(r, &run[nrun], o.cpu_weight_gb, &full_gb);
      if (scaled[nrun] < 0) return 2;
      if (scaled[nrun])
        fprintf(notes,
                "moe-bench: %s scaled down to H = %lld, I = %lld on the CPU: its %.1f GB of "
                "prepared weights (H = %lld, I = %lld) exceed --cpu-weight-gb %.3g\n",
                run[nrun].name, (long long)run[nrun].H, (long long)run[nrun].I, full_gb,
                (long long)k_presets[pi].H, (long long)k_presets[pi].I, o.cpu_weight_gb);
    }
    runners[nrun++] = r;
  }
  if (gpu && !o.dry_run) bench_measure_ceilings(d);
  const double copy_bw = bench_copy_bw(d), read_bw = bench_read_bw(d);
  const double bf16_rate = bench_gemm_rate(d), fp8_rate = bench_fp8_gemm_rate(d);
  /* A floor exists only where the same run measured its ceilings (the GPU). */
  const int has_floor = read_bw > 0 && (bf16_rate > 0 || fp8_rate > 0);
  if (!o.json && nrun > 0) {
    if (gpu && !o.dry_run)
      printf(
          "ceilings (same run): device copy %.2f TB/s, read-only stream %.2f TB/s, dense bf16 "
          "GEMM %.0f TFLOP/s, dense e4m3 GEMM %.0f TFLOP/s (cuBLASLt, fast accumulation %s)\n",
          copy_bw / 1e12, read_bw / 1e12, bf16_rate / 1e12, fp8_rate / 1e12,
          bench_fp8_gemm_fast_accum(d) ? "on" : "off");
    if (o.dry_run)
      printf("%-19s %7s %6s %6s %10s %12s  %s\n", "preset", "T", "H", "I", "weights_gb",
             "workspace_mb", runner_backend == MOE_BACKEND_CUDA ? "config" : "plan");
    else if (has_floor)
      printf("%-19s %7s %8s %10s %8s %7s %9s %7s  %s\n", "preset", "T", "slots", "us", "TFLOP/s",
             "TB/s", "floor_us", "%floor", "config");
    else
      printf("%-19s %7s %6s %6s %8s %10s %8s %7s  %s\n", "preset", "T", "H", "I", "slots", "us",
             "TFLOP/s", "TB/s", gpu ? "config" : "plan");
  }
  int failures = 0, rows = 0;
  for (int pi = 0; pi < nrun; ++pi) {
    const preset *p = &run[pi];
    for (int ti = 0; ti < nt; ++ti) {
      row_result results[MAX_CONFIGS];
      memset(results, 0, sizeof results);
      const int nres = run_case(d, runners[pi], p, tlist[ti], &o, results);
      if (nres < 0) {
        ++failures;
        continue;
      }
      rows += nres;
      for (int ri = 0; ri < nres; ++ri) {
        const row_result *res = &results[ri];
        const double pct = res->floor_us > 0 ? 100.0 * res->floor_us / res->us : 0.0;
        const long long H = o.routing_only ? 0 : (long long)p->H,
                        I = o.routing_only ? 0 : (long long)p->I;
        if (o.dry_run) {
          printf("%-19s %7lld %6lld %6lld %10.3f %12.1f  %s\n", p->name, (long long)tlist[ti], H, I,
                 (double)res->weight_bytes / 1e9, (double)res->workspace_bytes / 1e6,
                 res->config_name);
        } else if (o.json) {
          printf(
              "{\"preset\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"stage\":\"%s\","
              "\"tokens\":%lld,\"hidden_size\":%lld,\"intermediate_size\":%lld,"
              "\"scaled\":%s,\"local_slots\":%lld,\"active_experts\":%lld,\"us\":%.3f,"
              "\"us_single\":%.3f,\"tflops\":%.6g,\"tbps\":%.6g,\"flops\":%.0f,\"bytes\":%.0f,"
              "\"dtype\":\"%s\",\"scaling\":\"%s\",\"sm_budget\":%d,",
              p->name, gpu ? "cuda" : "cpu", bench_device_name(d),
              o.routing_only ? "routing" : "all", (long long)tlist[ti], H, I,
              scaled[pi] ? "true" : "false", (long long)res->local_slots,
              (long long)res->active_experts, res->us, res->us_single, res->tflops, res->tbps,
              res->flops, res->bytes, dtype_name(p), scaling_name(p), o.sm_budget);
          if (p->scaling == MOE_SCALING_PER_TENSOR && !o.routing_only)
            printf("\"gemm1_input_scale\":%.9g,\"gemm2_input_scale\":%.9g,", res->s1, res->s2);
          if (res->floor_us > 0)
            printf(
                "\"floor_us\":%.3f,\"pct_floor\":%.1f,\"floor_tbps\":%.3f,"
                "\"floor_tflops\":%.1f,",
                res->floor_us, pct, res->floor_bw / 1e12, res->floor_rate / 1e12);
          if (gpu)
            printf(
                "\"copy_tbps\":%.3f,\"read_tbps\":%.3f,\"gemm_tflops\":%.1f,"
                "\"fp8_gemm_tflops\":%.1f,\"fp8_fast_accum\":%s,",
                copy_bw / 1e12, read_bw / 1e12, bf16_rate / 1e12, fp8_rate / 1e12,
                bench_fp8_gemm_fast_accum(d) ? "true" : "false");
          printf("\"config\":%d,\"config_name\":\"%s\"}\n", res->config, res->config_name);
        } else if (has_floor) {
          char fl[32] = "-", pc[32] = "-";
          if (res->floor_us > 0) {
            snprintf(fl, sizeof fl, "%.1f", res->floor_us);
            snprintf(pc, sizeof pc, "%.1f%%", pct);
          }
          printf("%-19s %7lld %8lld %10.1f %8.2f %7.3f %9s %7s  %s\n", p->name,
                 (long long)tlist[ti], (long long)res->local_slots, res->us, res->tflops, res->tbps,
                 fl, pc, res->config_name);
        } else {
          printf("%-19s %7lld %6lld %6lld %8lld %10.1f %8.3f %7.4f  %s\n", p->name,
                 (long long)tlist[ti], H, I, (long long)res->local_slots, res->us, res->tflops,
                 res->tbps, res->config_name);
        }
      }
      fflush(stdout);
    }
  }
  for (int pi = 0; pi < nrun; ++pi) moe_runner_destroy(runners[pi]);
  bench_close(d);
  if (!rows && !failures && nskipped) {
    fprintf(stderr, "moe-bench: nothing %s: every preset asked for was skipped\n",
            o.dry_run ? "resolved" : "measured");
    return 1;
  }
  return failures ? 1 : 0;
}
