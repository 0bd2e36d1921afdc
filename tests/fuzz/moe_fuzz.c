/*
 * moe_fuzz.c - libFuzzer harness over the public C API on the CPU backend (issue 23).
 *
 * Each input is decoded, one byte per decision, into a whole call sequence: runner options,
 * a problem, canonical weights and moe_weights_prepare, config queries, workspace sizing, a
 * workspace, routing arguments, moe_routing_prepare, plan edits / stale plans / foreign
 * workspaces, run arguments, moe_runner_run and the plan readers. Every decision's byte 0
 * means "the valid choice", so the empty input is a valid forward and mutations are lies.
 *
 * Lies are only ones the library can check, so that whatever it accepts is safe to execute:
 * a tensor's memory always matches its declared dtype, shape and byte_offset (allocated for
 * them), except that it may be NULL (non-empty: must be refused), have an element count that
 * overflows (must be refused), a wrapping byte_offset (must be refused), a misaligned address
 * (must be refused), non-compact or negative strides, a wrong device, dtype, lanes or ndim.
 * Declared sizes past MAX_BYTES get NULL data (refused unless empty). The workspace is
 * allocated with the size passed.
 *
 * Invariants (abort = finding), besides ASan / UBSan / LeakSanitizer:
 *  - a failing call returns a documented status other than INTERNAL, with a message;
 *  - a successful call leaves no message;
 *  - a plan that was edited, is stale or belongs to another workspace is never accepted.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe_trtllm.h"

/* Largest buffer the harness allocates. It also bounds the work of one input (the GEMMs of a
 * valid problem scale with its tensors): a lied token count like 5631 is a valid call, but
 * its forward under ASan + coverage took seconds on a loaded machine. */
#define MAX_BYTES (1 << 18)
/* Largest T for which the harness also calls moe_forward and moe_runner_autotune (which
 * repeat the whole forward, autotune once per valid config). */
#define MAX_REPEAT_TOKENS 64

/* ---- input reader ------------------------------------------------------------------------- */
typedef struct rd {
  const uint8_t *p;
  size_t n, at;
} rd;

static uint8_t u8(rd *r) {
  return r->at < r->n ? r->p[r->at++] : 0;
}
static uint64_t u64(rd *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= (uint64_t)u8(r) << (8 * i);
  return v;
}
/* A decision: 0 (the valid choice) for bytes < 224, else 1 + (byte - 224) (32 lies). */
static int lie(rd *r) {
  uint8_t b = u8(r);
  return b < 224 ? 0 : 1 + (b - 224);
}
/* An int64 value: @p valid, or one of the usual suspects. */
static int64_t val64(rd *r, int64_t valid) {
  switch (lie(r)) {
    case 0:
      return valid;
    case 1:
      return 0;
    case 2:
      return -1;
    case 3: /* wrapping arithmetic: the harness itself must stay free of UB */
      return (int64_t)((uint64_t)valid + 1);
    case 4:
      return (int64_t)((uint64_t)valid - 1);
    case 5:
      return INT32_MAX;
    case 6:
      return (int64_t)INT32_MAX + 1;
    case 7:
      return INT64_MAX;
    case 8:
      return INT64_MIN;
    case 9:
      return (int64_t)1 << 62;
    case 10:
      return (int64_t)((uint64_t)valid * 2);
    default:
      return (int64_t)u64(r);
  }
}
static int32_t val32(rd *r, int32_t valid) {
  int64_t v = val64(r, valid);
  return (int32_t)(uint32_t)(uint64_t)v;
}

static void fail(const char *what, moe_status_t s) {
  fprintf(stderr, "moe_fuzz: invariant broken: %s (status %d, message \"%s\")\n", what, (int)s,
          moe_get_last_error());
  abort();
}

/* Every call's status and message agree with the error contract. */
static moe_status_t seen(moe_status_t s, const char *call) {
  const char *m = moe_get_last_error();
  if (!m) fail("moe_get_last_error returned NULL", s);
  if (s == MOE_STATUS_SUCCESS) {
    if (m[0]) fail(call, s); /* a stale message after a success */
    return s;
  }
  int known = s == MOE_STATUS_INVALID_ARGUMENT || s == MOE_STATUS_NOT_SUPPORTED ||
              s == MOE_STATUS_OUT_OF_MEMORY || s == MOE_STATUS_NO_DEVICE ||
              s == MOE_STATUS_INSUFFICIENT_WORKSPACE || s == MOE_STATUS_VERSION_MISMATCH ||
              s == MOE_STATUS_INVALID_CONFIG;
  if (!known) fail(call, s); /* INTERNAL, CUDA_ERROR on a CPU runner, or an unknown code */
  if (!m[0]) fail(call, s);  /* a failure without a message */
  return s;
}
#define CALL(x) seen((x), #x)

/* ---- tensors ------------------------------------------------------------------------------ */
typedef struct ft {
  DLTensor t;
  int64_t shape[4], strides[4];
  void *mem; /* what to free */
} ft;

static int64_t dtype_bytes(DLDataType d) {
  int64_t b = d.bits >= 8 ? d.bits / 8 : 1;
  return b * (d.lanes ? d.lanes : 1);
}

/* A tensor meant to be dtype @p dt with shape @p shape (ndim dims), possibly lied about. */
static DLTensor *mk(rd *r, ft *f, DLDataType dt, int32_t ndim, const int64_t *shape) {
  memset(f, 0, sizeof *f);
  f->t.ndim = ndim;
  f->t.dtype = dt;
  f->t.device.device_type = kDLCPU;
  for (int i = 0; i < ndim; ++i) f->shape[i] = shape[i];
  f->t.shape = f->shape;
  const int what = lie(r);
  switch (what) {
    case 0:
      break;
    case 1: /* dtype code / bits / lanes */
      f->t.dtype.code = u8(r) % 18;
      f->t.dtype.bits = (uint8_t)(1u << (u8(r) % 7));
      f->t.dtype.lanes = (uint16_t)(u8(r) % 3);
      break;
    case 2:
      f->t.ndim = (int32_t)(u8(r) % 5) - (u8(r) == 255);
      for (int i = ndim; i < 4; ++i) f->shape[i] = 1 + u8(r) % 4;
      if (f->t.ndim < 0) f->t.ndim = -1;
      break;
    case 3: /* one dim changed */
      if (ndim) f->shape[u8(r) % ndim] = val64(r, shape[0]) ^ (int64_t)(u8(r) % 3);
      break;
    case 4:
      if (ndim) f->shape[u8(r) % ndim] = -(int64_t)(u8(r) % 4) - 1;
      break;
    case 5:
      if (ndim) f->t.shape = NULL;
      break;
    case 6:
      f->t.device.device_type = (DLDeviceType)(int32_t)(u8(r) % 20);
      f->t.device.device_id = (int32_t)u8(r) - 1;
      break;
    case 7:
      f->t.device.device_type = kDLCUDAHost;
      break;
    case 8: /* a shape whose element count overflows */
      if (ndim) f->shape[u8(r) % ndim] = (int64_t)1 << (56 + u8(r) % 7);
      break;
    default:
      break;
  }
  /* Element count of what is declared, with overflow detection. */
  int64_t n = 1, esize = dtype_bytes(f->t.dtype);
  int overflow = 0, negative = 0;
  if (f->t.ndim > 0 && f->t.shape) {
    for (int i = 0; i < f->t.ndim && i < 4; ++i) {
      if (f->shape[i] < 0) negative = 1;
      if (f->shape[i] == 0) n = 0;
    }
    for (int i = 0; i < f->t.ndim && i < 4 && n > 0 && !negative; ++i) {
      if (f->shape[i] > INT64_MAX / esize / n) {
        overflow = 1;
        break;
      }
      n *= f->shape[i];
    }
  }
  if (f->t.ndim > 4) f->t.ndim = 4; /* the declared arrays hold 4 */
  /* strides: NULL, compact, or a lie */
  const int st = lie(r);
  if (st && f->t.ndim > 0) {
    int64_t e = 1;
    for (int i = f->t.ndim - 1; i >= 0; --i) {
      f->strides[i] = e;
      e *= f->shape[i] > 0 && f->shape[i] < (1 << 20) ? f->shape[i] : 1;
    }
    if (st >= 2) f->strides[u8(r) % f->t.ndim] = val64(r, 2);
    f->t.strides = f->strides;
  }
  /* memory */
  const int mem = lie(r);
  const uint64_t off = mem == 1 ? (uint64_t)(u8(r) % 64) : 0; /* maybe misaligned */
  const int64_t bytes = overflow || negative ? 0 : n * esize;
  if (mem == 2) {
    f->t.data = NULL; /* refused unless empty */
    f->t.byte_offset = u8(r);
  } else if (overflow || negative) {
    static uint8_t dummy[64];
    f->t.data = dummy; /* must be refused before use */
  } else if (bytes > MAX_BYTES) {
    f->t.data = NULL;
  } else {
    f->mem = malloc((size_t)bytes + off + 64);
    if (!f->mem) abort();
    const size_t shift = mem == 3 ? 1 + u8(r) % 15 : 0; /* data itself misaligned */
    uint8_t *base = (uint8_t *)f->mem;
    /* contents from a seeded SplitMix64 (not from the input, which must last for the
     * decisions after this tensor); random bf16 / fp32 bits include NaN and inf */
    uint64_t x = u8(r);
    for (int64_t i = 0; i < bytes + (int64_t)off + 64; i += 8) {
      uint64_t z = (x += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      const int64_t k = bytes + (int64_t)off + 64 - i < 8 ? bytes + (int64_t)off + 64 - i : 8;
      memcpy(base + i, &z, (size_t)k);
    }
    f->t.data = base + shift;
    f->t.byte_offset = off;
    if (mem == 4 && f->t.data) f->t.byte_offset = UINT64_MAX - u8(r); /* wraps */
  }
  return &f->t;
}

static void ft_free(ft *f) {
  free(f->mem);
  f->mem = NULL;
}

#define DT_BF16 ((DLDataType){kDLBfloat, 16, 1})
#define DT_F32 ((DLDataType){kDLFloat, 32, 1})
#define DT_I32 ((DLDataType){kDLInt, 32, 1})
#define DT_U8 ((DLDataType){kDLUInt, 8, 1})

/* ---- the call sequence -------------------------------------------------------------------- */
static void fuzz_one(rd *r) {
  /* runner */
  moe_runner_options o;
  if (CALL(moe_runner_options_init(&o, (uint32_t)val32(r, MOE_RUNNER_OPTIONS_VERSION)))) return;
  o.backend = MOE_BACKEND_CPU;
  const int32_t acts[4] = {MOE_ACTIVATION_SWIGLU, MOE_ACTIVATION_GEGLU, MOE_ACTIVATION_RELU2,
                           MOE_ACTIVATION_IDENTITY};
  o.activation = val32(r, acts[u8(r) % 4]);
  o.num_threads = val32(r, 1 + u8(r) % 2);
  if (lie(r)) o.reserved[u8(r) % 8] = 1;
  if (lie(r)) { /* the CUDA catalogue without a GPU: queries work, execution is refused */
    o.backend = MOE_BACKEND_CUDA;
    o.sm_version = 90;
  }
  moe_runner *R = NULL;
  if (CALL(moe_runner_create(&o, &R))) return;
  const int gated = o.activation == MOE_ACTIVATION_SWIGLU || o.activation == MOE_ACTIVATION_GEGLU;

  /* problem: small valid shapes, then lies */
  moe_problem p;
  moe_problem_init(&p, MOE_PROBLEM_VERSION);
  p.version = (uint32_t)val32(r, MOE_PROBLEM_VERSION);
  const int32_t E = 1 + u8(r) % 16;
  p.num_experts = val32(r, E);
  p.num_tokens = val64(r, u8(r) % 17);
  p.top_k = val32(r, 1 + u8(r) % (E < 4 ? E : 4));
  const int32_t el = 1 + u8(r) % E;
  p.local_num_experts = val32(r, u8(r) % 2 ? 0 : el);
  p.local_expert_offset = val32(r, u8(r) % (E - el + 1));
  p.hidden_size = val64(r, 64 * (1 + u8(r) % 2));
  p.intermediate_size = val64(r, 64 * (1 + u8(r) % 2));
  if (lie(r)) p.reserved[u8(r) % 4] = 1;
  if (u8(r) == 255) { /* the prepared-size-near-2^63 problem (item 5) */
    p.num_experts = p.local_num_experts = 3;
    p.local_expert_offset = 0;
    p.top_k = 1;
    p.num_tokens = 0;
    p.hidden_size = 715827883;
    p.intermediate_size = 2147483647;
  }

  /* config queries */
  int32_t cfgs[64], nv = 0, ncfg = 0, cs = 0, dflt = 0;
  moe_config_info info;
  CALL(moe_runner_get_num_configs(R, &ncfg));
  CALL(moe_runner_get_valid_configs(R, &p, cfgs, (int32_t)(u8(r) % 65), &nv));
  CALL(moe_runner_get_default_config(R, &p, &dflt));
  const int32_t cfg = val32(r, nv > 0 ? cfgs[u8(r) % (nv < 64 ? nv : 64)] : u8(r) % 24);
  CALL(moe_runner_describe_config(R, cfg, &info));
  CALL(moe_runner_get_cluster_size(R, cfg, &cs));

  /* weights */
  size_t w1b = 0, w2b = 0;
  CALL(moe_weights_prepared_size(R, &p, MOE_WEIGHTS_GEMM1, &w1b));
  CALL(moe_weights_prepared_size(R, &p, val32(r, MOE_WEIGHTS_GEMM2), &w2b));
  const int64_t El = p.local_num_experts ? p.local_num_experts : p.num_experts;
  const int64_t H = p.hidden_size, I = p.intermediate_size, T = p.num_tokens;
  ft c1, c2, w1, w2;
  const int64_t fI = (int64_t)((uint64_t)I * (gated ? 2u : 1u)); /* wraps for lied sizes */
  const int64_t s1[3] = {El, fI, H}, s2[3] = {El, H, I};
  const int64_t sw1[1] = {(int64_t)w1b}, sw2[1] = {(int64_t)w2b};
  DLTensor *tc1 = mk(r, &c1, DT_BF16, 3, s1), *tw1 = mk(r, &w1, DT_U8, 1, sw1);
  DLTensor *tc2 = mk(r, &c2, DT_BF16, 3, s2), *tw2 = mk(r, &w2, DT_U8, 1, sw2);
  if (lie(r)) tw1 = tc1; /* in place */
  CALL(moe_weights_prepare(R, &p, MOE_WEIGHTS_GEMM1, tc1, tw1, NULL));
  CALL(moe_weights_prepare(R, &p, MOE_WEIGHTS_GEMM2, tc2, tw2, NULL));
  tw1 = &w1.t;

  /* workspace */
  size_t need = 0;
  CALL(moe_runner_get_workspace_size(R, &p, cfg, &need));
  int64_t wsb = val64(r, (int64_t)need);
  if (u8(r) % 4 == 1 && wsb >= 0 && wsb < INT32_MAX)
    wsb += 256 * (u8(r) % 8); /* a larger workspace (T_max > T) */
  void *wsmem = NULL, *ws = NULL;
  if (wsb >= 0 && wsb <= 4 * MAX_BYTES) {
    wsmem = aligned_alloc(256, ((size_t)wsb + 511) / 256 * 256);
    if (!wsmem) abort();
    memset(wsmem, u8(r), (size_t)wsb + 256); /* earlier contents: garbage */
    ws = (char *)wsmem + (lie(r) ? 256 : 0) + (lie(r) ? 4 : 0);
  }

  /* routing */
  moe_routing_args ra;
  moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
  ra.version = (uint32_t)val32(r, MOE_ROUTING_ARGS_VERSION);
  ra.method = val32(r, u8(r) % 6);
  ra.n_group = val32(r, ra.method == MOE_ROUTING_DEEPSEEK_V3 ? 1 + (u8(r) % 2) : 1);
  ra.topk_group = val32(r, ra.n_group);
  ra.routed_scaling_factor = lie(r) ? (float)(int32_t)u64(r) / 0.0f : 1.0f;
  ra.enable_pdl = val32(r, 1);
  if (lie(r)) ra.reserved[u8(r) % 6] = 1;
  ft lg, bias, ids, wts, pk;
  memset(&bias, 0, sizeof bias);
  const int64_t te[2] = {T, p.num_experts}, tk[2] = {T, p.top_k}, e1[1] = {p.num_experts};
  const int input = u8(r) % 4;
  ra.logits = input == 0 || input == 3 ? mk(r, &lg, u8(r) % 2 ? DT_F32 : DT_BF16, 2, te)
                                       : (memset(&lg, 0, sizeof lg), NULL);
  ra.topk_ids =
      input == 1 || input == 3 ? mk(r, &ids, DT_I32, 2, tk) : (memset(&ids, 0, sizeof ids), NULL);
  ra.topk_weights = input == 1 ? mk(r, &wts, u8(r) % 2 ? DT_F32 : DT_BF16, 2, tk)
                               : (memset(&wts, 0, sizeof wts), NULL);
  ra.topk_packed = input == 2 ? mk(r, &pk, DT_I32, 2, tk) : (memset(&pk, 0, sizeof pk), NULL);
  if (ra.method == MOE_ROUTING_DEEPSEEK_V3 && u8(r) % 2) ra.bias = mk(r, &bias, DT_F32, 1, e1);
  moe_plan plan, other;
  moe_plan_init(&plan, MOE_PLAN_VERSION);
  moe_plan_init(&other, MOE_PLAN_VERSION);
  const moe_status_t prepared =
      CALL(moe_routing_prepare(R, &p, &ra, cfg, ws, (size_t)wsb, &plan, NULL));

  /* plan misuse: an edited field, a stale plan, another workspace */
  const int misuse = prepared == MOE_STATUS_SUCCESS ? lie(r) : 0;
  moe_plan used = plan;
  void *run_ws = ws;
  int stale = 0; /* plan was replaced in its workspace */
  if (misuse == 1 || misuse == 2) {
    uint8_t *bytes = (uint8_t *)&used;
    const size_t at = u8(r) % sizeof used;
    bytes[at] ^= (uint8_t)(1 + u8(r) % 255);
  } else if (misuse == 3) { /* prepare again (another T if it fits): the first plan is stale */
    moe_problem q = p;
    q.num_tokens = T > 0 ? T - 1 : 0;
    DLTensor lgq;
    int64_t shq[2] = {q.num_tokens, p.num_experts};
    moe_routing_args rq = ra;
    if (ra.logits) {
      lgq = *ra.logits;
      if (lgq.ndim == 2 && lgq.shape) {
        shq[1] = lgq.shape[1];
        lgq.shape = shq;
      }
      rq.logits = &lgq;
    }
    stale = CALL(moe_routing_prepare(R, &q, &rq, cfg, ws, (size_t)wsb, &other, NULL)) ==
            MOE_STATUS_SUCCESS;
    if (stale) {
      moe_plan_view v;
      if (CALL(moe_plan_get_view(R, &plan, ws, (size_t)wsb, &v)) == MOE_STATUS_SUCCESS)
        fail("a stale plan was accepted by moe_plan_get_view", 0);
    }
  } else if (misuse == 4) {
    run_ws = (char *)ws + 256;
  }
  const int edited = misuse >= 1 && misuse <= 2 && memcmp(&used, &plan, sizeof plan) != 0;
  const int refused = edited || stale || misuse == 4; /* plans every call must refuse */

  /* run */
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.version = (uint32_t)val32(r, MOE_RUN_ARGS_VERSION);
  a.do_finalize = val32(r, u8(r) % 4 ? 1 : 0);
  a.enable_pdl = val32(r, 1);
  if (lie(r)) a.reserved[u8(r) % 7] = 1;
  ft hs, out, po, b1, b2, al, be, cl;
  const int64_t th[2] = {T, H}, b1s[2] = {El, fI}, b2s[2] = {El, H}, els[1] = {El};
  const int64_t prows = prepared == MOE_STATUS_SUCCESS ? plan.max_padded_rows : T;
  const int64_t pos[2] = {(int64_t)((uint64_t)prows + u8(r) % 3), H};
  a.hidden_states = mk(r, &hs, DT_BF16, 2, th);
  a.gemm1_weights = tw1;
  a.gemm2_weights = tw2;
  a.output = mk(r, &out, DT_BF16, 2, th);
  a.permuted_output =
      a.do_finalize == 1 ? (memset(&po, 0, sizeof po), NULL) : mk(r, &po, DT_BF16, 2, pos);
  const int extras = u8(r);
  a.gemm1_bias = extras & 1 ? mk(r, &b1, DT_F32, 2, b1s) : (memset(&b1, 0, sizeof b1), NULL);
  a.gemm2_bias = extras & 2 ? mk(r, &b2, DT_F32, 2, b2s) : (memset(&b2, 0, sizeof b2), NULL);
  a.gemm1_alpha = extras & 4 ? mk(r, &al, DT_F32, 1, els) : (memset(&al, 0, sizeof al), NULL);
  a.gemm1_beta = extras & 8 ? mk(r, &be, DT_F32, 1, els) : (memset(&be, 0, sizeof be), NULL);
  a.gemm1_clamp_limit =
      extras & 16 ? mk(r, &cl, DT_F32, 1, els) : (memset(&cl, 0, sizeof cl), NULL);
  const int32_t run_cfg = val32(r, cfg);
  const moe_status_t ran =
      CALL(moe_runner_run(R, &p, &a, run_cfg, &used, run_ws, (size_t)wsb, NULL));
  if (ran == MOE_STATUS_SUCCESS && refused)
    fail("run accepted an edited, stale or foreign plan", ran);

  /* plan readers */
  if (prepared == MOE_STATUS_SUCCESS) {
    moe_plan_view v;
    const moe_status_t sv = CALL(moe_plan_get_view(R, &used, run_ws, (size_t)wsb, &v));
    if (sv == MOE_STATUS_SUCCESS && refused)
      fail("moe_plan_get_view accepted an edited, stale or foreign plan", sv);
    const int32_t table = val32(r, u8(r) % 10);
    int64_t count = -1;
    const moe_status_t sc =
        CALL(moe_plan_read_count(R, &used, run_ws, (size_t)wsb, table, &count, NULL));
    if (sc == MOE_STATUS_SUCCESS && refused)
      fail("moe_plan_read_count accepted an edited, stale or foreign plan", sc);
    const size_t dst_bytes = (size_t)(u8(r) % 2 ? 4096 : u8(r));
    void *dst = malloc(dst_bytes ? dst_bytes : 1);
    if (!dst) abort();
    CALL(moe_plan_read(R, &used, run_ws, (size_t)wsb, table, lie(r) ? NULL : dst, dst_bytes, NULL));
    free(dst);
  }
  /* one-shot forward on the same arguments (its own plan, the default config) */
  const int small = p.num_tokens >= 0 && p.num_tokens <= MAX_REPEAT_TOKENS;
  if (u8(r) % 8 == 1 && small) CALL(moe_forward(R, &p, &ra, &a, ws, (size_t)wsb, NULL));
  /* autotune (rarely: it runs every valid config). Iterations are 1..2 or out of range: a
   * valid large count (up to 10000 x every config) is only slow, not a finding. */
  if (u8(r) % 32 == 5 && small) {
    int32_t tuned[64], nt = 0;
    float us[64];
    const int32_t cap = val32(r, 64);
    const int32_t bad_iters[4] = {0, -1, 10001, INT32_MIN};
    const int32_t iters = lie(r) ? bad_iters[u8(r) % 4] : 1 + u8(r) % 2;
    CALL(moe_runner_autotune(R, &p, &ra, &a, ws, (size_t)wsb, iters, tuned, lie(r) ? NULL : us,
                             cap > 64 ? 64 : cap, &nt, NULL));
  }
  ft *all[] = {&c1, &c2,  &w1, &w2, &lg, &bias, &ids, &wts, &pk,
               &hs, &out, &po, &b1, &b2, &al,   &be,  &cl};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) ft_free(all[i]);
  free(wsmem);
  moe_runner_destroy(R);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rd r = {data, size, 0};
  fuzz_one(&r);
  return 0;
}
