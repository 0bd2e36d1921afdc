/*
 * bench_preset.c - the presets and helpers moe-bench and moe-grouped-bench share
 * (bench_preset.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "bench_preset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DS3 MOE_ROUTING_DEEPSEEK_V3
#define RENORM MOE_ROUTING_RENORMALIZE
const preset k_presets[] = {
    {"deepseek-v3", 256, 8, DS3, 8, 4, 7168, 2048, 2.5f, MOE_SCALING_NONE, NULL, 0},
    {"qwen3-235b", 128, 8, RENORM, 1, 1, 4096, 1536, 1.0f, MOE_SCALING_NONE, NULL, 0},
    {"qwen3-30b", 128, 8, RENORM, 1, 1, 2048, 768, 1.0f, MOE_SCALING_NONE, NULL, 0},
    {"mixtral-8x7b", 8, 2, RENORM, 1, 1, 4096, 14336, 1.0f, MOE_SCALING_NONE, NULL, 0},
    {"gpt-oss-120b", 128, 4, RENORM, 1, 1, 2880, 2880, 1.0f, MOE_SCALING_NONE, NULL, 0},
    {"llama4-maverick", 128, 1, MOE_ROUTING_LLAMA4, 1, 1, 5120, 8192, 1.0f, MOE_SCALING_NONE, NULL,
     0},
    {"deepseek-v3-fp8", 256, 8, DS3, 8, 4, 7168, 2048, 2.5f, MOE_SCALING_BLOCK, "deepseek-v3", 0},
    {"qwen3-235b-fp8", 128, 8, RENORM, 1, 1, 4096, 1536, 1.0f, MOE_SCALING_BLOCK, "qwen3-235b", 0},
    {"qwen3-30b-fp8", 128, 8, RENORM, 1, 1, 2048, 768, 1.0f, MOE_SCALING_BLOCK, "qwen3-30b", 0},
    {"mixtral-8x7b-fp8", 8, 2, RENORM, 1, 1, 4096, 14336, 1.0f, MOE_SCALING_PER_TENSOR,
     "mixtral-8x7b", 0},
    {"llama4-maverick-fp8", 128, 1, MOE_ROUTING_LLAMA4, 1, 1, 5120, 8192, 1.0f,
     MOE_SCALING_PER_TENSOR, "llama4-maverick", 0},
    {"gpt-oss-120b-mxfp4", 128, 4, RENORM, 1, 1, 2880, 2880, 1.0f, MOE_SCALING_MX, "gpt-oss-120b",
     1},
    {"gpt-oss-20b-mxfp4", 32, 4, RENORM, 1, 1, 2880, 2880, 1.0f, MOE_SCALING_MX, NULL, 0},
};
const int k_num_presets = (int)(sizeof k_presets / sizeof k_presets[0]);

/* ---- host data ---- */
static uint64_t g_rng = 0x243F6A8885A308D3ull;
/* Each cell's inputs depend only on (preset, T), not on the cells a run measured before it (the
 * routing, and with it the active experts and the floor, changed with the command line). */
void seed_cell(const char *preset_name, int64_t T) {
  uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a of the name */
  for (const char *c = preset_name; *c; ++c) h = (h ^ (uint8_t)*c) * 0x100000001B3ull;
  g_rng = 0x243F6A8885A308D3ull ^ h ^ ((uint64_t)T * 0x9E3779B97F4A7C15ull);
}
uint64_t rnd(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint16_t rnd_bf16(int shift) { /* exact bf16 value m * 2^-shift, m in [-128, 127] */
  float f = ldexpf((float)((int)(rnd() >> 56) - 128), -shift);
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

int check(moe_status_t s, const char *what) {
  if (s == MOE_STATUS_SUCCESS) return 0;
  fprintf(stderr, "%s: %s failed: %s: %s\n", bench_prog, what, moe_status_string(s),
          moe_get_last_error());
  return 1;
}

DLTensor bench_tensor(void *data, int dev_type, DLDataTypeCode code, int bits, int ndim,
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

int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* "a,b,c" -> out[0..n); -1 on anything but comma-separated integers (or more than cap). */
int parse_list(const char *s, int64_t *out, int cap) {
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

/* The problem of preset @p p at @p T tokens, with its own H and I. */
moe_problem preset_problem(const preset *p, int64_t T) {
  moe_problem prob;
  moe_problem_init(&prob, MOE_PROBLEM_VERSION);
  prob.num_tokens = T;
  prob.num_experts = p->E;
  prob.top_k = p->K;
  prob.hidden_size = p->H;
  prob.intermediate_size = p->I;
  return prob;
}

/* Prepared-weight bytes (W1 + W2) of preset @p p at its H and I, in GB; -1 on failure. */
static double weight_gb(moe_runner *r, const preset *p) {
  const moe_problem prob = preset_problem(p, 1);
  size_t w1 = 0, w2 = 0;
  if (check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM1, &w1), "w1 size") ||
      check(moe_weights_prepared_size(r, &prob, MOE_WEIGHTS_GEMM2, &w2), "w2 size"))
    return -1.0;
  return (double)(w1 + w2) / 1e9;
}

/* v / 2 rounded down to a multiple of q, at least q */
static int64_t half_to(int64_t v, int64_t q) {
  const int64_t h = v / 2 / q * q;
  return h < q ? q : h;
}

/* CPU backend: halve H and I of @p q (a copy of a preset) until its prepared weights fit
 * @p budget_gb, keeping them multiples of 64 (of 128 for FP8, which needs them). Returns 1 if
 * scaled, 0 if it fits as it is, -1 if it cannot fit or on failure (with a message); @p full_gb
 * gets the size at the preset's own H and I. */
int scale_to_budget(moe_runner *r, preset *q, double budget_gb, double *full_gb) {
  const int64_t quantum = q->scaling == MOE_SCALING_NONE || q->scaling == MOE_SCALING_MX ? 64 : 128;
  double gb = *full_gb = weight_gb(r, q);
  int scaled = 0;
  while (gb > budget_gb && (q->H > quantum || q->I > quantum)) {
    q->H = half_to(q->H, quantum);
    q->I = half_to(q->I, quantum);
    gb = weight_gb(r, q);
    scaled = 1;
  }
  if (gb < 0) return -1;
  if (gb > budget_gb) {
    fprintf(stderr,
            "%s: %s does not fit --cpu-weight-gb %.3g even at H = I = %lld (%.3g GB of "
            "prepared weights)\n",
            bench_prog, q->name, budget_gb, (long long)quantum, gb);
    return -1;
  }
  return scaled;
}

/* The runner of preset @p p: its dtype and scaling mode on @p backend (sm_version 90 with
 * @p query_only: the CUDA catalogue without a device, for --dry-run). */
moe_status_t open_runner(const preset *p, int32_t backend, int query_only, int32_t sm_budget,
                         moe_runner **r) {
  moe_runner_options ro;
  moe_runner_options_init(&ro, MOE_RUNNER_OPTIONS_VERSION);
  ro.backend = backend;
  ro.sm_budget = sm_budget;
  ro.sm_version = query_only ? 90 : 0;
  if (p->scaling == MOE_SCALING_MX) { /* W4A16 */
    ro.weight_dtype = MOE_DTYPE_MXFP4;
    ro.scaling_mode = MOE_SCALING_MX;
  } else if (p->scaling != MOE_SCALING_NONE) {
    ro.activation_dtype = MOE_DTYPE_FP8_E4M3;
    ro.weight_dtype = MOE_DTYPE_FP8_E4M3;
    ro.scaling_mode = p->scaling;
  }
  return moe_runner_create(&ro, r);
}

int parse_backend(const char *v) {
  return !strcmp(v, "cpu")    ? MOE_BACKEND_CPU
         : !strcmp(v, "cuda") ? MOE_BACKEND_CUDA
         : !strcmp(v, "auto") ? MOE_BACKEND_AUTO
                              : -2;
}

/* Whether NAME is in the comma-separated list (or the list is "all"). */
int in_list(const char *list, const char *name) {
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
int presets_known(const char *list) {
  if (!strcmp(list, "all")) return 1;
  for (const char *s = list; s && *s;) {
    const char *end = strchr(s, ',');
    const size_t len = end ? (size_t)(end - s) : strlen(s);
    int known = 0;
    for (int i = 0; i < k_num_presets; ++i)
      known |= strlen(k_presets[i].name) == len && !strncmp(s, k_presets[i].name, len);
    if (!known) {
      fprintf(stderr, "%s: --preset: unknown preset '%.*s' (%s --help lists them)\n", bench_prog,
              (int)len, s, bench_prog);
      return 0;
    }
    s = end ? end + 1 : NULL;
  }
  return 1;
}

/* Fill @p bytes of (device) memory with repeats of a random host block; with @p keep the block
 * is handed to the caller (free keep->h), else freed. */
int fill_random_keep(bench_dev *d, void *dst, size_t bytes, int shift, host_block *keep) {
  size_t block = bytes < ((size_t)16 << 20) ? bytes : ((size_t)16 << 20);
  uint16_t *h = (uint16_t *)malloc(block + 2);
  if (!h) return 1;
  for (size_t i = 0; i < block / 2; ++i) h[i] = rnd_bf16(shift);
  int rc = bench_fill_repeat(d, dst, bytes, h, block);
  if (keep && !rc) {
    keep->h = h;
    keep->n = block / 2;
  } else
    free(h);
  return rc;
}
int fill_random(bench_dev *d, void *dst, size_t bytes, int shift) {
  return fill_random_keep(d, dst, bytes, shift, NULL);
}

int upload_logits(bench_dev *d, const preset *p, int64_t T, void *logits, void *bias) {
  /* logits: exact random values (fp32 for DeepSeekV3, bf16 otherwise) */
  const int ds = p->method == MOE_ROUTING_DEEPSEEK_V3;
  const size_t n = (size_t)(T * p->E), logit_bytes = n * (ds ? 4 : 2);
  void *h = malloc(logit_bytes + 16 + (size_t)p->E * 2);
  if (!h) return 1;
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
  return e;
}

moe_routing_args routing_args_of(const preset *p, const DLTensor *logits, const DLTensor *bias) {
  moe_routing_args ra;
  moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
  ra.method = p->method;
  ra.logits = logits;
  ra.bias = p->method == MOE_ROUTING_DEEPSEEK_V3 ? bias : NULL;
  ra.n_group = p->n_group;
  ra.topk_group = p->topk_group;
  ra.routed_scaling_factor = p->scale;
  return ra;
}

int weight_copies(bench_dev *d, double weight_bytes, double other_bytes) {
  const double l2 = (double)bench_l2_bytes(d);
  int copies = (int)ceil(4.0 * l2 / weight_bytes) + 1;
  if (copies > BENCH_MAX_COPIES) copies = BENCH_MAX_COPIES;
  if (copies < 2) copies = 2;
  const size_t free_b = bench_free_bytes(d);
  while (copies > 1 && (double)copies * weight_bytes + other_bytes > 0.9 * (double)free_b) --copies;
  return copies;
}
