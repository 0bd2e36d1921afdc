/*
 * moe-bench - the main job: real MoE forwards of model presets through the public API, on the
 * GPU when one is present, else on the CPU reference backend; prints a table (or JSON lines).
 *
 * Per row: µs per forward (median), TFLOP/s = 2·Σ_local cnt_e·(f·I·H + I·H) / t, TB/s of the
 * bytes that must move (each distinct active local expert's weights once + hidden states in +
 * output out), and on the GPU the same-run ceilings (device copy bandwidth, dense bf16 GEMM
 * rate through cuBLAS) with the floor max(bytes/BW, FLOPs/rate) and t/floor as a % of limit.
 * GPU timing: CUDA events around CUDA-graph replays (routing + GEMMs + finalize), weights
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

typedef struct {
  const char *name;
  int32_t E, K, method, n_group, topk_group;
  int64_t H, I;
  float scale;
} preset;

static const preset k_presets[] = {
    {"deepseek-v3", 256, 8, MOE_ROUTING_DEEPSEEK_V3, 8, 4, 7168, 2048, 2.5f},
    {"qwen3-235b", 128, 8, MOE_ROUTING_RENORMALIZE, 1, 1, 4096, 1536, 1.0f},
    {"qwen3-30b", 128, 8, MOE_ROUTING_RENORMALIZE, 1, 1, 2048, 768, 1.0f},
    {"mixtral-8x7b", 8, 2, MOE_ROUTING_RENORMALIZE, 1, 1, 4096, 14336, 1.0f},
    {"gpt-oss-120b", 128, 4, MOE_ROUTING_RENORMALIZE, 1, 1, 2880, 2880, 1.0f},
    {"llama4-maverick", 128, 1, MOE_ROUTING_LLAMA4, 1, 1, 5120, 8192, 1.0f},
};
#define N_PRESETS ((int)(sizeof k_presets / sizeof k_presets[0]))

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
} options;

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: moe-bench [--preset NAME[,NAME..]|all] [--tokens N[,N..]] [--backend "
      "auto|cpu|cuda]\n"
      "                 [--stage all|routing] [--iters N] [--config N[,N..]|all|tuned] [--json]\n"
      "                 [--cpu-weight-gb G]\n"
      "presets:");
  for (int i = 0; i < N_PRESETS; ++i) fprintf(f, " %s", k_presets[i].name);
  fprintf(f, "\n");
}

static void help(void) {
  usage(stdout);
  printf(
      "\nTimes whole MoE forwards (routing + GEMM1 + activation + GEMM2 + finalize; --stage\n"
      "routing: routing alone) of model presets through the public API, on the GPU when one is\n"
      "present (else the CPU reference backend). Defaults: every preset; T = 1..16384 on the GPU,\n"
      "T = 1,8,32 on the CPU; the default config of each cell.\n"
      "\ncolumns (and JSON keys):\n"
      "  preset    model shape: E experts, top-K, hidden H, intermediate I, routing method\n"
      "  T         tokens of the forward (tokens)\n"
      "  H, I      (CPU) hidden and intermediate size run; smaller than the model's when scaled\n"
      "  slots     routed (token, expert) pairs on this rank, sum of cnt_e (local_slots)\n"
      "  us        median microseconds per forward; on the GPU the steady state of 8 forwards\n"
      "            per CUDA graph below 1 ms (us_single: one forward per graph launch)\n"
      "  TFLOP/s   2*slots*(2I*H + I*H) / us: the GEMMs' useful FLOPs per second (tflops)\n"
      "  TB/s      bytes that must move / us: each active expert's W1 and W2 once, hidden\n"
      "            states in, output out (tbps)\n"
      "  floor_us  (GPU) max(bytes / copy bandwidth, FLOPs / dense GEMM rate) with both ceilings\n"
      "            measured in the same run (copy_tbps, gemm_tflops): the fastest this forward\n"
      "            could be (floor_us)\n"
      "  %%floor    (GPU) floor_us / us, the share of the limit reached (pct_floor)\n"
      "  config    (GPU) the kernel config's name: token tile t, cluster size c, weight rows m,\n"
      "            pipeline stages s (config = its index, config_name)\n"
      "  plan      (CPU) the config's routing-plan tile and cluster size (the CPU backend runs\n"
      "            no GPU kernels; config = its index, config_name)\n"
      "  JSON only: active_experts (local experts with at least one slot), backend, device,\n"
      "            stage, scaled, hidden_size, intermediate_size\n"
      "\noptions: --preset a list or all; --tokens the T list; --backend auto picks the GPU when\n"
      "present; --stage routing times moe_routing_prepare alone; --iters timed repetitions\n"
      "(default 50 GPU, 3 CPU); --config a list of config indices, all valid ones, or tuned\n"
      "(moe_runner_autotune's pick); --json one JSON object per row (bench/plot.py draws them).\n"
      "The CPU backend has no ceilings, so no floor columns. A preset whose prepared weights\n"
      "exceed --cpu-weight-gb (default 1.5) runs on the CPU with H and I halved until they fit\n"
      "(multiples of 64; E, K and routing kept); the run says which presets it scaled and why,\n"
      "and JSON rows carry scaled, hidden_size and intermediate_size.\n");
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
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--preset") && v)
      o->presets = argv[++i];
    else if (!strcmp(a, "--tokens") && v)
      o->tokens = argv[++i];
    else if (!strcmp(a, "--backend") && v) {
      ++i;
      o->backend = !strcmp(v, "cpu")    ? MOE_BACKEND_CPU
                   : !strcmp(v, "cuda") ? MOE_BACKEND_CUDA
                   : !strcmp(v, "auto") ? MOE_BACKEND_AUTO
                                        : -2;
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
    else if (!strcmp(a, "--cpu-weight-gb") && v) {
      o->cpu_weight_gb = strtod(argv[++i], NULL);
      if (!(o->cpu_weight_gb > 0)) {
        fprintf(stderr, "moe-bench: --cpu-weight-gb: expected a positive number, given '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      help();
      return 1;
    } else {
      fprintf(stderr, "moe-bench: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  return 0;
}

/* ---- host data ---- */
static uint64_t g_rng = 0x243F6A8885A308D3ull;
/* Each cell's inputs depend only on (preset, T), not on the cells a run measured before it (the
 * routing, and with it the active experts and the floor, changed with the command line). */
static void seed_cell(const char *preset, int64_t T) {
  uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a of the name */
  for (const char *c = preset; *c; ++c) h = (h ^ (uint8_t)*c) * 0x100000001B3ull;
  g_rng = 0x243F6A8885A308D3ull ^ h ^ ((uint64_t)T * 0x9E3779B97F4A7C15ull);
}
static uint64_t rnd(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint16_t rnd_bf16(int shift) { /* exact bf16 value m * 2^-shift, m in [-128, 127] */
  float f = ldexpf((float)((int)(rnd() >> 56) - 128), -shift);
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

static int check(moe_status_t s, const char *what) {
  if (s == MOE_STATUS_SUCCESS) return 0;
  fprintf(stderr, "moe-bench: %s failed: %s: %s\n", what, moe_status_string(s),
          moe_get_last_error());
  return 1;
}

static DLTensor tensor(void *data, int dev_type, DLDataTypeCode code, int bits, int ndim,
                       int64_t *shape) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = (DLDeviceType)dev_type;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype.code = (uint8_t)code;
  t.dtype.bits = (uint8_t)bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  return t;
}

/* Fill @p bytes of (device) memory with repeats of a random host block. */
static int fill_random(bench_dev *d, void *dst, size_t bytes, int shift) {
  size_t block = bytes < ((size_t)16 << 20) ? bytes : ((size_t)16 << 20);
  uint16_t *h = (uint16_t *)malloc(block);
  if (!h) return 1;
  for (size_t i = 0; i < block / 2; ++i) h[i] = rnd_bf16(shift);
  int rc = bench_fill_repeat(d, dst, bytes, h, block);
  free(h);
  return rc;
}

typedef struct {
  double us, us_single, tflops, tbps, floor_us;
  int64_t local_slots, active_experts;
  int32_t config;
  char config_name[64];
} row_result;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

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

/* "a,b,c" -> out[0..n); -1 on anything but comma-separated integers (or more than cap). */
static int parse_list(const char *s, int64_t *out, int cap) {
  int n = 0;
  while (s && *s) {
    char *end = NULL;
    const long long v = strtoll(s, &end, 10);
    if (end == s || n == cap || (*end != ',' && *end != '\0')) return -1;
    out[n++] = v;
    s = *end == ',' ? end + 1 : end;
  }
  return n;
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

/* One preset at one T: build inputs, prepare weights once, time forwards with each config of
 * --config (one result each, in order). Returns the number of results, -2 on failure. */
static int run_case(bench_dev *d, moe_runner *r, const preset *p, int64_t T, const options *o,
                    row_result *results) {
  const int gpu = bench_is_gpu(d);
  const int dev = gpu ? kDLCUDA : kDLCPU;
  seed_cell(p->name, T);
  moe_problem prob;
  moe_problem_init(&prob, MOE_PROBLEM_VERSION);
  prob.num_tokens = T;
  prob.num_experts = p->E;
  prob.top_k = p->K;
  /* Routing does not depend on H and I; the routing stage sizes its workspace with H = I = 64
   * so that large T is not limited by the int32 row offsets of the GEMM buffers. */
  prob.hidden_size = o->routing_only ? 64 : p->H;
  prob.intermediate_size = o->routing_only ? 64 : p->I;
  const int64_t H = prob.hidden_size, I = prob.intermediate_size;
  int32_t cfgs[MAX_CONFIGS];
  int ncfg = resolve_configs(r, &prob, o->configs, cfgs);
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
  /* Rotating weight copies keep L2 cold on the GPU (enough that one pass exceeds it 4x). */
  int copies = 1;
  if (gpu && !o->routing_only) {
    double l2 = (double)bench_l2_bytes(d);
    copies = (int)ceil(4.0 * l2 / (double)(w1_bytes + w2_bytes)) + 1;
    if (copies > 4) copies = 4;
    if (copies < 2) copies = 2;
    size_t free_b = bench_free_bytes(d);
    while (copies > 1 && (double)copies * (w1_bytes + w2_bytes) * 1.0 + ws_bytes +
                                 2.0 * (w1_bytes > w2_bytes ? w1_bytes : w2_bytes) >
                             0.9 * (double)free_b)
      --copies;
  }
  const int ds = p->method == MOE_ROUTING_DEEPSEEK_V3;
  int64_t sh_logits[2] = {T, p->E}, sh_bias[1] = {p->E}, sh_x[2] = {T, H};
  int64_t sh_w1[3] = {p->E, 2 * I, H}, sh_w2[3] = {p->E, H, I};
  int64_t sh_p1[1] = {(int64_t)w1_bytes}, sh_p2[1] = {(int64_t)w2_bytes};
  size_t logit_bytes = (size_t)(T * p->E * (ds ? 4 : 2));
  void *logits = bench_alloc(d, logit_bytes + 16), *bias = bench_alloc(d, (size_t)p->E * 2 + 16);
  void *x = bench_alloc(d, (size_t)(T * H * 2) + 16),
       *out = bench_alloc(d, (size_t)(T * H * 2) + 16);
  void *ws = bench_alloc(d, ws_bytes);
  void *w1[4] = {0}, *w2[4] = {0};
  int rc = -2;
  if (!logits || !bias || !x || !out || !ws) goto done;
  {
    /* logits: exact random values (fp32 for DeepSeekV3, bf16 otherwise) */
    size_t n = (size_t)(T * p->E);
    void *h = malloc(logit_bytes + 16);
    if (!h) goto done;
    for (size_t i = 0; i < n; ++i) {
      if (ds)
        ((float *)h)[i] = ldexpf((float)((int64_t)(rnd() >> 40) - (1 << 23)), -21);
      else
        ((uint16_t *)h)[i] = rnd_bf16(5);
    }
    int e = bench_upload(d, logits, h, logit_bytes);
    for (int i = 0; i < p->E; ++i) ((uint16_t *)h)[i] = rnd_bf16(9);
    e |= bench_upload(d, bias, h, (size_t)p->E * 2);
    free(h);
    if (e || fill_random(d, x, (size_t)(T * H * 2), 6)) goto done;
  }
  for (int c = 0; c < copies; ++c) {
    void *canon = bench_alloc(d, w1_bytes > w2_bytes ? w1_bytes : w2_bytes);
    w1[c] = bench_alloc(d, w1_bytes);
    w2[c] = bench_alloc(d, w2_bytes);
    if (!canon || !w1[c] || !w2[c]) {
      bench_free(d, canon);
      goto done;
    }
    DLTensor tc1 = tensor(canon, dev, kDLBfloat, 16, 3, sh_w1);
    DLTensor tc2 = tensor(canon, dev, kDLBfloat, 16, 3, sh_w2);
    DLTensor tp1 = tensor(w1[c], dev, kDLUInt, 8, 1, sh_p1);
    DLTensor tp2 = tensor(w2[c], dev, kDLUInt, 8, 1, sh_p2);
    int e = fill_random(d, canon, w1_bytes, 8) ||
            check(moe_weights_prepare(r, &prob, MOE_WEIGHTS_GEMM1, &tc1, &tp1, bench_stream(d)),
                  "prepare W1") ||
            fill_random(d, canon, w2_bytes, 8) ||
            check(moe_weights_prepare(r, &prob, MOE_WEIGHTS_GEMM2, &tc2, &tp2, bench_stream(d)),
                  "prepare W2");
    bench_sync(d);
    bench_free(d, canon);
    if (e) goto done;
  }
  {
    DLTensor t_logits = tensor(logits, dev, ds ? kDLFloat : kDLBfloat, ds ? 32 : 16, 2, sh_logits);
    DLTensor t_bias = tensor(bias, dev, kDLBfloat, 16, 1, sh_bias);
    DLTensor t_x = tensor(x, dev, kDLBfloat, 16, 2, sh_x);
    DLTensor t_out = tensor(out, dev, kDLBfloat, 16, 2, sh_x);
    DLTensor t_w1[4], t_w2[4];
    moe_routing_args ra;
    moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
    ra.method = p->method;
    ra.logits = &t_logits;
    ra.bias = ds ? &t_bias : NULL;
    ra.n_group = p->n_group;
    ra.topk_group = p->topk_group;
    ra.routed_scaling_factor = p->scale;
    moe_run_args runs[4];
    for (int c = 0; c < copies; ++c) {
      t_w1[c] = tensor(w1[c], dev, kDLUInt, 8, 1, sh_p1);
      t_w2[c] = tensor(w2[c], dev, kDLUInt, 8, 1, sh_p2);
      moe_run_args_init(&runs[c], MOE_RUN_ARGS_VERSION);
      runs[c].hidden_states = &t_x;
      runs[c].gemm1_weights = &t_w1[c];
      runs[c].gemm2_weights = &t_w2[c];
      runs[c].output = &t_out;
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
        o->routing_only
            ? (double)T * p->E * (ds ? 4 : 2)
            : (double)active_experts * (f * I * H + (double)H * I) * 2.0 + 2.0 * T * H * 2.0;
    const double bw = bench_copy_bw(d), rate = bench_gemm_rate(d);
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
  bench_free(d, logits);
  bench_free(d, bias);
  bench_free(d, x);
  bench_free(d, out);
  bench_free(d, ws);
  return rc;
}

/* Prepared-weight bytes (W1 + W2) of preset @p p at its H and I, in GB; -1 on failure. */
static double weight_gb(moe_runner *r, const preset *p) {
  moe_problem prob;
  moe_problem_init(&prob, MOE_PROBLEM_VERSION);
  prob.num_tokens = 1;
  prob.num_experts = p->E;
  prob.top_k = p->K;
  prob.hidden_size = p->H;
  prob.intermediate_size = p->I;
  size_t w1 = 0, w2 = 0;
  if (check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM1, &w1), "w1 size") ||
      check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM2, &w2), "w2 size"))
    return -1.0;
  return (double)(w1 + w2) / 1e9;
}

static int64_t half64(int64_t v) { /* v / 2 rounded down to a multiple of 64, at least 64 */
  const int64_t h = v / 2 / 64 * 64;
  return h < 64 ? 64 : h;
}

/* CPU backend: halve H and I of @p q (a copy of a preset) until its prepared weights fit
 * @p budget_gb. Returns 1 if scaled, 0 if it fits as it is, -1 if it cannot fit or on failure
 * (with a message); @p full_gb gets the size at the preset's own H and I. */
static int scale_to_budget(moe_runner *r, preset *q, double budget_gb, double *full_gb) {
  double gb = *full_gb = weight_gb(r, q);
  int scaled = 0;
  while (gb > budget_gb && (q->H > 64 || q->I > 64)) {
    q->H = half64(q->H);
    q->I = half64(q->I);
    gb = weight_gb(r, q);
    scaled = 1;
  }
  if (gb < 0) return -1;
  if (gb > budget_gb) {
    fprintf(stderr,
            "moe-bench: %s does not fit --cpu-weight-gb %.3g even at H = I = 64 (%.3g GB of "
            "prepared weights)\n",
            q->name, budget_gb, gb);
    return -1;
  }
  return scaled;
}

/* Whether NAME is in the comma-separated list (or the list is "all"). */
static int in_list(const char *list, const char *name) {
  if (!strcmp(list, "all")) return 1;
  const size_t n = strlen(name);
  for (const char *s = list; s && *s;) {
    const char *end = strchr(s, ',');
    const size_t len = end ? (size_t)(end - s) : strlen(s);
    if (len == n && !strncmp(s, name, n)) return 1;
    s = end ? end + 1 : NULL;
  }
  return 0;
}

/* Every name of --preset is a preset (or the list is "all"); else a message and 0. */
static int presets_known(const char *list) {
  if (!strcmp(list, "all")) return 1;
  for (const char *s = list; s && *s;) {
    const char *end = strchr(s, ',');
    const size_t len = end ? (size_t)(end - s) : strlen(s);
    int known = 0;
    for (int i = 0; i < N_PRESETS; ++i)
      known |= strlen(k_presets[i].name) == len && !strncmp(s, k_presets[i].name, len);
    if (!known) {
      fprintf(stderr, "moe-bench: --preset: unknown preset '%.*s' (moe-bench --help lists them)\n",
              (int)len, s);
      return 0;
    }
    s = end ? end + 1 : NULL;
  }
  return 1;
}

int main(int argc, char **argv) {
  options o;
  int pr = parse(argc, argv, &o);
  if (pr) return pr == 1 ? 0 : 2;
  const char *presets = o.presets ? o.presets : "all";
  if (!presets_known(presets)) return 2;
  bench_dev *d = NULL;
  if (bench_open(o.backend, &d)) return 1;
  const int gpu = bench_is_gpu(d);
  moe_runner_options ro;
  moe_runner_options_init(&ro, MOE_RUNNER_OPTIONS_VERSION);
  ro.backend = gpu ? MOE_BACKEND_CUDA : MOE_BACKEND_CPU;
  moe_runner *r = NULL;
  if (check(moe_runner_create(&ro, &r), "runner create")) return 1;

  const char *tokens = o.tokens
                           ? o.tokens
                           : (o.routing_only ? "1,16,64,256,1024,4096,16384,65536"
                                             : (gpu ? "1,8,32,128,512,2048,8192,16384" : "1,8,32"));
  int64_t tlist[64];
  int nt = parse_list(tokens, tlist, 64);
  if (nt <= 0) {
    fprintf(stderr, "moe-bench: --tokens: expected N[,N..] (at most 64), given '%s'\n", tokens);
    return 2;
  }
  if (!o.json)
    printf("moe-bench: %s, %s\n", gpu ? "CUDA backend" : "CPU backend (no GPU found)",
           bench_device_name(d));
  /* The presets to run, as run: on the CPU scaled to the weight budget (routing alone does not
   * depend on H and I). */
  preset run[N_PRESETS];
  int scaled[N_PRESETS], nrun = 0;
  for (int pi = 0; pi < N_PRESETS; ++pi) {
    if (!in_list(presets, k_presets[pi].name)) continue;
    run[nrun] = k_presets[pi];
    scaled[nrun] = 0;
    if (!gpu && !o.routing_only) {
      double full_gb = 0.0;
      scaled[nrun] = scale_to_budget(r, &run[nrun], o.cpu_weight_gb, &full_gb);
      if (scaled[nrun] < 0) return 2;
      if (scaled[nrun])
        fprintf(o.json ? stderr : stdout,
                "moe-bench: %s scaled down to H = %lld, I = %lld on the CPU: its %.1f GB of "
                "prepared weights (H = %lld, I = %lld) exceed --cpu-weight-gb %.3g\n",
                run[nrun].name, (long long)run[nrun].H, (long long)run[nrun].I, full_gb,
                (long long)k_presets[pi].H, (long long)k_presets[pi].I, o.cpu_weight_gb);
    }
    ++nrun;
  }
  if (gpu) bench_measure_ceilings(d);
  /* A floor exists only where the same run measured both ceilings (the GPU). */
  const int has_floor = bench_copy_bw(d) > 0 && bench_gemm_rate(d) > 0;
  if (!o.json) {
    if (has_floor)
      printf("ceilings (same run): device copy %.2f TB/s, dense bf16 GEMM %.0f TFLOP/s\n",
             bench_copy_bw(d) / 1e12, bench_gemm_rate(d) / 1e12);
    if (has_floor)
      printf("%-16s %7s %8s %10s %8s %7s %9s %7s  %s\n", "preset", "T", "slots", "us", "TFLOP/s",
             "TB/s", "floor_us", "%floor", "config");
    else
      printf("%-16s %7s %6s %6s %8s %10s %8s %7s  %s\n", "preset", "T", "H", "I", "slots", "us",
             "TFLOP/s", "TB/s", gpu ? "config" : "plan");
  }
  int failures = 0;
  for (int pi = 0; pi < nrun; ++pi) {
    const preset *p = &run[pi];
    for (int ti = 0; ti < nt; ++ti) {
      row_result results[MAX_CONFIGS];
      memset(results, 0, sizeof results);
      const int nres = run_case(d, r, p, tlist[ti], &o, results);
      if (nres < 0) {
        ++failures;
        continue;
      }
      for (int ri = 0; ri < nres; ++ri) {
        const row_result *res = &results[ri];
        const double pct = res->floor_us > 0 ? 100.0 * res->floor_us / res->us : 0.0;
        const long long H = o.routing_only ? 0 : (long long)p->H,
                        I = o.routing_only ? 0 : (long long)p->I;
        if (o.json) {
          printf(
              "{\"preset\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"stage\":\"%s\","
              "\"tokens\":%lld,\"hidden_size\":%lld,\"intermediate_size\":%lld,"
              "\"scaled\":%s,\"local_slots\":%lld,\"active_experts\":%lld,\"us\":%.3f,"
              "\"us_single\":%.3f,\"tflops\":%.6g,\"tbps\":%.6g,",
              p->name, gpu ? "cuda" : "cpu", bench_device_name(d),
              o.routing_only ? "routing" : "all", (long long)tlist[ti], H, I,
              scaled[pi] ? "true" : "false", (long long)res->local_slots,
              (long long)res->active_experts, res->us, res->us_single, res->tflops, res->tbps);
          if (has_floor)
            printf("\"floor_us\":%.3f,\"pct_floor\":%.1f,\"copy_tbps\":%.3f,\"gemm_tflops\":%.1f,",
                   res->floor_us, pct, bench_copy_bw(d) / 1e12, bench_gemm_rate(d) / 1e12);
          printf("\"config\":%d,\"config_name\":\"%s\"}\n", res->config, res->config_name);
        } else if (has_floor) {
          printf("%-16s %7lld %8lld %10.1f %8.2f %7.3f %9.1f %6.1f%%  %s\n", p->name,
                 (long long)tlist[ti], (long long)res->local_slots, res->us, res->tflops, res->tbps,
                 res->floor_us, pct, res->config_name);
        } else {
          printf("%-16s %7lld %6lld %6lld %8lld %10.1f %8.3f %7.4f  %s\n", p->name,
                 (long long)tlist[ti], H, I, (long long)res->local_slots, res->us, res->tflops,
                 res->tbps, res->config_name);
        }
      }
      fflush(stdout);
    }
  }
  moe_runner_destroy(r);
  bench_close(d);
  return failures ? 1 : 0;
}
