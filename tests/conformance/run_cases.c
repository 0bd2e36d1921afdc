/*
 * run_cases.c - the C runner of the conformance suite (docs/conformance.md).
 *
 *   run_cases [--regen] [cases.txt]
 *
 * The case file is MOE_CONFORMANCE_CASES if set, else the argument, else the source tree's
 * tests/conformance/cases.txt. Each case is run on the CPU backend and its plan and output
 * digests compared with the file; error cases check the status of config selection / prepare
 * and that the library left a message. Grouped cases (layout=) run moe_runner_run_grouped: the
 * output digest, the sentinel rows past the counts, and a bitwise cross-check of every row
 * against moe_runner_run (docs/conformance.md "Grouped cases"; with fp8= on an FP8 runner with
 * the moe_grouped_args v3 scales, "Grouped FP8 cases"). With a CUDA device (CUDA
 * builds) each case also runs on the GPU: the plan digest must match exactly and the output
 * must be within ||gpu - cpu|| / ||cpu|| <= 1e-2 of the CPU output, every element finite; routed
 * FP8 cases the CUDA backend answers NOT_SUPPORTED for, and the MXFP4 cases it does not run
 * (cuda_mx_unsupported: W4A8, shapes outside its rule, bf16 biases), print
 * "SKIP GPU <name>: <why>"; grouped cases (BF16 and FP8) and MXFP4 W4A16 cases inside its rule
 * must run there (NOT_SUPPORTED fails).
 * --regen prints the case file with the digests recomputed by the CPU backend (the backend
 * verified by test_moe / test_routing), leaving every other line as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

#ifndef MOE_CONFORMANCE_DEFAULT_CASES
#define MOE_CONFORMANCE_DEFAULT_CASES "tests/conformance/cases.txt"
#endif

#define MAX_FIELDS 40
#define MAX_COUNTS 256 /* local experts of a grouped case */

typedef struct ccase {
  char name[64];
  int method, input, logits_f32, act, bias, gemm_bias, swiglu, finalize;
  int fp8;                       /* MOE_SCALING_NONE (BF16), PER_TENSOR or BLOCK */
  int hidden_e4m3, weights_e4m3; /* FP8 inputs given as e4m3 codes + scales */
  float s1, s2;                  /* PER_TENSOR and W4A8 static activation scales */
  int mx;                        /* MXFP4 weights: 0 none, MX_W4A16, MX_W4A8 */
  int w1_interleaved;            /* MXFP4: W1 in gpt-oss's interleaved gate/up rows */
  int bias_bf16;                 /* gemm biases bf16 (MXFP4 cases) */
  int mx_scales;                 /* MXFP4 scales: MX_SCALES_GIVEN, _MISSING or _MISSHAPED */
  int64_t T, H, I;
  int32_t E, K, offset, local, tile, cluster, n_group, topk_group;
  double scale;
  uint64_t seed, plan, output;
  int has_plan, has_output;
  int status; /* expected */
  /* grouped cases (moe_runner_run_grouped): layout MOE_LAYOUT_* or -1 (a routed case) */
  int layout;
  int64_t capacity;
  int32_t counts[MAX_COUNTS];
  int ncounts;
} ccase;

static const char *k_keys[] = {"name",     "method",  "input",     "logits_dtype",
                               "T",        "E",       "K",         "H",
                               "I",        "offset",  "local",     "act",
                               "tile",     "cluster", "n_group",   "topk_group",
                               "scale",    "bias",    "gemm_bias", "swiglu_params",
                               "finalize", "seed",    "plan",      "output",
                               "status",   "fp8",     "hidden",    "weights",
                               "s1",       "s2",      "layout",    "counts",
                               "capacity", "mxfp4",   "w1_order",  "gemm_bias_dtype",
                               "mx_scales"};
#define NKEYS (sizeof k_keys / sizeof k_keys[0])

#define MX_W4A16 1
#define MX_W4A8 2
#define MX_SCALES_GIVEN 0
#define MX_SCALES_MISSING 1
#define MX_SCALES_MISSHAPED 2
/* Runners by kind: the FP8 scaling mode (0..2), then MXFP4 W4A16 and W4A8. */
#define N_KINDS 5
static int case_kind(const ccase *c) {
  return c->mx ? 2 + c->mx : c->fp8;
}

#ifdef MOE_TEST_WITH_CUDA
/* MXFP4 cases the CUDA backend does not run (docs/conformance.md "MXFP4 cases"): W4A8, H or I
 * not a multiple of 64 or above 8192, and bf16 gemm biases (CPU backend only, as in BF16 runs).
 * Every other W4A16 case must run there. */
static int cuda_mx_unsupported(const ccase *c) {
  return c->mx == MX_W4A8 || c->H % 64 || c->I % 64 || c->H > 8192 || c->I > 8192 ||
         (c->gemm_bias && c->bias_bf16);
}
#endif

/* The bit of key k in a parsed line's set of keys. */
static uint64_t key_bit(const char *k) {
  size_t ki = 0;
  while (ki < NKEYS && strcmp(k_keys[ki], k)) ++ki;
  return 1ull << ki;
}

static int status_from_name(const char *s) {
  if (!strcmp(s, "ok")) return MOE_STATUS_SUCCESS;
  if (!strcmp(s, "INVALID_ARGUMENT")) return MOE_STATUS_INVALID_ARGUMENT;
  if (!strcmp(s, "NOT_SUPPORTED")) return MOE_STATUS_NOT_SUPPORTED;
  if (!strcmp(s, "INVALID_CONFIG")) return MOE_STATUS_INVALID_CONFIG;
  return -1;
}

static int parse_i64(const char *v, int64_t *out) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || end == v) return 1;
  *out = x;
  return 0;
}

/* Parse one case line (already split into fields). Returns 0 or prints an error. */
static int parse_case(char **fields, int n, ccase *c, int lineno) {
  memset(c, 0, sizeof *c);
  c->scale = 1.0;
  c->n_group = c->topk_group = 1;
  c->finalize = 1;
  c->layout = -1;
  uint64_t seen = 0;
  for (int i = 0; i < n; ++i) {
    char *eq = strchr(fields[i], '=');
    if (!eq) {
      fprintf(stderr, "line %d: field '%s' is not key=value\n", lineno, fields[i]);
      return 1;
    }
    *eq = 0;
    const char *k = fields[i], *v = eq + 1;
    size_t ki = 0;
    while (ki < NKEYS && strcmp(k_keys[ki], k)) ++ki;
    if (ki == NKEYS) {
      fprintf(stderr, "line %d: unknown key '%s'\n", lineno, k);
      *eq = '=';
      return 1;
    }
    seen |= 1ull << ki;
    int64_t x = 0;
    int bad = 0;
    if (!strcmp(k, "name")) {
      snprintf(c->name, sizeof c->name, "%s", v);
    } else if (!strcmp(k, "input")) {
      c->input = !strcmp(v, "logits")   ? T_INPUT_LOGITS
                 : !strcmp(v, "ids")    ? T_INPUT_IDS
                 : !strcmp(v, "packed") ? T_INPUT_PACKED
                                        : -1;
      bad = c->input < 0;
    } else if (!strcmp(k, "logits_dtype")) {
      bad = strcmp(v, "f32") && strcmp(v, "bf16");
      c->logits_f32 = !strcmp(v, "f32");
    } else if (!strcmp(k, "scale")) {
      char *end;
      c->scale = strtod(v, &end);
      bad = *end != 0 || end == v;
    } else if (!strcmp(k, "plan") || !strcmp(k, "output")) {
      char *end;
      uint64_t d = strtoull(v, &end, 16);
      bad = strlen(v) != 16 || *end;
      if (!strcmp(k, "plan")) {
        c->plan = d;
        c->has_plan = 1;
      } else {
        c->output = d;
        c->has_output = 1;
      }
    } else if (!strcmp(k, "status")) {
      c->status = status_from_name(v);
      bad = c->status < 0;
    } else if (!strcmp(k, "fp8")) {
      c->fp8 = !strcmp(v, "none")     ? MOE_SCALING_NONE
               : !strcmp(v, "tensor") ? MOE_SCALING_PER_TENSOR
               : !strcmp(v, "block")  ? MOE_SCALING_BLOCK
                                      : -1;
      bad = c->fp8 < 0;
    } else if (!strcmp(k, "mxfp4")) {
      c->mx = !strcmp(v, "w4a16") ? MX_W4A16 : !strcmp(v, "w4a8") ? MX_W4A8 : -1;
      bad = c->mx < 0;
    } else if (!strcmp(k, "w1_order")) {
      bad = strcmp(v, "canonical") && strcmp(v, "interleaved");
      c->w1_interleaved = !strcmp(v, "interleaved");
    } else if (!strcmp(k, "gemm_bias_dtype")) {
      bad = strcmp(v, "f32") && strcmp(v, "bf16");
      c->bias_bf16 = !strcmp(v, "bf16");
    } else if (!strcmp(k, "mx_scales")) {
      c->mx_scales = !strcmp(v, "given")       ? MX_SCALES_GIVEN
                     : !strcmp(v, "missing")   ? MX_SCALES_MISSING
                     : !strcmp(v, "misshaped") ? MX_SCALES_MISSHAPED
                                               : -1;
      bad = c->mx_scales < 0;
    } else if (!strcmp(k, "hidden") || !strcmp(k, "weights")) {
      bad = strcmp(v, "bf16") && strcmp(v, "e4m3");
      *(!strcmp(k, "hidden") ? &c->hidden_e4m3 : &c->weights_e4m3) = !strcmp(v, "e4m3");
    } else if (!strcmp(k, "s1") || !strcmp(k, "s2")) {
      /* an fp32 value written exactly as a decimal (e.g. 0.0078125) */
      char *end;
      double d = strtod(v, &end);
      float f = (float)d;
      bad = *end != 0 || end == v || (double)f != d || !(f > 0.0f);
      *(!strcmp(k, "s1") ? &c->s1 : &c->s2) = f;
    } else if (!strcmp(k, "layout")) {
      c->layout = !strcmp(v, "contiguous") ? MOE_LAYOUT_CONTIGUOUS
                  : !strcmp(v, "masked")   ? MOE_LAYOUT_MASKED
                                           : -1;
      bad = c->layout < 0;
    } else if (!strcmp(k, "counts")) {
      /* comma-separated non-negative decimals, one per local expert */
      const char *q = v;
      c->ncounts = 0;
      while (!bad) {
        char *end;
        errno = 0;
        long x = strtol(q, &end, 10);
        bad = errno || end == q || x < 0 || x > INT32_MAX || c->ncounts == MAX_COUNTS ||
              (*end != ',' && *end != 0);
        if (!bad) c->counts[c->ncounts++] = (int32_t)x;
        if (bad || *end == 0) break;
        q = end + 1;
      }
    } else if (!strcmp(k, "capacity")) {
      bad = parse_i64(v, &c->capacity) || c->capacity < 0;
    } else if (!strcmp(k, "seed")) {
      char *end;
      c->seed = strtoull(v, &end, 10);
      bad = *end != 0 || end == v;
    } else {
      bad = parse_i64(v, &x);
      if (!strcmp(k, "method"))
        c->method = (int)x;
      else if (!strcmp(k, "T"))
        c->T = x;
      else if (!strcmp(k, "E"))
        c->E = (int32_t)x;
      else if (!strcmp(k, "K"))
        c->K = (int32_t)x;
      else if (!strcmp(k, "H"))
        c->H = x;
      else if (!strcmp(k, "I"))
        c->I = x;
      else if (!strcmp(k, "offset"))
        c->offset = (int32_t)x;
      else if (!strcmp(k, "local"))
        c->local = (int32_t)x;
      else if (!strcmp(k, "act"))
        c->act = (int)x;
      else if (!strcmp(k, "tile"))
        c->tile = (int32_t)x;
      else if (!strcmp(k, "cluster"))
        c->cluster = (int32_t)x;
      else if (!strcmp(k, "n_group"))
        c->n_group = (int32_t)x;
      else if (!strcmp(k, "topk_group"))
        c->topk_group = (int32_t)x;
      else if (!strcmp(k, "bias"))
        c->bias = (int)x;
      else if (!strcmp(k, "gemm_bias"))
        c->gemm_bias = (int)x;
      else if (!strcmp(k, "swiglu_params"))
        c->swiglu = (int)x;
      else if (!strcmp(k, "finalize"))
        c->finalize = (int)x;
    }
    *eq = '=';
    if (bad) {
      fprintf(stderr, "line %d: bad value in '%s'\n", lineno, fields[i]);
      return 1;
    }
  }
  static const char *required[] = {"name",  "T",   "E",    "H",       "I",    "offset",
                                   "local", "act", "tile", "cluster", "seed", NULL};
  static const char *routed[] = {"method", "input", "K", NULL};
  static const char *grouped[] = {"counts", NULL};
  const char **lists[2] = {required, c->layout < 0 ? routed : grouped};
  for (int li = 0; li < 2; ++li)
    for (const char **r = lists[li]; *r; ++r) {
      if (!(seen & key_bit(*r))) {
        fprintf(stderr, "line %d: missing key '%s'\n", lineno, *r);
        return 1;
      }
    }
  if (c->layout >= 0) {
    /* a grouped case: no routing, no MXFP4, no plan digest; counts for every local expert;
       fp8= (hidden=, weights=, s1, s2) as a routed case */
    if (c->ncounts != c->local || c->mx ||
        (seen & (key_bit("method") | key_bit("input") | key_bit("logits_dtype") | key_bit("K") |
                 key_bit("plan")))) {
      fprintf(stderr,
              "line %d: a grouped case (layout=) takes counts= with one value per local expert, "
              "no method/input/logits_dtype/K/mxfp4/plan\n",
              lineno);
      return 1;
    }
    const int has_s = (c->s1 > 0.0f) + (c->s2 > 0.0f);
    if ((c->fp8 == MOE_SCALING_NONE && (c->hidden_e4m3 || c->weights_e4m3)) ||
        (c->fp8 == MOE_SCALING_PER_TENSOR) != (has_s == 2) || has_s == 1) {
      fprintf(stderr,
              "line %d: hidden=e4m3 / weights=e4m3 need fp8=; s1 and s2 go with fp8=tensor only\n",
              lineno);
      return 1;
    }
    if (c->layout == MOE_LAYOUT_MASKED
            ? !(seen & key_bit("capacity")) || c->T != c->local * c->capacity
            : c->capacity != 0) {
      fprintf(stderr,
              "line %d: layout=masked needs capacity= with T = local * capacity; "
              "layout=contiguous takes no capacity\n",
              lineno);
      return 1;
    }
    c->K = 1; /* the grouped problem's top_k (unused by the grouped path) */
    return 0;
  }
  if (seen & (key_bit("counts") | key_bit("capacity"))) {
    fprintf(stderr, "line %d: counts= and capacity= need layout=\n", lineno);
    return 1;
  }
  if (c->input == T_INPUT_LOGITS && !(seen & key_bit("logits_dtype"))) {
    fprintf(stderr, "line %d: input=logits needs logits_dtype\n", lineno);
    return 1;
  }
  if (c->fp8 == MOE_SCALING_NONE && (c->hidden_e4m3 || c->weights_e4m3)) {
    fprintf(stderr, "line %d: hidden=e4m3 / weights=e4m3 need fp8=tensor or fp8=block\n", lineno);
    return 1;
  }
  const int has_s = (c->s1 > 0.0f) + (c->s2 > 0.0f);
  if ((c->fp8 == MOE_SCALING_PER_TENSOR || c->mx == MX_W4A8) != (has_s == 2) || has_s == 1) {
    fprintf(stderr, "line %d: s1 and s2 are given with fp8=tensor or mxfp4=w4a8 and only then\n",
            lineno);
    return 1;
  }
  const uint64_t mx_keys = key_bit("w1_order") | key_bit("gemm_bias_dtype") | key_bit("mx_scales");
  if ((c->mx && c->fp8) || (!c->mx && (seen & mx_keys)) ||
      (c->w1_interleaved && !t_gated(c->act)) || c->swiglu < 0 || c->swiglu > 2) {
    fprintf(stderr,
            "line %d: mxfp4= excludes fp8=; w1_order, gemm_bias_dtype and mx_scales need mxfp4=; "
            "w1_order=interleaved a gated act; swiglu_params is 0, 1 or 2\n",
            lineno);
    return 1;
  }
  return 0;
}

/* ---- running a case ---------------------------------------------------------------------- */
typedef struct cdata {
  void *logits;
  uint16_t *bias, *weights;
  int32_t *ids, *packed;
  t_expert_data x; /* hidden, weights, biases, SwiGLU parameters */
  /* FP8 inputs given as e4m3 (streams 3-5) and their fp32 scales (streams 11-13); MXFP4:
   * w1q, w2q the packed e2m1 bytes (streams 4, 5), w1e, w2e the ue8m0 scales (12, 13) */
  uint8_t *hq, *w1q, *w2q, *w1e, *w2e;
  float *hs, *w1s, *w2s;
  uint16_t *b1h, *b2h; /* bf16 gemm biases (gemm_bias_dtype=bf16; streams 8, 9) */
} cdata;

static void make_cdata(const ccase *c, cdata *d) {
  const int64_t T = c->T, E = c->E, K = c->K, H = c->H, I = c->I, El = c->local;
  const int64_t f = t_gated(c->act) ? 2 : 1;
  memset(d, 0, sizeof *d);
  if (c->layout >= 0) {
    /* grouped: no routing inputs */
  } else if (c->input == T_INPUT_LOGITS) {
    if (c->logits_f32) {
      d->logits = t_xmalloc((size_t)(T * E) * 4);
      gen_fill_f32(c->seed, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_F32, d->logits, T * E);
    } else {
      d->logits = t_xmalloc((size_t)(T * E) * 2);
      gen_fill_bf16(c->seed, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_BF16, d->logits, T * E);
    }
  } else {
    d->ids = t_xmalloc((size_t)(T * K) * 4);
    d->weights = t_xmalloc((size_t)(T * K) * 2);
    gen_routed(c->seed, T, c->K, c->E, d->ids, d->weights);
    d->packed = t_xmalloc((size_t)(T * K) * 4);
    for (int64_t x = 0; x < T * K; ++x) d->packed[x] = gen_pack(d->ids[x], d->weights[x]);
  }
  if (c->bias) {
    d->bias = t_xmalloc((size_t)E * 2);
    gen_fill_bf16(c->seed, GEN_STREAM_ROUTING_BIAS, GEN_SCALE_ROUTING_BIAS, d->bias, E);
  }
  t_expert_data_gen(c->seed, T, El, H, I, f == 2, c->gemm_bias, c->swiglu, &d->x);
  if (c->swiglu == 2) /* gpt-oss's constants for every local expert */
    for (int64_t e = 0; e < El; ++e) {
      d->x.alpha[e] = 1.702f;
      d->x.beta[e] = 1.0f;
      d->x.clamp[e] = 7.0f;
    }
  if (c->gemm_bias && c->bias_bf16) {
    d->b1h = t_xmalloc((size_t)(El * f * I) * 2 + 2);
    d->b2h = t_xmalloc((size_t)(El * H) * 2 + 2);
    gen_fill_bf16(c->seed, GEN_STREAM_GEMM1_BIAS, GEN_SCALE_GEMM_BIAS_BF16, d->b1h, El * f * I);
    gen_fill_bf16(c->seed, GEN_STREAM_GEMM2_BIAS, GEN_SCALE_GEMM_BIAS_BF16, d->b2h, El * H);
  }
  if (c->mx) {
    /* W1 [El, f*I, H/2] and W2 [El, H, I/2] packed bytes; scales [El, R, C/32] */
    const int64_t n1 = El * f * I * (H / 2), n2 = El * H * (I / 2);
    const int64_t s1 = El * f * I * (H / 32), s2 = El * H * (I / 32);
    d->w1q = t_xmalloc((size_t)n1 + 1);
    d->w2q = t_xmalloc((size_t)n2 + 1);
    d->w1e = t_xmalloc((size_t)s1 + 1);
    d->w2e = t_xmalloc((size_t)s2 + 1);
    gen_fill_e2m1x2(c->seed, GEN_STREAM_W1, d->w1q, n1);
    gen_fill_e2m1x2(c->seed, GEN_STREAM_W2, d->w2q, n2);
    gen_fill_ue8m0(c->seed, GEN_STREAM_W1_SCALE, d->w1e, s1);
    gen_fill_ue8m0(c->seed, GEN_STREAM_W2_SCALE, d->w2e, s2);
  }
  const int block = c->fp8 == MOE_SCALING_BLOCK;
  if (c->hidden_e4m3) {
    d->hq = t_xmalloc((size_t)(T * H) + 1);
    gen_fill_e4m3(c->seed, GEN_STREAM_HIDDEN, d->hq, T * H);
    if (block) {
      d->hs = t_xmalloc((size_t)(T * (H / 128)) * 4 + 4);
      gen_fill_fp8_scale(c->seed, GEN_STREAM_HIDDEN_SCALE, GEN_SCALE_HIDDEN_SCALE, d->hs,
                         T * (H / 128));
    }
  }
  if (c->weights_e4m3) {
    const int64_t n1 = block ? El * (f * I / 128) * (H / 128) : El;
    const int64_t n2 = block ? El * (H / 128) * (I / 128) : El;
    d->w1q = t_xmalloc((size_t)(El * f * I * H) + 1);
    d->w2q = t_xmalloc((size_t)(El * H * I) + 1);
    gen_fill_e4m3(c->seed, GEN_STREAM_W1, d->w1q, El * f * I * H);
    gen_fill_e4m3(c->seed, GEN_STREAM_W2, d->w2q, El * H * I);
    d->w1s = t_xmalloc((size_t)n1 * 4 + 4);
    d->w2s = t_xmalloc((size_t)n2 * 4 + 4);
    gen_fill_fp8_scale(c->seed, GEN_STREAM_W1_SCALE, GEN_SCALE_WEIGHT_SCALE, d->w1s, n1);
    gen_fill_fp8_scale(c->seed, GEN_STREAM_W2_SCALE, GEN_SCALE_WEIGHT_SCALE, d->w2s, n2);
  }
}

static void free_cdata(cdata *d) {
  free(d->logits);
  free(d->bias);
  t_expert_data_free(&d->x);
  free(d->weights);
  free(d->ids);
  free(d->packed);
  free(d->hq);
  free(d->hs);
  free(d->w1q);
  free(d->w2q);
  free(d->w1s);
  free(d->w2s);
  free(d->w1e);
  free(d->w2e);
  free(d->b1h);
  free(d->b2h);
}

/* ---- FP8 runs (docs/formats.md "FP8") ------------------------------------------------------ */
#define DT_E4M3 ((DLDataType){kDLFloat8_e4m3fn, 8, 1})

/* The runner of a case kind (case_kind): BF16, FP8 per tensor / block, MXFP4 W4A16 / W4A8. */
static moe_runner *case_runner(int backend, int activation, int kind) {
  if (kind == MOE_SCALING_NONE) return t_runner(backend, activation);
  moe_runner_options o;
  if (moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION)) return NULL;
  o.backend = backend;
  o.activation = activation;
  o.activation_dtype = kind == 2 + MX_W4A16 ? MOE_DTYPE_BF16 : MOE_DTYPE_FP8_E4M3;
  o.weight_dtype = kind > MOE_SCALING_BLOCK ? MOE_DTYPE_MXFP4 : MOE_DTYPE_FP8_E4M3;
  o.scaling_mode = kind > MOE_SCALING_BLOCK ? MOE_SCALING_MX : kind;
  moe_runner *r = NULL;
  if (moe_runner_create(&o, &r)) {
    fprintf(stderr, "run_cases: FP8/MXFP4 runner: %s\n", moe_get_last_error());
    return NULL;
  }
  return r;
}

/* FP8 weights: bf16 through moe_weights_prepare (the library quantizes), or e4m3 codes and
 * their scales through moe_weights_prepare_scaled. MXFP4: the packed e2m1 bytes [El, R, C/2]
 * with ue8m0 scales [El, R, C/32] (none, or [El, R*C/32], in the mx_scales error cases); W1
 * as MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED with w1_order=interleaved. */
static moe_status_t fp8_weights_prepare(moe_runner *r, int backend, const moe_problem *p,
                                        const ccase *c, const cdata *d, t_weights *w) {
  const int64_t El = c->local, H = c->H, I = c->I, f = t_gated(c->act) ? 2 : 1;
  const int block = c->fp8 == MOE_SCALING_BLOCK;
  w->w1 = w->w2 = NULL;
  size_t bytes[2] = {0, 0};
  moe_status_t s = moe_weights_prepared_size(r, p, MOE_WEIGHTS_GEMM1, &bytes[0]);
  if (!s) s = moe_weights_prepared_size(r, p, MOE_WEIGHTS_GEMM2, &bytes[1]);
  if (s) return s;
  w->w1 = tt_new(backend, DT_U8, 1, (int64_t[]){(int64_t)bytes[0]});
  w->w2 = tt_new(backend, DT_U8, 1, (int64_t[]){(int64_t)bytes[1]});
  for (int which = MOE_WEIGHTS_GEMM1; which <= MOE_WEIGHTS_GEMM2 && !s; ++which) {
    const int64_t R = which == MOE_WEIGHTS_GEMM1 ? f * I : H;
    const int64_t C = which == MOE_WEIGHTS_GEMM1 ? H : I;
    ttensor *prep = which == MOE_WEIGHTS_GEMM1 ? w->w1 : w->w2;
    ttensor *canon, *scales = NULL;
    int prep_which = which;
    if (c->mx) {
      canon = tt_from_host(backend, DT_U8, 3, (int64_t[]){El, R, C / 2},
                           which == MOE_WEIGHTS_GEMM1 ? d->w1q : d->w2q);
      const uint8_t *sc = which == MOE_WEIGHTS_GEMM1 ? d->w1e : d->w2e;
      if (c->mx_scales == MX_SCALES_GIVEN)
        scales = tt_from_host(backend, DT_U8, 3, (int64_t[]){El, R, C / 32}, sc);
      else if (c->mx_scales == MX_SCALES_MISSHAPED)
        scales = tt_from_host(backend, DT_U8, 2, (int64_t[]){El, R * (C / 32)}, sc);
      if (which == MOE_WEIGHTS_GEMM1 && c->w1_interleaved)
        prep_which = MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED;
    } else if (c->weights_e4m3) {
      canon = tt_from_host(backend, DT_E4M3, 3, (int64_t[]){El, R, C},
                           which == MOE_WEIGHTS_GEMM1 ? d->w1q : d->w2q);
      const float *sc = which == MOE_WEIGHTS_GEMM1 ? d->w1s : d->w2s;
      scales = block ? tt_from_host(backend, DT_F32, 3, (int64_t[]){El, R / 128, C / 128}, sc)
                     : tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, sc);
    } else {
      canon = tt_from_host(backend, DT_BF16, 3, (int64_t[]){El, R, C},
                           which == MOE_WEIGHTS_GEMM1 ? d->x.w1 : d->x.w2);
    }
    s = moe_weights_prepare_scaled(r, p, prep_which, &canon->t, scales ? &scales->t : NULL,
                                   &prep->t, NULL);
    tt_free(canon);
    tt_free(scales);
  }
  return s;
}

/* The optional expert tensors of a case on a backend: x[0..4] = gemm1_bias [E_l, f*I],
 * gemm2_bias [E_l, H], alpha, beta, clamp_limit [E_l]; NULL where the case has none. */
static void expert_extras(int backend, const ccase *c, const cdata *d, ttensor *x[5]) {
  const int64_t El = c->local, f = t_gated(c->act) ? 2 : 1;
  memset(x, 0, 5 * sizeof x[0]);
  if (d->b1h) {
    x[0] = tt_from_host(backend, DT_BF16, 2, (int64_t[]){El, f * c->I}, d->b1h);
    x[1] = tt_from_host(backend, DT_BF16, 2, (int64_t[]){El, c->H}, d->b2h);
  } else if (d->x.b1) {
    x[0] = tt_from_host(backend, DT_F32, 2, (int64_t[]){El, f * c->I}, d->x.b1);
    x[1] = tt_from_host(backend, DT_F32, 2, (int64_t[]){El, c->H}, d->x.b2);
  }
  if (d->x.alpha) {
    x[2] = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, d->x.alpha);
    x[3] = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, d->x.beta);
    x[4] = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, d->x.clamp);
  }
}

static const DLTensor *tt_dl(const ttensor *t) {
  return t ? &t->t : NULL;
}

/* Run an FP8 or MXFP4 case: bf16 or e4m3 hidden states (+ [T, H/128] scales in BLOCK), the
 * static scales s1, s2 in PER_TENSOR and W4A8, the rest as t_run. */
static moe_status_t fp8_run(moe_runner *r, int backend, const moe_problem *p, const ccase *c,
                            const cdata *d, const t_weights *w, int32_t cfg, const moe_plan *plan,
                            const t_ws *ws, uint16_t *out_host) {
  const int64_t T = c->T, H = c->H;
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.do_finalize = c->finalize;
  ttensor *t[10] = {0}; /* hidden, hidden scale, s1, s2, b1, b2, alpha, beta, clamp, out */
  t[0] = c->hidden_e4m3 ? tt_from_host(backend, DT_E4M3, 2, (int64_t[]){T, H}, d->hq)
                        : tt_from_host(backend, DT_BF16, 2, (int64_t[]){T, H}, d->x.hidden);
  a.hidden_states = &t[0]->t;
  if (d->hs) {
    t[1] = tt_from_host(backend, DT_F32, 2, (int64_t[]){T, H / 128}, d->hs);
    a.hidden_states_scale = &t[1]->t;
  }
  if (c->s1 > 0.0f) {
    t[2] = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &c->s1);
    t[3] = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &c->s2);
    a.gemm1_input_scale = &t[2]->t;
    a.gemm2_input_scale = &t[3]->t;
  }
  a.gemm1_weights = &w->w1->t;
  a.gemm2_weights = &w->w2->t;
  expert_extras(backend, c, d, &t[4]);
  a.gemm1_bias = tt_dl(t[4]);
  a.gemm2_bias = tt_dl(t[5]);
  a.gemm1_alpha = tt_dl(t[6]);
  a.gemm1_beta = tt_dl(t[7]);
  a.gemm1_clamp_limit = tt_dl(t[8]);
  const int64_t rows = c->finalize ? T : plan->max_padded_rows;
  t[9] = tt_new(backend, DT_BF16, 2, (int64_t[]){rows, H});
  tmem_poison(backend, t[9]->t.data, t[9]->bytes);
  if (c->finalize)
    a.output = &t[9]->t;
  else
    a.permuted_output = &t[9]->t;
  moe_status_t s = moe_runner_run(r, p, &a, cfg, plan, ws->ptr, ws->bytes, NULL);
  if (!s) tmem_download(backend, out_host, t[9]->t.data, t[9]->bytes);
  for (int i = 0; i < 10; ++i) tt_free(t[i]);
  return s;
}

/* The config: first valid one with (tile, cluster); for error cases, else any catalogue one. */
static moe_status_t select_config(const moe_runner *r, const moe_problem *p, const ccase *c,
                                  int32_t *cfg) {
  int32_t cfgs[256], n = 0;
  moe_status_t s = moe_runner_get_valid_configs(r, p, cfgs, 256, &n);
  if (s) return s;
  for (int32_t i = 0; i < n && i < 256; ++i) {
    moe_config_info info;
    memset(&info, 0, sizeof info);
    info.version = MOE_CONFIG_INFO_VERSION;
    if (moe_runner_describe_config(r, cfgs[i], &info)) continue;
    if (info.tile == c->tile && info.cluster_size == c->cluster) {
      *cfg = cfgs[i];
      return MOE_STATUS_SUCCESS;
    }
  }
  /* not valid for the problem: let prepare say why */
  int32_t total = 0;
  moe_runner_get_num_configs(r, &total);
  for (int32_t i = 0; i < total; ++i) {
    moe_config_info info;
    memset(&info, 0, sizeof info);
    info.version = MOE_CONFIG_INFO_VERSION;
    if (!moe_runner_describe_config(r, i, &info) && info.tile == c->tile &&
        info.cluster_size == c->cluster) {
      *cfg = i;
      return MOE_STATUS_SUCCESS;
    }
  }
  *cfg = -1; /* prepare with an unknown index reports INVALID_CONFIG */
  return MOE_STATUS_SUCCESS;
}

typedef struct cresult {
  moe_status_t status;
  char message[256];
  uint64_t plan, output;
  uint16_t *out; /* the output values compared with the GPU (finalize: [T,H]; else and
                    grouped: the valid rows) */
  int64_t out_n;
  char check[256]; /* grouped: the first failed in-case check (sentinel rows, cross-check) */
} cresult;

static void run_on(int backend, moe_runner *r, const ccase *c, const cdata *d, cresult *res) {
  memset(res, 0, sizeof *res);
  moe_problem p;
  t_problem(&p, c->E, c->T, c->K, c->offset, c->local, c->H, c->I);
  int32_t cfg = -1;
  moe_status_t s = select_config(r, &p, c, &cfg);
  t_ws ws = {backend, NULL, 0};
  host_plan hp;
  memset(&hp, 0, sizeof hp);
  t_weights w = {NULL, NULL};
  uint16_t *out = NULL;
  if (!s) {
    size_t bytes = 0;
    /* an invalid config / problem makes sizing fail: then size for a valid stand-in so that
       prepare itself reports the error */
    if (moe_runner_get_workspace_size(r, &p, cfg, &bytes) == MOE_STATUS_SUCCESS)
      s = t_ws_alloc(r, backend, &p, cfg, &ws);
    else
      ws.ptr = tmem_alloc(backend, ws.bytes = 1 << 16);
  }
  moe_plan plan;
  if (!s) {
    t_route rt;
    t_route_init(&rt);
    rt.method = c->method;
    rt.input = c->input;
    rt.logits_f32 = c->logits_f32;
    rt.logits = d->logits;
    rt.bias_dtype = c->bias ? 1 : 0;
    rt.bias = d->bias;
    rt.ids = d->ids;
    rt.weights = d->weights;
    rt.packed = d->packed;
    rt.n_group = c->n_group;
    rt.topk_group = c->topk_group;
    rt.scale = (float)c->scale;
    s = t_prepare(r, backend, &p, &rt, cfg, &ws, &plan);
  }
  res->status = s;
  snprintf(res->message, sizeof res->message, "%s", s ? moe_get_last_error() : "");
  if (s) goto done;
  if (t_read_plan(r, &plan, &ws, c->E, &hp)) {
    res->status = MOE_STATUS_INTERNAL;
    goto done;
  }
  res->plan = t_plan_digest(&hp);
  t_moe_in in = t_expert_data_in(&d->x);
  if ((s = case_kind(c) ? fp8_weights_prepare(r, backend, &p, c, d, &w)
                        : t_weights_prepare(r, backend, &p, c->act, &in, &w))) {
    res->status = s;
    snprintf(res->message, sizeof res->message, "weights: %s", moe_get_last_error());
    goto done;
  }
  int64_t rows = c->finalize ? c->T : plan.max_padded_rows;
  out = t_xmalloc((size_t)(rows * c->H) * 2 + 2);
  if ((s = case_kind(c)
               ? fp8_run(r, backend, &p, c, d, &w, cfg, &plan, &ws, out)
               : t_run(r, backend, &p, c->act, &in, &w, cfg, &plan, &ws, c->finalize, out))) {
    res->status = s;
    snprintf(res->message, sizeof res->message, "run: %s", moe_get_last_error());
    goto done;
  }
  if (c->finalize) {
    res->out = out;
    res->out_n = c->T * c->H;
    out = NULL;
  } else {
    int64_t n = 0;
    for (int32_t rr = 0; rr < hp.permuted_size; ++rr) n += hp.p2t[rr] >= 0;
    res->out = t_xmalloc((size_t)(n * c->H) * 2 + 2);
    int64_t j = 0;
    for (int32_t rr = 0; rr < hp.permuted_size; ++rr)
      if (hp.p2t[rr] >= 0) memcpy(res->out + (j++) * c->H, out + (int64_t)rr * c->H, c->H * 2);
    res->out_n = n * c->H;
  }
  res->output = gen_fnv_u16(GEN_FNV_OFFSET, res->out, res->out_n);
done:
  free(out);
  t_weights_free(&w);
  t_free_plan(&hp);
  t_ws_free(&ws);
}

/* ---- grouped cases (moe_runner_run_grouped, docs/conformance.md "Grouped cases") ---------- */
#define GROUPED_SENTINEL 0xFFFFu /* the bf16 pre-filled into the output (tmem_poison) */

/* Output row of the i-th row of local expert e in the case's layout. */
static int64_t grouped_row(const ccase *c, int32_t e, int64_t i) {
  int64_t s = 0;
  if (c->layout == MOE_LAYOUT_MASKED) return e * c->capacity + i;
  for (int32_t j = 0; j < e; ++j) s += c->counts[j];
  return s + i;
}

/* The cross-check: the same rows through moe_routing_prepare (pre-routed ids, K = 1, token t
 * = the t-th valid row, experts ascending) and moe_runner_run with do_finalize = 0; each
 * permuted row must equal the grouped output row bit for bit. Returns 0 or fills res->check. */
static void grouped_cross_check(int backend, moe_runner *r, const ccase *c, const cdata *d,
                                const t_weights *w, const uint16_t *grouped, cresult *res) {
  int64_t T = 0;
  for (int32_t e = 0; e < c->local; ++e) T += c->counts[e];
  const int64_t H = c->H;
  moe_problem p;
  t_problem(&p, c->E, T, 1, c->offset, c->local, H, c->I);
  int32_t *ids = t_xmalloc(sizeof(int32_t) * (size_t)(T + 1));
  uint16_t *wts = t_xmalloc(sizeof(uint16_t) * (size_t)(T + 1));
  uint16_t *hid = t_xmalloc(sizeof(uint16_t) * (size_t)((T + 1) * H));
  int64_t *pos = t_xmalloc(sizeof(int64_t) * (size_t)(T + 1));
  int64_t t = 0;
  for (int32_t e = 0; e < c->local; ++e)
    for (int64_t i = 0; i < c->counts[e]; ++i, ++t) {
      ids[t] = c->offset + e;
      wts[t] = 0x3F80; /* 1.0 */
      pos[t] = grouped_row(c, e, i);
      memcpy(hid + t * H, d->x.hidden + pos[t] * H, sizeof(uint16_t) * (size_t)H);
    }
  t_expert_data x = d->x;
  x.hidden = hid;
  t_moe_in in = t_expert_data_in(&x);
  /* FP8: the same rows of the e4m3 hidden states and their BLOCK scales; the routed FP8 run
     (fp8_run) on the case with T valid rows and no finalize */
  ccase cc = *c;
  cc.T = T;
  cc.finalize = 0;
  cdata dd = *d;
  dd.x = x;
  dd.hq = NULL;
  dd.hs = NULL;
  const int64_t HB = H / 128;
  if (d->hq) {
    dd.hq = t_xmalloc((size_t)((T + 1) * H));
    for (int64_t j = 0; j < T; ++j) memcpy(dd.hq + j * H, d->hq + pos[j] * H, (size_t)H);
  }
  if (d->hs) {
    dd.hs = t_xmalloc(sizeof(float) * (size_t)((T + 1) * HB));
    for (int64_t j = 0; j < T; ++j)
      memcpy(dd.hs + j * HB, d->hs + pos[j] * HB, sizeof(float) * (size_t)HB);
  }
  int32_t cfg = -1;
  t_ws ws = {backend, NULL, 0};
  moe_plan plan;
  host_plan hp;
  memset(&hp, 0, sizeof hp);
  uint16_t *perm = NULL;
  t_route rt;
  t_route_init(&rt);
  rt.method = MOE_ROUTING_TOPK;
  rt.input = T_INPUT_IDS;
  rt.ids = ids;
  rt.weights = wts;
  moe_status_t s = select_config(r, &p, c, &cfg);
  if (!s) s = t_ws_alloc(r, backend, &p, cfg, &ws);
  if (!s) s = t_prepare(r, backend, &p, &rt, cfg, &ws, &plan);
  if (!s) {
    perm = t_xmalloc(sizeof(uint16_t) * (size_t)((plan.max_padded_rows + 1) * H));
    s = case_kind(c) ? fp8_run(r, backend, &p, &cc, &dd, w, cfg, &plan, &ws, perm)
                     : t_run(r, backend, &p, c->act, &in, w, cfg, &plan, &ws, 0, perm);
  }
  if (s) {
    snprintf(res->check, sizeof res->check, "cross-check run: %s", moe_get_last_error());
  } else if (t_read_plan(r, &plan, &ws, c->E, &hp)) {
    snprintf(res->check, sizeof res->check, "cross-check: reading the plan failed");
  } else {
    for (t = 0; t < T; ++t)
      if (hp.e2p[t] < 0 || memcmp(perm + (int64_t)hp.e2p[t] * H, grouped + pos[t] * H,
                                  sizeof(uint16_t) * (size_t)H)) {
        snprintf(res->check, sizeof res->check,
                 "output row %lld differs from moe_runner_run's unweighted row (slot %lld)",
                 (long long)pos[t], (long long)t);
        break;
      }
  }
  t_free_plan(&hp);
  t_ws_free(&ws);
  free(perm);
  free(dd.hq);
  free(dd.hs);
  free(pos);
  free(hid);
  free(wts);
  free(ids);
}

/* A grouped case: moe_runner_run_grouped on the case's layout and counts, hidden states [T, H]
 * (MASKED: [E_l, capacity, H]) from stream 3, the output pre-filled with GROUPED_SENTINEL and
 * digested whole; rows past the counts must keep the sentinel. */
static void run_grouped_on(int backend, moe_runner *r, const ccase *c, const cdata *d,
                           cresult *res) {
  memset(res, 0, sizeof *res);
  const int64_t T = c->T, H = c->H, El = c->local;
  const int masked = c->layout == MOE_LAYOUT_MASKED;
  moe_problem p;
  t_problem(&p, c->E, T, 1, c->offset, c->local, H, c->I);
  int32_t cfg = -1;
  size_t bytes = 0;
  t_ws ws = {backend, NULL, 0};
  t_weights w = {NULL, NULL};
  ttensor *t[11] = {0}; /* hidden, counts, b1, b2, alpha, beta, clamp, output, FP8 scales */
  t_moe_in in = t_expert_data_in(&d->x);
  moe_status_t s = select_config(r, &p, c, &cfg);
  if (!s && moe_runner_get_grouped_workspace_size(r, &p, cfg, &bytes) == MOE_STATUS_SUCCESS)
    ws.ptr = tmem_alloc(backend, ws.bytes = bytes);
  else if (!s) /* let the run report the problem */
    ws.ptr = tmem_alloc(backend, ws.bytes = 1 << 16);
  if (!s)
    s = case_kind(c) ? fp8_weights_prepare(r, backend, &p, c, d, &w)
                     : t_weights_prepare(r, backend, &p, c->act, &in, &w);
  if (!s) {
    const int64_t dm[3] = {El, c->capacity, H}, dc[2] = {T, H};
    moe_grouped_args a;
    moe_grouped_args_init(&a, MOE_GROUPED_ARGS_VERSION);
    a.layout = c->layout;
    a.capacity = c->capacity;
    t[0] = d->hq ? tt_from_host(backend, DT_E4M3, masked ? 3 : 2, masked ? dm : dc, d->hq)
                 : tt_from_host(backend, DT_BF16, masked ? 3 : 2, masked ? dm : dc, d->x.hidden);
    if (d->hs) { /* BLOCK, e4m3 hidden: [N, H/128], row e * capacity + i for MASKED */
      t[8] = tt_from_host(backend, DT_F32, 2, (int64_t[]){T, H / 128}, d->hs);
      a.hidden_states_scale = &t[8]->t;
    }
    if (c->s1 > 0.0f) {
      t[9] = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &c->s1);
      t[10] = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &c->s2);
      a.gemm1_input_scale = &t[9]->t;
      a.gemm2_input_scale = &t[10]->t;
    }
    t[1] = tt_from_host(backend, DT_I32, 1, (int64_t[]){El}, c->counts);
    t[7] = tt_new(backend, DT_BF16, masked ? 3 : 2, masked ? dm : dc);
    tmem_poison(backend, t[7]->t.data, t[7]->bytes);
    a.hidden_states = &t[0]->t;
    a.expert_counts = &t[1]->t;
    a.output = &t[7]->t;
    a.gemm1_weights = &w.w1->t;
    a.gemm2_weights = &w.w2->t;
    expert_extras(backend, c, d, &t[2]);
    a.gemm1_bias = tt_dl(t[2]);
    a.gemm2_bias = tt_dl(t[3]);
    a.gemm1_alpha = tt_dl(t[4]);
    a.gemm1_beta = tt_dl(t[5]);
    a.gemm1_clamp_limit = tt_dl(t[6]);
    s = moe_runner_run_grouped(r, &p, &a, cfg, ws.ptr, ws.bytes, NULL);
  }
  res->status = s;
  snprintf(res->message, sizeof res->message, "%s", s ? moe_get_last_error() : "");
  if (!s) {
    res->out_n = T * H;
    res->out = t_xmalloc(sizeof(uint16_t) * (size_t)(res->out_n + 1));
    tmem_download(backend, res->out, t[7]->t.data, t[7]->bytes);
    res->output = gen_fnv_u16(GEN_FNV_OFFSET, res->out, res->out_n);
    /* rows past the counts keep the sentinel */
    for (int64_t row = 0; row < T && !res->check[0]; ++row) {
      int covered = 0;
      for (int32_t e = 0; e < El && !covered; ++e)
        covered = row >= grouped_row(c, e, 0) && row < grouped_row(c, e, c->counts[e]);
      for (int64_t h = 0; h < H && !covered; ++h)
        if (res->out[row * H + h] != GROUPED_SENTINEL) {
          snprintf(res->check, sizeof res->check,
                   "output row %lld (past the counts) was written: [%lld] = 0x%04x", (long long)row,
                   (long long)h, res->out[row * H + h]);
          break;
        }
    }
    if (!res->check[0]) grouped_cross_check(backend, r, c, d, &w, res->out, res);
    /* keep the valid rows only (the GPU comparison) */
    int64_t n = 0;
    for (int32_t e = 0; e < El; ++e)
      for (int64_t i = 0; i < c->counts[e]; ++i, ++n)
        memmove(res->out + n * H, res->out + grouped_row(c, e, i) * H, sizeof(uint16_t) * H);
    res->out_n = n * H;
  }
  for (int i = 0; i < 11; ++i) tt_free(t[i]);
  t_weights_free(&w);
  t_ws_free(&ws);
}

/* ---- main ------------------------------------------------------------------------------- */
static int split(char *line, char **fields) {
  int n = 0;
  for (char *tok = strtok(line, " \t\r\n"); tok && n < MAX_FIELDS; tok = strtok(NULL, " \t\r\n"))
    fields[n++] = tok;
  return n;
}

int main(int argc, char **argv) {
  int regen = 0;
  const char *path = MOE_CONFORMANCE_DEFAULT_CASES;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--regen"))
      regen = 1;
    else
      path = argv[i];
  }
  const char *env = getenv("MOE_CONFORMANCE_CASES");
  if (env && *env) path = env;
  FILE *fp = fopen(path, "r");
  if (!fp) {
    fprintf(stderr, "run_cases: cannot open %s\n", path);
    return 2;
  }
  moe_runner *cpu[N_KINDS][8] = {{0}}, *gpu[N_KINDS][8] = {{0}}; /* [case_kind][activation] */
  int have_gpu = t_have_cuda();
  if (!regen)
    printf("cases: %s%s\n", path, have_gpu ? " (CPU + GPU)" : " (CPU; SKIP GPU: no CUDA device)");
  char line[4096], copy[4096];
  int lineno = 0, ncases = 0, nfail = 0, parse_errors = 0;
  while (fgets(line, sizeof line, fp)) {
    ++lineno;
    char *hash = strchr(line, '#');
    snprintf(copy, sizeof copy, "%s", line);
    if (hash) *hash = 0;
    char *fields[MAX_FIELDS];
    int n = split(line, fields);
    if (n == 0) {
      if (regen) fputs(copy, stdout);
      continue;
    }
    ccase c;
    if (parse_case(fields, n, &c, lineno)) {
      ++parse_errors;
      if (regen) fputs(copy, stdout);
      continue;
    }
    ++ncases;
    if (c.act < 0 || c.act > 7) c.act = MOE_ACTIVATION_SWIGLU;
    const int kind = case_kind(&c);
    if (!cpu[kind][c.act]) cpu[kind][c.act] = case_runner(MOE_BACKEND_CPU, c.act, kind);
    if (!cpu[kind][c.act]) {
      ++nfail;
      continue;
    }
    cdata d;
    make_cdata(&c, &d);
    cresult rc;
    const int grouped = c.layout >= 0;
    (grouped ? run_grouped_on : run_on)(MOE_BACKEND_CPU, cpu[kind][c.act], &c, &d, &rc);
    int ok = 1;
    char why[512] = "";
    if (c.status != MOE_STATUS_SUCCESS) {
      if (rc.status != c.status || rc.message[0] == 0) {
        ok = 0;
        snprintf(why, sizeof why, "expected status %s, got %d (%s) message '%s'",
                 moe_status_string(c.status), (int)rc.status, moe_status_string(rc.status),
                 rc.message);
      }
    } else if (rc.status != MOE_STATUS_SUCCESS) {
      ok = 0;
      snprintf(why, sizeof why, "status %d: %s", (int)rc.status, rc.message);
    } else if (rc.check[0]) {
      ok = 0;
      snprintf(why, sizeof why, "%s", rc.check);
    } else if (!regen) {
      if (!grouped && (!c.has_plan || c.plan != rc.plan)) {
        ok = 0;
        snprintf(why + strlen(why), sizeof why - strlen(why), "plan %016llx expected %016llx; ",
                 (unsigned long long)rc.plan, (unsigned long long)c.plan);
      }
      if (!c.has_output || c.output != rc.output) {
        ok = 0;
        snprintf(why + strlen(why), sizeof why - strlen(why), "output %016llx expected %016llx",
                 (unsigned long long)rc.output, (unsigned long long)c.output);
      }
    }
    if (regen) {
      /* reprint the fields with fresh digests (error cases unchanged) */
      if (c.status != MOE_STATUS_SUCCESS || rc.status != MOE_STATUS_SUCCESS) {
        fputs(copy, stdout);
        if (rc.status != c.status) fprintf(stderr, "regen: case %s: %s\n", c.name, why);
      } else {
        char out[4096] = "";
        for (int i = 0; i < n; ++i) {
          if (!strncmp(fields[i], "plan=", 5) || !strncmp(fields[i], "output=", 7)) continue;
          snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", fields[i]);
        }
        if (grouped)
          printf("%s output=%016llx\n", out, (unsigned long long)rc.output);
        else
          printf("%s plan=%016llx output=%016llx\n", out, (unsigned long long)rc.plan,
                 (unsigned long long)rc.output);
      }
    }
#ifdef MOE_TEST_WITH_CUDA
    if (have_gpu && c.status == MOE_STATUS_SUCCESS && rc.status == MOE_STATUS_SUCCESS) {
      if (!gpu[kind][c.act]) gpu[kind][c.act] = case_runner(MOE_BACKEND_CUDA, c.act, kind);
      cresult rg;
      if (gpu[kind][c.act]) {
        (grouped ? run_grouped_on : run_on)(MOE_BACKEND_CUDA, gpu[kind][c.act], &c, &d, &rg);
        if (rg.status == MOE_STATUS_NOT_SUPPORTED &&
            (c.mx ? cuda_mx_unsupported(&c) : (kind != MOE_SCALING_NONE && !grouped))) {
          /* a routed FP8 run, or MXFP4 W4A8 (or outside the CUDA rule), the CUDA backend does
           * not run (its message says why): the CPU result stands, the GPU skips */
          printf("SKIP GPU %s: %s\n", c.name, rg.message);
        } else if (rg.status) {
          ok = 0;
          snprintf(why + strlen(why), sizeof why - strlen(why), "GPU status %d: %s", (int)rg.status,
                   rg.message);
        } else {
          if (rg.check[0]) {
            ok = 0;
            snprintf(why + strlen(why), sizeof why - strlen(why), "GPU: %s; ", rg.check);
          }
          if (rg.plan != rc.plan) {
            ok = 0;
            snprintf(why + strlen(why), sizeof why - strlen(why),
                     "GPU plan %016llx != CPU %016llx; ", (unsigned long long)rg.plan,
                     (unsigned long long)rc.plan);
          }
          double err = rg.out_n == rc.out_n ? t_rel_err_bf16(rg.out, rc.out, rc.out_n) : 1e9;
          int64_t nf = t_count_nonfinite(rg.out, rg.out_n);
          if (err > 1e-2 || nf) {
            ok = 0;
            snprintf(why + strlen(why), sizeof why - strlen(why),
                     "GPU output: rel err %.3g, %lld non-finite", err, (long long)nf);
          }
        }
        free(rg.out);
      } else {
        ok = 0;
        snprintf(why + strlen(why), sizeof why - strlen(why), "GPU runner: %s",
                 moe_get_last_error());
      }
    }
#else
    (void)gpu;
#endif
    if (!regen) printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", c.name, ok ? "" : ": ", why);
    if (!ok) ++nfail;
    free(rc.out);
    free_cdata(&d);
  }
  fclose(fp);
  for (int m = 0; m < N_KINDS; ++m)
    for (int a = 0; a < 8; ++a) {
      moe_runner_destroy(cpu[m][a]);
      moe_runner_destroy(gpu[m][a]);
    }
  if (!regen)
    printf("conformance: %d cases, %d failed, %d parse errors\n", ncases, nfail, parse_errors);
  else
    fprintf(stderr, "regen: %d cases, %d parse errors\n", ncases, parse_errors);
  return (nfail || parse_errors || ncases == 0) && !regen ? 1 : (parse_errors ? 1 : 0);
}
