/*
 * test_api_errors.c - every public entry point with each kind of bad argument: NULL, wrong
 * dtype, wrong shape, wrong device, non-compact strides, out-of-range enum, bad struct
 * version, non-zero reserved fields, too-small workspace / buffers, config index out of range,
 * a config or plan from another problem / workspace / runner, and run with a config other than
 * the one routing was prepared with. Each must return the right status (never success, never
 * a crash) and leave a moe_get_last_error() message that names the argument (strstr).
 * A successful call in between must not leave a stale message behind it either.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conformance/gen.h"

#define ANY (-100) /* second accepted status unused */

static void expect(moe_status_t got, moe_status_t want, moe_status_t want2, const char *needle,
                   const char *call, int line) {
  ++tc_checks;
  if (got != want && got != want2) {
    tc_fail(__FILE__, line, "%s -> %d (%s), expected %d (%s); message: %s", call, (int)got,
            moe_status_string(got), (int)want, moe_status_string(want), moe_get_last_error());
    return;
  }
  const char *m = moe_get_last_error();
  ++tc_checks;
  if (!m || !strstr(m, needle))
    tc_fail(__FILE__, line, "%s: message \"%s\" does not name \"%s\"", call, m ? m : "(null)",
            needle);
}
#define EXPECT(call, st, needle) expect((call), (st), ANY, (needle), #call, __LINE__)
#define EXPECT2(call, st, st2, needle) expect((call), (st), (st2), (needle), #call, __LINE__)
#define IA MOE_STATUS_INVALID_ARGUMENT
#define VM MOE_STATUS_VERSION_MISMATCH
#define IC MOE_STATUS_INVALID_CONFIG
#define NS MOE_STATUS_NOT_SUPPORTED
#define IW MOE_STATUS_INSUFFICIENT_WORKSPACE

/* A valid setup every test mutates one thing of. */
enum { E = 8, T = 4, K = 2, H = 64, I = 64, EL = 8 };
static moe_runner *R, *R2, *RG; /* SwiGLU, a second SwiGLU runner, a GeGLU runner */
static moe_problem P;
static int32_t CFG, CFG2; /* tile 8 C 1, and another valid config */
static t_ws WS, WS2;
static ttensor *LOGITS, *HID, *W1C, *W2C, *W1P, *W2P, *OUT, *B1, *B2, *AL, *IDS, *WTS;
static moe_plan PLAN;

static void setup(void) {
  R = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU);
  R2 = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_SWIGLU);
  RG = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_GEGLU);
  if (!R || !R2 || !RG) exit(tc_summary("test_api_errors"));
  t_problem(&P, E, T, K, 0, EL, H, I);
  CFG = t_find_config(R, &P, 8, 1);
  CFG2 = t_find_config(R, &P, 32, 2);
  if (CFG < 0 || CFG2 < 0) {
    CHECK(0, "configs tile 8/C1 and 32/C2 must be valid");
    exit(tc_summary("test_api_errors"));
  }
  CHECK_OK(t_ws_alloc(R, MOE_BACKEND_CPU, &P, CFG, &WS));
  CHECK_OK(t_ws_alloc(R, MOE_BACKEND_CPU, &P, CFG, &WS2));
  uint16_t lg[T * E], hid[T * H];
  gen_fill_bf16(1, GEN_STREAM_LOGITS, GEN_SCALE_LOGITS_BF16, lg, T * E);
  gen_fill_bf16(1, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, hid, T * H);
  LOGITS = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, E}, lg);
  HID = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H}, hid);
  uint16_t *w1 = t_xmalloc(EL * 2 * I * H * 2), *w2 = t_xmalloc(EL * H * I * 2);
  gen_fill_bf16(1, GEN_STREAM_W1, GEN_SCALE_W1, w1, EL * 2 * I * H);
  gen_fill_bf16(1, GEN_STREAM_W2, GEN_SCALE_W2, w2, EL * H * I);
  W1C = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){EL, 2 * I, H}, w1);
  W2C = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 3, (int64_t[]){EL, H, I}, w2);
  free(w1);
  free(w2);
  size_t b1 = 0, b2 = 0;
  CHECK_OK(moe_weights_prepared_size(R, &P, MOE_WEIGHTS_GEMM1, &b1));
  CHECK_OK(moe_weights_prepared_size(R, &P, MOE_WEIGHTS_GEMM2, &b2));
  W1P = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)b1});
  W2P = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)b2});
  CHECK_OK(moe_weights_prepare(R, &P, MOE_WEIGHTS_GEMM1, &W1C->t, &W1P->t, NULL));
  CHECK_OK(moe_weights_prepare(R, &P, MOE_WEIGHTS_GEMM2, &W2C->t, &W2P->t, NULL));
  OUT = tt_new(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H});
  B1 = tt_new(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){EL, 2 * I});
  B2 = tt_new(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){EL, H});
  AL = tt_new(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){EL});
  memset(B1->t.data, 0, B1->bytes);
  memset(B2->t.data, 0, B2->bytes);
  for (int e = 0; e < EL; ++e) ((float *)AL->t.data)[e] = 1.0f;
  int32_t ids[T * K];
  uint16_t w[T * K];
  gen_routed(1, T, K, E, ids, w);
  IDS = tt_from_host(MOE_BACKEND_CPU, DT_I32, 2, (int64_t[]){T, K}, ids);
  WTS = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, K}, w);
}

static moe_routing_args rargs(void) {
  moe_routing_args a;
  moe_routing_args_init(&a, MOE_ROUTING_ARGS_VERSION);
  a.logits = &LOGITS->t;
  return a;
}

static moe_status_t prep(const moe_problem *p, const moe_routing_args *a, int32_t cfg) {
  moe_plan_init(&PLAN, MOE_PLAN_VERSION);
  return moe_routing_prepare(R, p, a, cfg, WS.ptr, WS.bytes, &PLAN, NULL);
}

static moe_run_args runargs(void) {
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.hidden_states = &HID->t;
  a.gemm1_weights = &W1P->t;
  a.gemm2_weights = &W2P->t;
  a.output = &OUT->t;
  return a;
}

/* A DLTensor copy with one thing changed (shape storage owned by the copy). */
typedef struct bad {
  DLTensor t;
  int64_t shape[4], strides[4];
} bad;
static void mut(bad *o, const ttensor *src) {
  o->t = src->t;
  for (int i = 0; i < 4; ++i) o->shape[i] = src->shape[i];
  o->t.shape = o->shape;
}
/* The kinds of bad tensor: 0 dtype, 1 shape, 2 ndim, 3 device, 4 NULL data, 5 strides. */
#define NBAD 6
static void badt(bad *b, const ttensor *src, int kind) {
  mut(b, src);
  switch (kind) {
    case 0:
      b->t.dtype = src->t.dtype.code == kDLInt ? DT_F32 : DT_I32;
      break;
    case 1:
      b->shape[b->t.ndim - 1] += 1;
      break;
    case 2:
      b->t.ndim = b->t.ndim == 1 ? 2 : b->t.ndim - 1;
      if (b->t.ndim == 2 && src->t.ndim == 1) b->shape[1] = 1;
      break;
    case 3:
      b->t.device.device_type = kDLCUDA;
      break;
    case 4:
      b->t.data = NULL;
      break;
    case 5:
      for (int i = 0; i < b->t.ndim; ++i) b->strides[i] = 2;
      b->t.strides = b->strides;
      if (b->t.ndim == 1 && b->shape[0] == 1) b->shape[0] = 2;
      break;
  }
}

static void test_library(void) {
  EXPECT(moe_cuda_device_count(NULL), IA, "count");
  moe_runner_options o;
  EXPECT(moe_runner_options_init(NULL, 1), IA, "opts");
  EXPECT(moe_runner_options_init(&o, 0), VM, "version");
  EXPECT(moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION + 1), VM, "version");
  moe_problem p;
  EXPECT(moe_problem_init(NULL, 1), IA, "problem");
  EXPECT(moe_problem_init(&p, 0), VM, "version");
  EXPECT(moe_problem_init(&p, 2), VM, "version");
  moe_routing_args ra;
  EXPECT(moe_routing_args_init(NULL, 1), IA, "args");
  EXPECT(moe_routing_args_init(&ra, 0), VM, "version");
  EXPECT(moe_routing_args_init(&ra, 2), VM, "version");
  moe_run_args rn;
  EXPECT(moe_run_args_init(NULL, 1), IA, "args");
  EXPECT(moe_run_args_init(&rn, 0), VM, "version");
  EXPECT(moe_run_args_init(&rn, MOE_RUN_ARGS_VERSION + 1), VM, "version");
  moe_plan pl;
  EXPECT(moe_plan_init(NULL, 1), IA, "plan");
  EXPECT(moe_plan_init(&pl, 0), VM, "version");
  EXPECT(moe_plan_init(&pl, 2), VM, "version");
}

static void test_create(void) {
  moe_runner *r = (moe_runner *)&r;
  moe_runner_options o;
  moe_runner_options_init(&o, 1);
  o.backend = MOE_BACKEND_CPU;
  EXPECT(moe_runner_create(&o, NULL), IA, "out");
#define CREATE_BAD(field, value, st, st2, needle)                      \
  do {                                                                 \
    moe_runner_options_init(&o, 1);                                    \
    o.backend = MOE_BACKEND_CPU;                                       \
    o.field = value;                                                   \
    r = (moe_runner *)&r;                                              \
    EXPECT2(moe_runner_create(&o, &r), st, st2, needle);               \
    CHECK(r == NULL, "failed create leaves *out = NULL (" #field ")"); \
  } while (0)
  CREATE_BAD(version, 0, VM, ANY, "version");
  CREATE_BAD(version, MOE_RUNNER_OPTIONS_VERSION + 1, VM, ANY, "version");
  CREATE_BAD(backend, 2, IA, ANY, "backend");
  CREATE_BAD(backend, -2, IA, ANY, "backend");
  CREATE_BAD(device_id, -1, IA, ANY, "device_id");
  CREATE_BAD(sm_version, 75, NS, IA, "sm_version");
  CREATE_BAD(activation_dtype, 7, NS, IA, "activation_dtype"); /* FP8 cases: test_fp8.c */
  CREATE_BAD(weight_dtype, 7, NS, IA, "weight_dtype");
  CREATE_BAD(activation, 5, IA, NS, "activation");
  CREATE_BAD(activation, 0, IA, NS, "activation");
  CREATE_BAD(activation, 99, IA, NS, "activation");
  CREATE_BAD(num_threads, -1, IA, ANY, "num_threads");
  CREATE_BAD(reserved[3], 1, IA, ANY, "reserved");
  if (!t_have_cuda()) { /* CUDA asked for, none present (or a CPU-only build) */
    moe_runner_options_init(&o, 1);
    o.backend = MOE_BACKEND_CUDA;
    r = (moe_runner *)&r;
    moe_status_t s = moe_runner_create(&o, &r);
    CHECK(s == MOE_STATUS_NO_DEVICE || s == MOE_STATUS_NOT_SUPPORTED,
          "CUDA runner without a device -> %d", (int)s);
    CHECK(moe_get_last_error()[0] != 0, "no message for a CUDA runner without a device");
    CHECK(r == NULL, "failed create leaves *out = NULL");
  }
  /* The CUDA catalogue without a GPU (sm_version 90): config queries and sizing work in
     every build (this is how CPU-only CI tests the catalogue); work needs a device. */
  {
    moe_runner_options_init(&o, 1);
    o.backend = MOE_BACKEND_CUDA;
    o.sm_version = 90;
    r = NULL;
    const moe_status_t created = moe_runner_create(&o, &r);
    moe_status_t s = created;
    CHECK(s == MOE_STATUS_SUCCESS, "CUDA runner with sm_version 90 -> %d: %s", (int)s,
          moe_get_last_error());
    if (s == MOE_STATUS_SUCCESS && !t_have_cuda()) {
      moe_problem p;
      t_problem(&p, E, T, K, 0, EL, H, I);
      size_t bytes = 0;
      CHECK_OK(moe_runner_get_workspace_size(r, &p, 0, &bytes));
      moe_routing_args a = rargs();
      moe_plan pl;
      moe_plan_init(&pl, 1);
      s = moe_routing_prepare(r, &p, &a, 0, WS.ptr, WS.bytes, &pl, NULL);
      CHECK((s == MOE_STATUS_NO_DEVICE || s == NS || s == IA) && moe_get_last_error()[0],
            "prepare on a CUDA runner without a device -> %d: %s", (int)s, moe_get_last_error());
    }
    if (created == MOE_STATUS_SUCCESS) {
      moe_problem p;
      t_problem(&p, E, T, K, 0, EL, 100, I); /* H not a multiple of 64 */
      int32_t n = 0, c[64];
      size_t bytes;
      EXPECT(moe_runner_get_valid_configs(r, &p, c, 64, &n), NS, "hidden_size");
      EXPECT(moe_runner_get_workspace_size(r, &p, 0, &bytes), IC, "config");
      t_problem(&p, E, T, K, 0, EL, H, 96); /* I not a multiple of 64 */
      EXPECT(moe_runner_get_workspace_size(r, &p, 0, &bytes), IC, "config");
      t_problem(&p, E, T, K, 0, EL, H, I);
      CHECK_OK(moe_runner_get_workspace_size(r, &p, 0, &bytes));
      moe_runner_destroy(r);
    }
  }
  int32_t b = -5;
  EXPECT(moe_runner_get_backend(NULL, &b), IA, "runner");
  EXPECT(moe_runner_get_backend(R, NULL), IA, "backend");
  CHECK_OK(moe_runner_get_backend(R, &b));
  CHECK(b == MOE_BACKEND_CPU, "backend %d", b);
  CHECK(moe_get_last_error()[0] == 0, "stale error after a success: %s", moe_get_last_error());
  moe_runner_destroy(NULL); /* no-op */
}

/* Every bad-problem variant through a function taking a problem. */
typedef moe_status_t (*problem_fn)(const moe_problem *p);
static moe_status_t f_valid(const moe_problem *p) {
  int32_t n, c[64];
  return moe_runner_get_valid_configs(R, p, c, 64, &n);
}
static moe_status_t f_default(const moe_problem *p) {
  int32_t c;
  return moe_runner_get_default_config(R, p, &c);
}
static moe_status_t f_ws(const moe_problem *p) {
  size_t b;
  return moe_runner_get_workspace_size(R, p, CFG, &b);
}
static moe_status_t f_wsize(const moe_problem *p) {
  size_t b;
  return moe_weights_prepared_size(R, p, MOE_WEIGHTS_GEMM1, &b);
}
static moe_status_t f_prep(const moe_problem *p) {
  moe_routing_args a = rargs();
  return prep(p, &a, CFG);
}
static moe_status_t f_run(const moe_problem *p) {
  moe_routing_args a = rargs();
  moe_status_t s = prep(&P, &a, CFG);
  if (s) return MOE_STATUS_INTERNAL;
  moe_run_args ra = runargs();
  return moe_runner_run(R, p, &ra, CFG, &PLAN, WS.ptr, WS.bytes, NULL);
}

static void bad_problems(problem_fn fn, const char *fname) {
  moe_problem p;
#define PB(field, value, st, needle)                                             \
  do {                                                                           \
    p = P;                                                                       \
    p.field = value;                                                             \
    moe_status_t s_ = fn(&p);                                                    \
    char call_[96];                                                              \
    snprintf(call_, sizeof call_, "%s(problem." #field " = " #value ")", fname); \
    expect(s_, st, ANY, needle, call_, __LINE__);                                \
  } while (0)
  {
    moe_status_t s = fn(NULL);
    char call[64];
    snprintf(call, sizeof call, "%s(NULL problem)", fname);
    expect(s, IA, ANY, "problem", call, __LINE__);
  }
  PB(version, 0, VM, "version");
  PB(version, 9, VM, "version");
  PB(num_experts, 0, IA, "num_experts");
  PB(num_experts, -4, IA, "num_experts");
  PB(num_experts, 70000, IA, "num_experts");
  PB(num_tokens, -1, IA, "num_tokens");
  PB(top_k, 0, IA, "top_k");
  PB(top_k, E + 1, IA, "top_k");
  PB(local_expert_offset, -1, IA, "local_expert_offset");
  PB(local_expert_offset, 1, IA, "local"); /* 1 + 8 > 8 */
  PB(local_num_experts, E + 1, IA, "local_num_experts");
  PB(local_num_experts, -1, IA, "local_num_experts");
  PB(hidden_size, 0, IA, "hidden_size");
  PB(hidden_size, -64, IA, "hidden_size");
  PB(intermediate_size, 0, IA, "intermediate_size");
  PB(reserved0, 1, IA, "reserved");
  PB(reserved[3], 1, IA, "reserved");
}

static void test_configs(void) {
  bad_problems(f_valid, "get_valid_configs");
  bad_problems(f_default, "get_default_config");
  bad_problems(f_ws, "get_workspace_size");
  bad_problems(f_wsize, "weights_prepared_size");
  bad_problems(f_prep, "routing_prepare");
  bad_problems(f_run, "runner_run");

  int32_t n = 0, c[64], cfg, nc = 0, cs;
  EXPECT(moe_runner_get_valid_configs(NULL, &P, c, 64, &n), IA, "runner");
  EXPECT(moe_runner_get_valid_configs(R, &P, c, 64, NULL), IA, "count");
  EXPECT(moe_runner_get_valid_configs(R, &P, c, -1, &n), IA, "capacity");
  EXPECT(moe_runner_get_valid_configs(R, &P, NULL, 4, &n), IA, "configs");
  CHECK_OK(moe_runner_get_valid_configs(R, &P, NULL, 0, &n));
  CHECK(n > 0, "no valid config");
  EXPECT(moe_runner_get_default_config(NULL, &P, &cfg), IA, "runner");
  EXPECT(moe_runner_get_default_config(R, &P, NULL), IA, "config");
  EXPECT(moe_runner_get_num_configs(NULL, &nc), IA, "runner");
  EXPECT(moe_runner_get_num_configs(R, NULL), IA, "count");
  CHECK_OK(moe_runner_get_num_configs(R, &nc));
  moe_config_info info;
  EXPECT(moe_runner_describe_config(NULL, 0, &info), IA, "runner");
  EXPECT(moe_runner_describe_config(R, 0, NULL), IA, "info");
  EXPECT(moe_runner_describe_config(R, -1, &info), IC, "config");
  EXPECT(moe_runner_describe_config(R, nc, &info), IC, "config");
  EXPECT(moe_runner_describe_config(R, 1 << 30, &info), IC, "config");
  EXPECT(moe_runner_get_cluster_size(NULL, 0, &cs), IA, "runner");
  EXPECT(moe_runner_get_cluster_size(R, 0, NULL), IA, "cluster_size");
  EXPECT(moe_runner_get_cluster_size(R, -1, &cs), IC, "config");
  EXPECT(moe_runner_get_cluster_size(R, nc, &cs), IC, "config");
  size_t b;
  EXPECT(moe_runner_get_workspace_size(NULL, &P, CFG, &b), IA, "runner");
  EXPECT(moe_runner_get_workspace_size(R, &P, CFG, NULL), IA, "bytes");
  EXPECT(moe_runner_get_workspace_size(R, &P, -1, &b), IC, "config");
  EXPECT(moe_runner_get_workspace_size(R, &P, nc, &b), IC, "config");
  /* Every config's cluster size agrees with its description. */
  for (int32_t i = 0; i < nc; ++i) {
    memset(&info, 0, sizeof info);
    info.version = MOE_CONFIG_INFO_VERSION;
    if (CHECK_OK(moe_runner_describe_config(R, i, &info))) continue;
    CHECK_OK(moe_runner_get_cluster_size(R, i, &cs));
    CHECK(info.index == i && cs == info.cluster_size && info.cta_tile * cs == info.tile &&
              info.tile % (8 * cs) == 0 && info.name[0] != 0,
          "config %d: index %d tile %d cta_tile %d C %d/%d name '%s'", i, info.index, info.tile,
          info.cta_tile, info.cluster_size, cs, info.name);
  }
  /* Method limits, through prepare (valid problem shapes, args the method forbids). */
  {
    moe_problem p = P;
    moe_routing_args a = rargs();
    a.method = 6;
    EXPECT(prep(&P, &a, CFG), IA, "method");
    a.method = -1;
    EXPECT(prep(&P, &a, CFG), IA, "method");
    a = rargs();
    a.method = MOE_ROUTING_LLAMA4; /* K = 2 */
    EXPECT(prep(&P, &a, CFG), IA, "top_k");
    moe_problem p11;
    t_problem(&p11, 16, T, 11, 0, 16, H, I);
    uint16_t lg[T * 16] = {0};
    ttensor *l16 = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, 16}, lg);
    a = rargs();
    a.logits = &l16->t;
    int32_t cfg11 = t_find_config(R, &p11, 8, 1);
    moe_plan_init(&PLAN, 1);
    t_ws ws11;
    if (!CHECK_OK(t_ws_alloc(R, MOE_BACKEND_CPU, &p11, cfg11, &ws11))) {
      for (int m = 0; m <= 5; ++m) {
        if (m == MOE_ROUTING_DEEPSEEK_V3 || m == MOE_ROUTING_LLAMA4) continue;
        a.method = m;
        EXPECT2(moe_routing_prepare(R, &p11, &a, cfg11, ws11.ptr, ws11.bytes, &PLAN, NULL), NS, IA,
                "top_k");
      }
      t_ws_free(&ws11);
    }
    tt_free(l16);
    /* DeepSeekV3 groups */
    a = rargs();
    a.method = MOE_ROUTING_DEEPSEEK_V3;
    a.n_group = 3; /* does not divide 8 */
    EXPECT(prep(&p, &a, CFG), IA, "n_group");
    a.n_group = -1;
    EXPECT(prep(&p, &a, CFG), IA, "n_group");
    a.n_group = 8; /* groups of one expert */
    a.topk_group = 1;
    EXPECT(prep(&p, &a, CFG), IA, "n_group");
    a.n_group = 4;
    a.topk_group = 5;
    EXPECT(prep(&p, &a, CFG), IA, "topk_group");
    a.topk_group = -1;
    EXPECT(prep(&p, &a, CFG), IA, "topk_group");
    a.n_group = 4;
    a.topk_group = 1; /* K = 2 <= 1 * 2: fine; K = 3 is not */
    p.top_k = 3;
    EXPECT(prep(&p, &a, CFG), IA, "top_k");
    p.top_k = K;
    a = rargs();
    a.n_group = 2; /* grouping on a non-DeepSeek method */
    EXPECT(prep(&P, &a, CFG), IA, "n_group");
    /* more experts than routing supports */
    moe_problem pe;
    t_problem(&pe, 1024, 1, 2, 0, 1024, H, I);
    int32_t cfge = t_find_config(R, &pe, 8, 1);
    t_ws wse;
    uint16_t *lge = calloc(1024, 2);
    ttensor *l1024 = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){1, 1024}, lge);
    free(lge);
    a = rargs();
    a.logits = &l1024->t;
    if (cfge >= 0 && !CHECK_OK(t_ws_alloc(R, MOE_BACKEND_CPU, &pe, cfge, &wse))) {
      EXPECT2(moe_routing_prepare(R, &pe, &a, cfge, wse.ptr, wse.bytes, &PLAN, NULL), NS, IA,
              "num_experts");
      t_ws_free(&wse);
    }
    tt_free(l1024);
  }
}

static void test_weights(void) {
  size_t b;
  EXPECT(moe_weights_prepared_size(NULL, &P, 1, &b), IA, "runner");
  EXPECT(moe_weights_prepared_size(R, &P, 1, NULL), IA, "bytes");
  EXPECT(moe_weights_prepared_size(R, &P, 0, &b), IA, "which");
  EXPECT(moe_weights_prepared_size(R, &P, 4, &b), IA, "which");
  /* 3 (GEMM1_GATE_UP_INTERLEAVED) is for MXFP4 runners only */
  EXPECT(moe_weights_prepared_size(R, &P, 3, &b), NS, "GEMM1_GATE_UP_INTERLEAVED");
  EXPECT(moe_weights_prepare(NULL, &P, 1, &W1C->t, &W1P->t, NULL), IA, "runner");
  EXPECT(moe_weights_prepare(R, NULL, 1, &W1C->t, &W1P->t, NULL), IA, "problem");
  EXPECT(moe_weights_prepare(R, &P, 0, &W1C->t, &W1P->t, NULL), IA, "which");
  EXPECT(moe_weights_prepare(R, &P, 4, &W1C->t, &W1P->t, NULL), IA, "which");
  EXPECT(moe_weights_prepare(R, &P, 3, &W1C->t, &W1P->t, NULL), NS, "which");
  EXPECT(moe_weights_prepare(R, &P, 1, NULL, &W1P->t, NULL), IA, "canonical");
  EXPECT(moe_weights_prepare(R, &P, 1, &W1C->t, NULL, NULL), IA, "prepared");
  EXPECT(moe_weights_prepare(R, &P, 1, &W2C->t, &W1P->t, NULL), IA, "canonical"); /* W2 as W1 */
  EXPECT(moe_weights_prepare(R, &P, 2, &W1C->t, &W2P->t, NULL), IA, "canonical");
  for (int k = 0; k < NBAD; ++k) {
    bad c;
    badt(&c, W1C, k);
    EXPECT(moe_weights_prepare(R, &P, 1, &c.t, &W1P->t, NULL), IA, "canonical");
    bad pbad;
    badt(&pbad, W1P, k);
    if (k == 1) pbad.shape[0] -= 2; /* too small rather than too large */
    if (k == 2) continue;           /* a 2-D uint8 view [n, 1] is a shape error too, below */
    EXPECT(moe_weights_prepare(R, &P, 1, &W1C->t, &pbad.t, NULL), IA, "prepared");
  }
  bad p2;
  badt(&p2, W1P, 2);
  EXPECT(moe_weights_prepare(R, &P, 1, &W1C->t, &p2.t, NULL), IA, "prepared");
  /* GeGLU runner: the same W1 shape [E_l, 2I, H]; a non-gated runner wants [E_l, I, H] */
  moe_runner *rr = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_RELU2);
  if (rr) {
    EXPECT(moe_weights_prepare(rr, &P, 1, &W1C->t, &W1P->t, NULL), IA, "canonical");
    moe_runner_destroy(rr);
  }
  EXPECT(moe_weights_prepare(R, &P, 1, &W1C->t, &W1P->t, (moe_cuda_stream_t)(uintptr_t)0x10), IA,
         "stream");
}

static void test_prepare(void) {
  moe_routing_args a = rargs();
  CHECK_OK(prep(&P, &a, CFG));
  CHECK(moe_get_last_error()[0] == 0, "stale error after a successful prepare");
  EXPECT(moe_routing_prepare(NULL, &P, &a, CFG, WS.ptr, WS.bytes, &PLAN, NULL), IA, "runner");
  EXPECT(moe_routing_prepare(R, &P, NULL, CFG, WS.ptr, WS.bytes, &PLAN, NULL), IA, "args");
  EXPECT(moe_routing_prepare(R, &P, &a, CFG, WS.ptr, WS.bytes, NULL, NULL), IA, "plan");
  EXPECT(moe_routing_prepare(R, &P, &a, CFG, NULL, WS.bytes, &PLAN, NULL), IA, "workspace");
  EXPECT(moe_routing_prepare(R, &P, &a, CFG, WS.ptr, 16, &PLAN, NULL), IW, "workspace");
  EXPECT(moe_routing_prepare(R, &P, &a, CFG, WS.ptr, WS.bytes - 1, &PLAN, NULL), IW, "workspace");
  EXPECT2(moe_routing_prepare(R, &P, &a, CFG, (char *)WS.ptr + 4, WS.bytes - 256, &PLAN, NULL), IA,
          IW, "workspace");
  EXPECT(moe_routing_prepare(R, &P, &a, CFG, WS.ptr, WS.bytes, &PLAN,
                             (moe_cuda_stream_t)(uintptr_t)0x10),
         IA, "stream");
  EXPECT(prep(&P, &a, -1), IC, "config");
  EXPECT(prep(&P, &a, 1 << 20), IC, "config");
  /* a workspace sized for T = 4 does not serve T = 100 */
  {
    moe_problem p = P;
    p.num_tokens = 100;
    uint16_t *lg = calloc(100 * E, 2);
    ttensor *l = tt_from_host(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){100, E}, lg);
    free(lg);
    moe_routing_args a2 = rargs();
    a2.logits = &l->t;
    EXPECT(prep(&p, &a2, CFG), IW, "workspace");
    tt_free(l);
  }
  /* args */
  moe_routing_args b = a;
  b.version = 0;
  EXPECT(prep(&P, &b, CFG), VM, "version");
  b = a;
  b.version = 2;
  EXPECT(prep(&P, &b, CFG), VM, "version");
  b = a;
  b.enable_pdl = 2;
  EXPECT(prep(&P, &b, CFG), IA, "enable_pdl");
  b = a;
  b.reserved[5] = 1;
  EXPECT(prep(&P, &b, CFG), IA, "reserved");
  b = a;
  b.logits = NULL; /* no input */
  EXPECT(prep(&P, &b, CFG), IA, "args");
  b = a;
  b.topk_packed = &IDS->t; /* two inputs */
  EXPECT(prep(&P, &b, CFG), IA, "args");
  b = a;
  b.topk_ids = &IDS->t;
  b.topk_weights = &WTS->t;
  EXPECT(prep(&P, &b, CFG), IA, "args");
  for (int k = 0; k < NBAD; ++k) {
    bad t;
    badt(&t, LOGITS, k);
    b = a;
    b.logits = &t.t;
    EXPECT(prep(&P, &b, CFG), IA, "logits");
    bad ti;
    badt(&ti, IDS, k);
    bad tw;
    badt(&tw, WTS, k);
    b = a;
    b.logits = NULL;
    b.topk_ids = &ti.t;
    b.topk_weights = &WTS->t;
    EXPECT(prep(&P, &b, CFG), IA, "topk_ids");
    b.topk_ids = &IDS->t;
    b.topk_weights = &tw.t;
    EXPECT(prep(&P, &b, CFG), IA, "topk_weights");
    b = a;
    b.logits = NULL;
    b.topk_packed = &ti.t;
    EXPECT(prep(&P, &b, CFG), IA, "topk_packed");
  }
  b = a;
  b.logits = NULL;
  b.topk_ids = &IDS->t; /* ids without weights */
  EXPECT(prep(&P, &b, CFG), IA, "topk_weights");
  b.topk_ids = NULL;
  b.topk_weights = &WTS->t; /* weights without ids */
  EXPECT(prep(&P, &b, CFG), IA, "topk_ids");
  /* bias: only DeepSeekV3 uses it; wrong shape / dtype */
  {
    float bias[E + 1] = {0};
    ttensor *bt = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){E}, bias);
    b = a;
    b.bias = &bt->t;
    EXPECT(prep(&P, &b, CFG), IA, "bias");
    b.method = MOE_ROUTING_DEEPSEEK_V3;
    for (int k = 0; k < NBAD; ++k) {
      bad tb;
      badt(&tb, bt, k);
      b.bias = &tb.t;
      EXPECT(prep(&P, &b, CFG), IA, "bias");
    }
    tt_free(bt);
  }
  /*
   * Pre-routed ids outside [0, E) or repeated within a token. Values are data, not shape: a
   * GPU backend cannot check them without synchronising. Accepted outcomes: rejection naming
   * the tensor, or (the CPU backend's documented behaviour) the slot is treated as non-local:
   * expanded_to_permuted = -1, its weight still written, never a crash or an out-of-range
   * table entry.
   */
  {
    int32_t ids[T * K];
    memcpy(ids, IDS->t.data, sizeof ids);
    for (int variant = 0; variant < 4; ++variant) {
      int32_t v[T * K];
      memcpy(v, ids, sizeof v);
      int packed = variant >= 2;
      if (variant == 0 || variant == 2) v[3] = E; /* out of range */
      if (variant == 1) v[5] = -1;
      if (variant == 3) v[3] = E + 1000;
      ttensor *bi = tt_new(MOE_BACKEND_CPU, DT_I32, 2, (int64_t[]){T, K});
      for (int x = 0; x < T * K; ++x)
        ((int32_t *)bi->t.data)[x] = packed ? gen_pack(v[x], ((uint16_t *)WTS->t.data)[x]) : v[x];
      b = a;
      b.logits = NULL;
      if (packed) {
        b.topk_packed = &bi->t;
      } else {
        b.topk_ids = &bi->t;
        b.topk_weights = &WTS->t;
      }
      moe_status_t s = prep(&P, &b, CFG);
      ++tc_checks;
      if (s != MOE_STATUS_SUCCESS) {
        CHECK(s == IA && strstr(moe_get_last_error(), packed ? "topk_packed" : "topk_ids"),
              "bad pre-routed id (variant %d) -> %d: %s", variant, (int)s, moe_get_last_error());
      } else {
        host_plan hp;
        if (t_read_plan(R, &PLAN, &WS, E, &hp) == 0) {
          for (int x = 0; x < T * K; ++x) {
            int32_t id = packed ? (int32_t)((uint32_t)gen_pack(v[x], 0) >> 16) : v[x];
            int local = id >= 0 && id < E;
            CHECK(local || hp.e2p[x] == -1,
                  "variant %d: out-of-range id %d at slot %d mapped "
                  "to row %d",
                  variant, id, x, hp.e2p[x]);
            CHECK(hp.weights[x] == ((uint16_t *)WTS->t.data)[x], "variant %d: weight of slot %d",
                  variant, x);
            CHECK(hp.e2p[x] < hp.permuted_size, "variant %d: row out of range", variant);
          }
          int32_t total = 0;
          for (int e = 0; e < E; ++e) total += hp.counts[e];
          CHECK(total <= T * K - 1, "variant %d: out-of-range id counted", variant);
        }
        t_free_plan(&hp);
      }
      tt_free(bi);
    }
    /* the same expert twice in a token: rejected, or routed twice (never a crash) */
    ttensor *bi = tt_new(MOE_BACKEND_CPU, DT_I32, 2, (int64_t[]){T, K});
    for (int x = 0; x < T * K; ++x) ((int32_t *)bi->t.data)[x] = gen_pack(1, 0x3F80);
    b = a;
    b.logits = NULL;
    b.topk_packed = &bi->t;
    moe_status_t s = prep(&P, &b, CFG);
    CHECK(s == MOE_STATUS_SUCCESS || (s == IA && strstr(moe_get_last_error(), "topk_packed")),
          "duplicate ids -> %d: %s", (int)s, moe_get_last_error());
    tt_free(bi);
  }
  /* Llama4 with a GeGLU runner is fine; DeepSeek scale must be finite */
  b = a;
  b.method = MOE_ROUTING_DEEPSEEK_V3;
  b.routed_scaling_factor = 1.0f / 0.0f;
  EXPECT(prep(&P, &b, CFG), IA, "routed_scaling_factor");
}

static void test_run(void) {
  moe_routing_args ra = rargs();
  if (CHECK_OK(prep(&P, &ra, CFG))) return;
  moe_run_args a = runargs(), b;
  CHECK_OK(moe_runner_run(R, &P, &a, CFG, &PLAN, WS.ptr, WS.bytes, NULL));
  CHECK(moe_get_last_error()[0] == 0, "stale error after a successful run");
  EXPECT(moe_runner_run(NULL, &P, &a, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "runner");
  EXPECT(moe_runner_run(R, &P, NULL, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "args");
  EXPECT(moe_runner_run(R, &P, &a, CFG, NULL, WS.ptr, WS.bytes, NULL), IA, "plan");
  EXPECT2(moe_runner_run(R, &P, &a, CFG, &PLAN, NULL, WS.bytes, NULL), IA, IW, "workspace");
  EXPECT2(moe_runner_run(R, &P, &a, CFG, &PLAN, WS.ptr, 16, NULL), IA, IW, "workspace");
  EXPECT(moe_runner_run(R, &P, &a, CFG, &PLAN, WS.ptr, WS.bytes, (moe_cuda_stream_t)(uintptr_t)8),
         IA, "stream");
  /* config: out of range; valid but not the prepared one */
  EXPECT(moe_runner_run(R, &P, &a, -1, &PLAN, WS.ptr, WS.bytes, NULL), IC, "config");
  EXPECT(moe_runner_run(R, &P, &a, 1 << 20, &PLAN, WS.ptr, WS.bytes, NULL), IC, "config");
  EXPECT(moe_runner_run(R, &P, &a, CFG2, &PLAN, WS.ptr, WS.bytes, NULL), IC, "config");
  /* plan: unprepared, corrupted, from another workspace / problem / runner */
  moe_plan pl;
  moe_plan_init(&pl, 1);
  EXPECT(moe_runner_run(R, &P, &a, CFG, &pl, WS.ptr, WS.bytes, NULL), IA, "plan");
  pl = PLAN;
  pl.version = 7;
  EXPECT2(moe_runner_run(R, &P, &a, CFG, &pl, WS.ptr, WS.bytes, NULL), VM, IA, "plan");
  EXPECT2(moe_runner_run(R, &P, &a, CFG, &PLAN, WS2.ptr, WS2.bytes, NULL), IA, IC, "workspace");
  {
    moe_problem p = P;
    p.num_tokens = 3; /* another problem (T = 3 fits the same workspace) */
    bad h3;
    mut(&h3, HID);
    bad o3;
    mut(&o3, OUT);
    h3.shape[0] = 3;
    o3.shape[0] = 3;
    b = a;
    b.hidden_states = &h3.t;
    b.output = &o3.t;
    EXPECT2(moe_runner_run(R, &p, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, IC, "problem");
    p = P;
    p.local_expert_offset = 2;
    p.local_num_experts = 6;
    EXPECT2(moe_runner_run(R, &p, &a, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, IC, "problem");
    p = P;
    p.hidden_size = 128;
    EXPECT2(moe_runner_run(R, &p, &a, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, IC, "problem");
  }
  EXPECT(moe_runner_run(R2, &P, &a, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "plan");
  /* a prepare that fails invalidates the plan */
  {
    moe_plan keep = PLAN;
    moe_routing_args bad_args = rargs();
    bad_args.method = 42;
    moe_status_t s = moe_routing_prepare(R, &P, &bad_args, CFG, WS.ptr, WS.bytes, &keep, NULL);
    CHECK(s == IA, "bad method -> %d", (int)s);
    EXPECT(moe_runner_run(R, &P, &a, CFG, &keep, WS.ptr, WS.bytes, NULL), IA, "plan");
  }
  /* args */
  b = a;
  b.version = 0;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), VM, "version");
  b = a;
  b.do_finalize = 2;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "do_finalize");
  b = a;
  b.enable_pdl = -1;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "enable_pdl");
  b = a;
  b.reserved[0] = 3;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "reserved");
  b = a;
  b.hidden_states = NULL;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "hidden_states");
  b = a;
  b.gemm1_weights = NULL;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "gemm1_weights");
  b = a;
  b.gemm2_weights = NULL;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "gemm2_weights");
  b = a;
  b.output = NULL;
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "output");
  b = a;
  b.do_finalize = 0; /* needs permuted_output */
  EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "permuted_output");
  for (int k = 0; k < NBAD; ++k) {
    bad h;
    badt(&h, HID, k);
    bad w1;
    badt(&w1, W1P, k);
    bad w2;
    badt(&w2, W2P, k);
    bad o;
    badt(&o, OUT, k);
    bad b1;
    badt(&b1, B1, k);
    bad b2;
    badt(&b2, B2, k);
    bad al;
    badt(&al, AL, k);
    if (k == 1) { /* prepared weights too small rather than too large */
      w1.shape[0] -= 2;
      w2.shape[0] -= 2;
    }
#define RUN_BAD(field, value, needle)                                                      \
  do {                                                                                     \
    b = a;                                                                                 \
    b.field = value;                                                                       \
    expect(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, ANY, needle, \
           "run(bad " #field ")", __LINE__);                                               \
  } while (0)
    RUN_BAD(hidden_states, &h.t, "hidden_states");
    RUN_BAD(gemm1_weights, &w1.t, "gemm1_weights");
    RUN_BAD(gemm2_weights, &w2.t, "gemm2_weights");
    RUN_BAD(output, &o.t, "output");
    RUN_BAD(gemm1_bias, &b1.t, "gemm1_bias");
    RUN_BAD(gemm2_bias, &b2.t, "gemm2_bias");
    RUN_BAD(gemm1_alpha, &al.t, "gemm1_alpha");
    RUN_BAD(gemm1_beta, &al.t, "gemm1_beta");
    RUN_BAD(gemm1_clamp_limit, &al.t, "gemm1_clamp_limit");
  }
  /* permuted_output smaller than the plan's capacity */
  {
    ttensor *po = tt_new(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){PLAN.max_padded_rows - 1, H});
    b = a;
    b.do_finalize = 0;
    b.output = NULL;
    b.permuted_output = &po->t;
    EXPECT(moe_runner_run(R, &P, &b, CFG, &PLAN, WS.ptr, WS.bytes, NULL), IA, "permuted_output");
    tt_free(po);
  }
  /* SwiGLU parameters on a GeGLU runner */
  {
    moe_routing_args rg = rargs();
    moe_plan pg;
    moe_plan_init(&pg, 1);
    t_ws wsg;
    if (!CHECK_OK(t_ws_alloc(RG, MOE_BACKEND_CPU, &P, CFG, &wsg))) {
      if (!CHECK_OK(moe_routing_prepare(RG, &P, &rg, CFG, wsg.ptr, wsg.bytes, &pg, NULL))) {
        b = a;
        b.gemm1_alpha = &AL->t;
        EXPECT(moe_runner_run(RG, &P, &b, CFG, &pg, wsg.ptr, wsg.bytes, NULL), IA, "gemm1_alpha");
      }
      t_ws_free(&wsg);
    }
  }
  /* forward */
  {
    int32_t dc = -1;
    size_t need = 0;
    CHECK_OK(moe_runner_get_default_config(R, &P, &dc));
    CHECK_OK(moe_runner_get_workspace_size(R, &P, dc, &need));
    t_ws wf;
    CHECK_OK(t_ws_alloc(R, MOE_BACKEND_CPU, &P, dc, &wf));
    CHECK_OK(moe_forward(R, &P, &ra, &a, wf.ptr, wf.bytes, NULL));
    EXPECT(moe_forward(NULL, &P, &ra, &a, wf.ptr, wf.bytes, NULL), IA, "runner");
    EXPECT(moe_forward(R, NULL, &ra, &a, wf.ptr, wf.bytes, NULL), IA, "problem");
    EXPECT(moe_forward(R, &P, NULL, &a, wf.ptr, wf.bytes, NULL), IA, "args");
    EXPECT(moe_forward(R, &P, &ra, NULL, wf.ptr, wf.bytes, NULL), IA, "args");
    EXPECT(moe_forward(R, &P, &ra, &a, wf.ptr, need - 1, NULL), IW, "workspace");
    EXPECT(moe_forward(R, &P, &ra, &a, NULL, need, NULL), IA, "workspace");
    b = a;
    b.hidden_states = NULL;
    EXPECT(moe_forward(R, &P, &ra, &b, wf.ptr, wf.bytes, NULL), IA, "hidden_states");
    t_ws_free(&wf);
  }
  /* autotune (argument checks only; the CPU backend may or may not time) */
  {
    int32_t cfgs[64], n = 0;
    float us[64];
    EXPECT(moe_runner_autotune(NULL, &P, &ra, &a, WS.ptr, WS.bytes, 1, cfgs, us, 64, &n, NULL), IA,
           "runner");
    EXPECT(moe_runner_autotune(R, &P, &ra, &a, WS.ptr, WS.bytes, 1, cfgs, us, 64, NULL, NULL), IA,
           "count");
    EXPECT(moe_runner_autotune(R, &P, &ra, &a, WS.ptr, WS.bytes, 0, cfgs, us, 64, &n, NULL), IA,
           "iterations");
    EXPECT(moe_runner_autotune(R, &P, &ra, &a, WS.ptr, WS.bytes, 1, cfgs, us, -1, &n, NULL), IA,
           "capacity");
    EXPECT(moe_runner_autotune(R, &P, &ra, &a, WS.ptr, WS.bytes, 1, NULL, us, 64, &n, NULL), IA,
           "configs");
    EXPECT(moe_runner_autotune(R, NULL, &ra, &a, WS.ptr, WS.bytes, 1, cfgs, us, 64, &n, NULL), IA,
           "problem");
  }
}

static void test_plan_access(void) {
  moe_routing_args ra = rargs();
  if (CHECK_OK(prep(&P, &ra, CFG))) return;
  moe_plan_view v;
  int32_t buf[256];
  int64_t n;
  CHECK_OK(moe_plan_get_view(R, &PLAN, WS.ptr, WS.bytes, &v));
  EXPECT(moe_plan_get_view(NULL, &PLAN, WS.ptr, WS.bytes, &v), IA, "runner");
  EXPECT(moe_plan_get_view(R, NULL, WS.ptr, WS.bytes, &v), IA, "plan");
  EXPECT(moe_plan_get_view(R, &PLAN, WS.ptr, WS.bytes, NULL), IA, "view");
  EXPECT(moe_plan_get_view(R, &PLAN, WS2.ptr, WS2.bytes, &v), IA, "workspace");
  EXPECT(moe_plan_get_view(R2, &PLAN, WS.ptr, WS.bytes, &v), IA, "plan");
  moe_plan pl;
  moe_plan_init(&pl, 1);
  EXPECT(moe_plan_get_view(R, &pl, WS.ptr, WS.bytes, &v), IA, "plan");
  EXPECT(moe_plan_read(NULL, &PLAN, WS.ptr, WS.bytes, 0, buf, sizeof buf, NULL), IA, "runner");
  EXPECT(moe_plan_read(R, NULL, WS.ptr, WS.bytes, 0, buf, sizeof buf, NULL), IA, "plan");
  EXPECT(moe_plan_read(R, &pl, WS.ptr, WS.bytes, 0, buf, sizeof buf, NULL), IA, "plan");
  EXPECT(moe_plan_read(R, &PLAN, WS2.ptr, WS2.bytes, 0, buf, sizeof buf, NULL), IA, "workspace");
  EXPECT(moe_plan_read(R, &PLAN, WS.ptr, WS.bytes, -1, buf, sizeof buf, NULL), IA, "table");
  EXPECT(moe_plan_read(R, &PLAN, WS.ptr, WS.bytes, 10, buf, sizeof buf, NULL), IA, "table");
  EXPECT(moe_plan_read(R, &PLAN, WS.ptr, WS.bytes, 0, NULL, sizeof buf, NULL), IA, "dst");
  EXPECT(moe_plan_read(R, &PLAN, WS.ptr, WS.bytes, 0, buf, T * K * 4 - 1, NULL), IA, "dst_bytes");
  EXPECT(
      moe_plan_read(R, &PLAN, WS.ptr, WS.bytes, MOE_PLAN_EXPERT_WEIGHTS, buf, T * K * 2 - 1, NULL),
      IA, "dst_bytes");
  EXPECT(moe_plan_read(R, &PLAN, WS.ptr, WS.bytes, 0, buf, sizeof buf,
                       (moe_cuda_stream_t)(uintptr_t)8),
         IA, "stream");
  EXPECT(moe_plan_read_count(NULL, &PLAN, WS.ptr, WS.bytes, 0, &n, NULL), IA, "runner");
  EXPECT(moe_plan_read_count(R, NULL, WS.ptr, WS.bytes, 0, &n, NULL), IA, "plan");
  EXPECT(moe_plan_read_count(R, &PLAN, WS.ptr, WS.bytes, 0, NULL, NULL), IA, "count");
  EXPECT(moe_plan_read_count(R, &PLAN, WS.ptr, WS.bytes, 11, &n, NULL), IA, "table");
  EXPECT(moe_plan_read_count(R, &PLAN, WS2.ptr, WS2.bytes, 0, &n, NULL), IA, "workspace");
  /* the view matches the tables */
  CHECK(v.device_type == kDLCPU && v.num_tokens == T && v.top_k == K && v.num_experts == E &&
            v.tile == PLAN.tile && v.cluster_size == PLAN.cluster_size &&
            v.max_padded_rows == PLAN.max_padded_rows && v.max_ctas == PLAN.max_ctas,
        "plan view fields");
  host_plan hp;
  if (t_read_plan(R, &PLAN, &WS, E, &hp) == 0) {
    CHECK(memcmp(v.topk_ids, hp.topk_ids, T * K * 4) == 0 &&
              memcmp(v.expert_weights, hp.weights, T * K * 2) == 0 &&
              memcmp(v.expanded_to_permuted, hp.e2p, T * K * 4) == 0 &&
              *v.num_ctas == hp.num_ctas && *v.permuted_size == hp.permuted_size &&
              memcmp(v.permuted_to_token, hp.p2t, (size_t)hp.permuted_size * 4) == 0 &&
              memcmp(v.cta_to_mn_limit, hp.mn_limit, (size_t)hp.num_ctas * 4) == 0,
          "plan view and plan_read disagree");
  }
  t_free_plan(&hp);
}

int main(void) {
  setup();
  test_library();
  test_create();
  test_configs();
  test_weights();
  test_prepare();
  test_run();
  test_plan_access();
  moe_runner_destroy(R);
  moe_runner_destroy(R2);
  moe_runner_destroy(RG);
  return tc_summary("test_api_errors");
}
