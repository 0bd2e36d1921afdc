/*
 * common.c - see common.h.
 */
#include "common.h"

#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/gen.h"

#ifdef MOE_TEST_WITH_CUDA
#include <cuda_runtime.h>
#endif

/* ---- harness ------------------------------------------------------------------------------ */
long tc_checks = 0;
long tc_failures = 0;

/* Line-buffered stdout in every test: a test killed by a timeout (a device run's step limit)
 * still shows the cases it finished. */
__attribute__((constructor)) static void tc_line_buffered_stdout(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
}

void tc_fail(const char *file, int line, const char *fmt, ...) {
  ++tc_failures;
  if (tc_failures > 60) {
    if (tc_failures == 61) fprintf(stderr, "... further failures not printed\n");
    return;
  }
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int tc_summary(const char *test_name) {
  printf("%s: %ld checks, %ld failures\n", test_name, tc_checks, tc_failures);
  return tc_failures ? 1 : 0;
}

moe_status_t tc_check_ok(moe_status_t s, const char *what, const char *file, int line) {
  ++tc_checks;
  if (s != MOE_STATUS_SUCCESS)
    tc_fail(file, line, "%s -> %d (%s): %s", what, (int)s, moe_status_string(s),
            moe_get_last_error());
  return s;
}

void *t_xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "test: out of host memory (%zu bytes)\n", bytes);
    exit(2);
  }
  return p;
}

/* ---- bf16 ------------------------------------------------------------------------------------ */
float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
  uint32_t lsb = (u >> 16) & 1u;
  return (uint16_t)((u + 0x7FFFu + lsb) >> 16);
}

static int bf16_ordered(uint16_t h) {
  return (h & 0x8000u) ? -(int)(h & 0x7FFFu) : (int)h;
}

int bf16_ulp_diff(uint16_t a, uint16_t b) {
  return abs(bf16_ordered(a) - bf16_ordered(b));
}

int bf16_isfinite(uint16_t h) {
  return (h & 0x7F80u) != 0x7F80u;
}

/* ---- MOE_TEST_GPU_CONFIGS --------------------------------------------------------------- */
int t_config_name(const moe_runner *r, int32_t cfg, char *name, size_t n) {
  moe_config_info info;
  memset(&info, 0, sizeof info);
  info.version = MOE_CONFIG_INFO_VERSION;
  if (moe_runner_describe_config(r, cfg, &info) != MOE_STATUS_SUCCESS) return 0;
  snprintf(name, n, "%s", info.name);
  return 1;
}

/* The config of @p r that entry @p pat selects (see common.h), or -1. */
static int32_t entry_config(const moe_runner *r, const char *pat) {
  int32_t count = 0;
  if (moe_runner_get_num_configs(r, &count) != MOE_STATUS_SUCCESS) return -1;
  char name[sizeof(((moe_config_info *)0)->name)];
  for (int32_t i = 0; i < count; ++i)
    if (t_config_name(r, i, name, sizeof name) && fnmatch(pat, name, 0) == 0) return i;
  return -1;
}

/* Calls f(entry) for each non-empty entry of MOE_TEST_GPU_CONFIGS; 0 when it is unset or empty. */
static int each_entry(void (*f)(const char *entry, void *ctx), void *ctx) {
  const char *e = getenv("MOE_TEST_GPU_CONFIGS");
  if (!e || !*e) return 0;
  for (const char *q = e; *q;) {
    const char *end = strchr(q, ',');
    const size_t len = end ? (size_t)(end - q) : strlen(q);
    char pat[128];
    snprintf(pat, sizeof pat, "%.*s", (int)(len < sizeof pat ? len : sizeof pat - 1), q);
    if (*pat) f(pat, ctx);
    q = end ? end + 1 : q + len;
  }
  return 1;
}

typedef struct {
  const moe_runner *r;
  int32_t cfg;
  int selected;
} select_ctx;

static void select_entry(const char *pat, void *ctx) {
  select_ctx *c = (select_ctx *)ctx;
  c->selected |= entry_config(c->r, pat) == c->cfg;
}

/* MOE_TEST_GPU_SHARD=i/n: configs whose index is i modulo n (common.h); unset: all. */
static int shard_selected(int32_t cfg) {
  const char *e = getenv("MOE_TEST_GPU_SHARD");
  if (!e || !*e) return 1;
  int i = -1, n = 0, used = 0;
  const int ok =
      sscanf(e, "%d/%d%n", &i, &n, &used) == 2 && e[used] == '\0' && n > 0 && i >= 0 && i < n;
  CHECK(ok, "MOE_TEST_GPU_SHARD: \"%s\" is not i/n with 0 <= i < n", e);
  return ok && cfg % n == i;
}

int t_gpu_config_selected(const moe_runner *r, int32_t cfg) {
  select_ctx c = {r, cfg, 0};
  return (!each_entry(select_entry, &c) || c.selected) && shard_selected(cfg);
}

typedef struct {
  moe_runner *const *runners;
  int n;
} names_ctx;

static void check_entry(const char *pat, void *ctx) {
  const names_ctx *c = (const names_ctx *)ctx;
  int found = 0;
  for (int i = 0; i < c->n && !found; ++i)
    found = c->runners[i] && entry_config(c->runners[i], pat) >= 0;
  CHECK(found, "MOE_TEST_GPU_CONFIGS: \"%s\" names no config of this build", pat);
}

void t_check_gpu_config_names(moe_runner *const *runners, int n) {
  names_ctx c = {runners, n};
  each_entry(check_entry, &c);
}

/* ---- memory ------------------------------------------------------------------------------- */
int t_have_cuda(void) {
#ifdef MOE_TEST_WITH_CUDA
  int32_t n = 0;
  if (moe_cuda_device_count(&n) != MOE_STATUS_SUCCESS) return 0;
  return n > 0;
#else
  return 0;
#endif
}

#ifdef MOE_TEST_WITH_CUDA
static void cuda_check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) {
    fprintf(stderr, "test: %s failed: %s\n", what, cudaGetErrorString(e));
    exit(2);
  }
}
#endif

void *tmem_alloc(int backend, size_t bytes) {
  size_t n = (bytes + 255) / 256 * 256;
  if (n == 0) n = 256;
  if (backend == MOE_BACKEND_CUDA) {
#ifdef MOE_TEST_WITH_CUDA
    void *p = NULL;
    cuda_check(cudaMalloc(&p, n), "cudaMalloc");
    return p;
#else
    fprintf(stderr, "test: CUDA memory requested in a CPU-only test build\n");
    exit(2);
#endif
  }
  void *p = aligned_alloc(256, n);
  if (!p) {
    fprintf(stderr, "test: out of host memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}

void tmem_free(int backend, void *p) {
  if (!p) return;
  if (backend == MOE_BACKEND_CUDA) {
#ifdef MOE_TEST_WITH_CUDA
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cuda_check(cudaFree(p), "cudaFree");
#endif
    return;
  }
  free(p);
}

void tmem_upload(int backend, void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  if (backend == MOE_BACKEND_CUDA) {
#ifdef MOE_TEST_WITH_CUDA
    cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
#endif
    return;
  }
  memcpy(dst, src, bytes);
}

void tmem_download(int backend, void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  if (backend == MOE_BACKEND_CUDA) {
#ifdef MOE_TEST_WITH_CUDA
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
#endif
    return;
  }
  memcpy(dst, src, bytes);
}

void tmem_poison(int backend, void *dst, size_t bytes) {
  if (!bytes) return;
  if (backend == MOE_BACKEND_CUDA) {
#ifdef MOE_TEST_WITH_CUDA
    cuda_check(cudaMemset(dst, 0xFF, bytes), "cudaMemset");
#endif
    return;
  }
  memset(dst, 0xFF, bytes);
}

void tmem_sync(int backend) {
#ifdef MOE_TEST_WITH_CUDA
  if (backend == MOE_BACKEND_CUDA) cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
#else
  (void)backend;
#endif
}

ttensor *tt_new(int backend, DLDataType dt, int ndim, const int64_t *dims) {
  ttensor *t = (ttensor *)t_xmalloc(sizeof *t);
  memset(t, 0, sizeof *t);
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) {
    t->shape[i] = dims[i];
    n *= dims[i];
  }
  t->backend = backend;
  t->bytes = (size_t)n * (dt.bits / 8u);
  t->t.data = tmem_alloc(backend, t->bytes);
  t->t.device.device_type = backend == MOE_BACKEND_CUDA ? kDLCUDA : kDLCPU;
  t->t.device.device_id = 0;
  t->t.ndim = ndim;
  t->t.dtype = dt;
  t->t.shape = t->shape;
  t->t.strides = NULL;
  t->t.byte_offset = 0;
  return t;
}

ttensor *tt_from_host_shifted(int backend, DLDataType dt, int ndim, const int64_t *dims,
                              const void *host, int64_t shift) {
  int64_t total = 1;
  for (int i = 0; i < ndim; ++i) total *= dims[i];
  ttensor *t = tt_new(backend, dt, 1, (int64_t[]){total + shift});
  const size_t esz = dt.bits / 8u, off = (size_t)shift * esz;
  if (host && total > 0) tmem_upload(backend, (char *)t->t.data + off, host, (size_t)total * esz);
  t->t.ndim = ndim;
  for (int i = 0; i < ndim; ++i) t->shape[i] = dims[i];
  t->t.byte_offset = off;
  return t;
}

ttensor *tt_from_host(int backend, DLDataType dt, int ndim, const int64_t *dims, const void *host) {
  return tt_from_host_shifted(backend, dt, ndim, dims, host, 0);
}

void tt_free(ttensor *t) {
  if (!t) return;
  tmem_free(t->backend, t->t.data);
  free(t);
}

int64_t tt_numel(const ttensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->t.ndim; ++i) n *= t->shape[i];
  return n;
}

/* ---- runner ------------------------------------------------------------------------------- */
moe_runner *t_runner(int backend, int activation) {
  moe_runner_options o;
  if (CHECK_OK(moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION))) return NULL;
  o.backend = backend;
  o.activation = activation;
  moe_runner *r = NULL;
  if (CHECK_OK(moe_runner_create(&o, &r))) return NULL;
  return r;
}

moe_runner *t_fp8_runner(int backend, int mode, int activation, int32_t threads) {
  moe_runner_options o;
  if (CHECK_OK(moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION))) return NULL;
  o.backend = backend;
  o.activation = activation;
  o.num_threads = threads;
  o.activation_dtype = o.weight_dtype = MOE_DTYPE_FP8_E4M3;
  o.scaling_mode = mode;
  if (backend == MOE_BACKEND_CUDA) o.sm_version = 90;
  moe_runner *r = NULL;
  if (CHECK_OK(moe_runner_create(&o, &r))) return NULL;
  return r;
}

void t_problem(moe_problem *p, int32_t E, int64_t T, int32_t K, int32_t offset, int32_t local,
               int64_t H, int64_t I) {
  moe_problem_init(p, MOE_PROBLEM_VERSION);
  p->num_experts = E;
  p->num_tokens = T;
  p->top_k = K;
  p->local_expert_offset = offset;
  p->local_num_experts = local;
  p->hidden_size = H;
  p->intermediate_size = I;
}

int64_t t_max_cgas(int64_t T, int64_t K, int64_t E, int64_t tile) {
  int64_t n = T * K, f = n < E ? n : E;
  return f + (n - f) / tile;
}

int32_t t_find_config(const moe_runner *r, const moe_problem *p, int32_t tile, int32_t cluster) {
  int32_t cfgs[256], n = 0;
  if (moe_runner_get_valid_configs(r, p, cfgs, 256, &n) != MOE_STATUS_SUCCESS) return -1;
  for (int32_t i = 0; i < n && i < 256; ++i) {
    moe_config_info info;
    memset(&info, 0, sizeof info);
    info.version = MOE_CONFIG_INFO_VERSION;
    if (moe_runner_describe_config(r, cfgs[i], &info) != MOE_STATUS_SUCCESS) continue;
    if (info.tile == tile && info.cluster_size == cluster) return cfgs[i];
  }
  return -1;
}

moe_status_t t_ws_alloc(const moe_runner *r, int backend, const moe_problem *p, int32_t cfg,
                        t_ws *ws) {
  ws->backend = backend;
  ws->ptr = NULL;
  ws->bytes = 0;
  size_t bytes = 0;
  moe_status_t s = moe_runner_get_workspace_size(r, p, cfg, &bytes);
  if (s) return s;
  ws->ptr = tmem_alloc(backend, bytes);
  ws->bytes = bytes;
  /* Poison: every table entry the plan defines must be written by prepare. */
  tmem_poison(backend, ws->ptr, bytes);
  return MOE_STATUS_SUCCESS;
}

void t_ws_free(t_ws *ws) {
  tmem_free(ws->backend, ws->ptr);
  ws->ptr = NULL;
  ws->bytes = 0;
}

/* ---- routing ------------------------------------------------------------------------------ */
void t_route_init(t_route *r) {
  memset(r, 0, sizeof *r);
  r->method = MOE_ROUTING_RENORMALIZE;
  r->n_group = 1;
  r->topk_group = 1;
  r->scale = 1.0f;
}

moe_status_t t_prepare(moe_runner *r, int backend, const moe_problem *p, const t_route *in,
                       int32_t cfg, const t_ws *ws, moe_plan *plan) {
  const int64_t T = p->num_tokens, E = p->num_experts, K = p->top_k;
  ttensor *logits = NULL, *bias = NULL, *ids = NULL, *weights = NULL, *packed = NULL;
  moe_routing_args a;
  moe_routing_args_init(&a, MOE_ROUTING_ARGS_VERSION);
  a.method = in->method;
  a.n_group = in->n_group;
  a.topk_group = in->topk_group;
  a.routed_scaling_factor = in->scale;
  if (in->input == T_INPUT_LOGITS) {
    logits = tt_from_host_shifted(backend, in->logits_f32 ? DT_F32 : DT_BF16, 2, (int64_t[]){T, E},
                                  in->logits, in->misalign ? 1 : 0);
    a.logits = &logits->t;
  } else if (in->input == T_INPUT_IDS) {
    ids = tt_from_host(backend, DT_I32, 2, (int64_t[]){T, K}, in->ids);
    weights = tt_from_host(backend, in->weights_f32 ? DT_F32 : DT_BF16, 2, (int64_t[]){T, K},
                           in->weights);
    a.topk_ids = &ids->t;
    a.topk_weights = &weights->t;
  } else {
    packed = tt_from_host(backend, DT_I32, 2, (int64_t[]){T, K}, in->packed);
    a.topk_packed = &packed->t;
  }
  if (in->bias_dtype) {
    bias = tt_from_host_shifted(backend, in->bias_dtype == 2 ? DT_F32 : DT_BF16, 1, (int64_t[]){E},
                                in->bias, in->misalign ? 1 : 0);
    a.bias = &bias->t;
  }
  moe_plan_init(plan, MOE_PLAN_VERSION);
  moe_status_t s = moe_routing_prepare(r, p, &a, cfg, ws->ptr, ws->bytes, plan, NULL);
  tt_free(logits);
  tt_free(bias);
  tt_free(ids);
  tt_free(weights);
  tt_free(packed);
  return s;
}

/* ---- plan readback ------------------------------------------------------------------------ */
static int read_table(const moe_runner *r, const moe_plan *plan, const t_ws *ws, int32_t table,
                      size_t elem, void **dst, int64_t *count) {
  int64_t n = -1;
  if (CHECK_OK(moe_plan_read_count(r, plan, ws->ptr, ws->bytes, table, &n, NULL))) return 1;
  CHECK(n >= 0, "table %d: negative count %lld", (int)table, (long long)n);
  if (n < 0) return 1;
  *count = n;
  *dst = t_xmalloc((size_t)n * elem + 4);
  if (n == 0) return 0;
  if (CHECK_OK(moe_plan_read(r, plan, ws->ptr, ws->bytes, table, *dst, (size_t)n * elem, NULL)))
    return 1;
  return 0;
}

int t_read_plan(const moe_runner *r, const moe_plan *plan, const t_ws *ws, int32_t E,
                host_plan *hp) {
  memset(hp, 0, sizeof *hp);
  int32_t *scal = NULL;
  int64_t c;
  int bad = 0;
  bad |= read_table(r, plan, ws, MOE_PLAN_NUM_CTAS, 4, (void **)&scal, &c);
  if (!bad && c == 1) hp->num_ctas = scal[0];
  free(scal);
  scal = NULL;
  hp->cnt[MOE_PLAN_NUM_CTAS] = c;
  bad |= read_table(r, plan, ws, MOE_PLAN_PERMUTED_SIZE, 4, (void **)&scal, &c);
  if (!bad && c == 1) hp->permuted_size = scal[0];
  hp->cnt[MOE_PLAN_PERMUTED_SIZE] = c;
  free(scal);
  bad |= read_table(r, plan, ws, MOE_PLAN_TOPK_IDS, 4, (void **)&hp->topk_ids,
                    &hp->cnt[MOE_PLAN_TOPK_IDS]);
  bad |= read_table(r, plan, ws, MOE_PLAN_EXPERT_WEIGHTS, 2, (void **)&hp->weights,
                    &hp->cnt[MOE_PLAN_EXPERT_WEIGHTS]);
  bad |= read_table(r, plan, ws, MOE_PLAN_EXPANDED_TO_PERMUTED, 4, (void **)&hp->e2p,
                    &hp->cnt[MOE_PLAN_EXPANDED_TO_PERMUTED]);
  bad |= read_table(r, plan, ws, MOE_PLAN_PERMUTED_TO_TOKEN, 4, (void **)&hp->p2t,
                    &hp->cnt[MOE_PLAN_PERMUTED_TO_TOKEN]);
  bad |= read_table(r, plan, ws, MOE_PLAN_PERMUTED_TO_EXPANDED, 4, (void **)&hp->p2x,
                    &hp->cnt[MOE_PLAN_PERMUTED_TO_EXPANDED]);
  bad |= read_table(r, plan, ws, MOE_PLAN_CTA_TO_BATCH, 4, (void **)&hp->batch,
                    &hp->cnt[MOE_PLAN_CTA_TO_BATCH]);
  bad |= read_table(r, plan, ws, MOE_PLAN_CTA_TO_MN_LIMIT, 4, (void **)&hp->mn_limit,
                    &hp->cnt[MOE_PLAN_CTA_TO_MN_LIMIT]);
  bad |= read_table(r, plan, ws, MOE_PLAN_EXPERT_COUNTS, 4, (void **)&hp->counts,
                    &hp->cnt[MOE_PLAN_EXPERT_COUNTS]);
  if (bad) return 1;
  hp->tk = plan->num_tokens * plan->top_k;
  int64_t P = hp->permuted_size, N = hp->num_ctas;
  CHECK(hp->cnt[MOE_PLAN_TOPK_IDS] == hp->tk && hp->cnt[MOE_PLAN_EXPERT_WEIGHTS] == hp->tk &&
            hp->cnt[MOE_PLAN_EXPANDED_TO_PERMUTED] == hp->tk,
        "plan_read_count of the [T*K] tables: %lld %lld %lld, expected %lld", (long long)hp->cnt[0],
        (long long)hp->cnt[1], (long long)hp->cnt[2], (long long)hp->tk);
  CHECK(hp->cnt[MOE_PLAN_PERMUTED_TO_TOKEN] == P && hp->cnt[MOE_PLAN_PERMUTED_TO_EXPANDED] == P,
        "plan_read_count of the permuted maps: %lld %lld, expected permuted_size %lld",
        (long long)hp->cnt[3], (long long)hp->cnt[4], (long long)P);
  CHECK(hp->cnt[MOE_PLAN_CTA_TO_BATCH] == N && hp->cnt[MOE_PLAN_CTA_TO_MN_LIMIT] == N,
        "plan_read_count of the CTA tables: %lld %lld, expected num_ctas %lld",
        (long long)hp->cnt[5], (long long)hp->cnt[6], (long long)N);
  CHECK(hp->cnt[MOE_PLAN_EXPERT_COUNTS] == E, "plan_read_count(EXPERT_COUNTS) = %lld, E = %d",
        (long long)hp->cnt[9], (int)E);
  return 0;
}

void t_free_plan(host_plan *hp) {
  free(hp->topk_ids);
  free(hp->weights);
  free(hp->e2p);
  free(hp->p2t);
  free(hp->p2x);
  free(hp->batch);
  free(hp->mn_limit);
  free(hp->counts);
  memset(hp, 0, sizeof *hp);
}

uint64_t t_plan_digest(const host_plan *hp) {
  uint64_t h = GEN_FNV_OFFSET;
  h = gen_fnv_i32(h, hp->topk_ids, hp->tk);
  h = gen_fnv_u16(h, hp->weights, hp->tk);
  h = gen_fnv_i32(h, hp->e2p, hp->tk);
  h = gen_fnv_i32(h, hp->p2t, hp->permuted_size);
  h = gen_fnv_i32(h, hp->p2x, hp->permuted_size);
  h = gen_fnv_i32(h, hp->batch, hp->num_ctas);
  h = gen_fnv_i32(h, hp->mn_limit, hp->num_ctas);
  h = gen_fnv_i32(h, &hp->num_ctas, 1);
  h = gen_fnv_i32(h, &hp->permuted_size, 1);
  return h;
}

static int cmp_i32(const int32_t *a, const int32_t *b, int64_t n, const char *what,
                   const char *table) {
  for (int64_t i = 0; i < n; ++i)
    if (a[i] != b[i]) {
      CHECK(0, "%s: %s[%lld] = %d vs %d", what, table, (long long)i, a[i], b[i]);
      return 1;
    }
  return 0;
}

int t_compare_plans(const host_plan *a, const host_plan *b, const char *what) {
  int bad = 0;
  ++tc_checks;
  if (a->tk != b->tk || a->num_ctas != b->num_ctas || a->permuted_size != b->permuted_size) {
    CHECK(0, "%s: sizes differ: T*K %lld/%lld, N %d/%d, P %d/%d", what, (long long)a->tk,
          (long long)b->tk, a->num_ctas, b->num_ctas, a->permuted_size, b->permuted_size);
    return 1;
  }
  bad |= cmp_i32(a->topk_ids, b->topk_ids, a->tk, what, "topk_ids");
  for (int64_t i = 0; i < a->tk; ++i)
    if (a->weights[i] != b->weights[i]) {
      CHECK(0, "%s: expert_weights[%lld] = 0x%04x vs 0x%04x", what, (long long)i, a->weights[i],
            b->weights[i]);
      bad = 1;
      break;
    }
  bad |= cmp_i32(a->e2p, b->e2p, a->tk, what, "expanded_to_permuted");
  bad |= cmp_i32(a->p2t, b->p2t, a->permuted_size, what, "permuted_to_token");
  bad |= cmp_i32(a->p2x, b->p2x, a->permuted_size, what, "permuted_to_expanded");
  bad |= cmp_i32(a->batch, b->batch, a->num_ctas, what, "cta_to_batch");
  bad |= cmp_i32(a->mn_limit, b->mn_limit, a->num_ctas, what, "cta_to_mn_limit");
  if (a->cnt[MOE_PLAN_EXPERT_COUNTS] == b->cnt[MOE_PLAN_EXPERT_COUNTS])
    bad |= cmp_i32(a->counts, b->counts, a->cnt[MOE_PLAN_EXPERT_COUNTS], what, "expert_counts");
  return bad;
}

/* ---- MoE --------------------------------------------------------------------------------- */
int t_gated(int activation) {
  return activation == MOE_ACTIVATION_SWIGLU || activation == MOE_ACTIVATION_GEGLU;
}

moe_status_t t_weights_prepare(moe_runner *r, int backend, const moe_problem *p, int activation,
                               const t_moe_in *in, t_weights *w) {
  const int64_t El = p->local_num_experts ? p->local_num_experts : p->num_experts;
  const int64_t H = p->hidden_size, I = p->intermediate_size, f = t_gated(activation) ? 2 : 1;
  w->w1 = w->w2 = NULL;
  size_t b1 = 0, b2 = 0;
  moe_status_t s = moe_weights_prepared_size(r, p, MOE_WEIGHTS_GEMM1, &b1);
  if (s) return s;
  s = moe_weights_prepared_size(r, p, MOE_WEIGHTS_GEMM2, &b2);
  if (s) return s;
  ttensor *c1 = tt_from_host(backend, DT_BF16, 3, (int64_t[]){El, f * I, H}, in->w1);
  ttensor *c2 = tt_from_host(backend, DT_BF16, 3, (int64_t[]){El, H, I}, in->w2);
  w->w1 = tt_new(backend, DT_U8, 1, (int64_t[]){(int64_t)b1});
  w->w2 = tt_new(backend, DT_U8, 1, (int64_t[]){(int64_t)b2});
  s = moe_weights_prepare(r, p, MOE_WEIGHTS_GEMM1, &c1->t, &w->w1->t, NULL);
  if (!s) s = moe_weights_prepare(r, p, MOE_WEIGHTS_GEMM2, &c2->t, &w->w2->t, NULL);
  tt_free(c1);
  tt_free(c2);
  return s;
}

void t_weights_free(t_weights *w) {
  tt_free(w->w1);
  tt_free(w->w2);
  w->w1 = w->w2 = NULL;
}

moe_status_t t_run(moe_runner *r, int backend, const moe_problem *p, int activation,
                   const t_moe_in *in, const t_weights *w, int32_t cfg, const moe_plan *plan,
                   const t_ws *ws, int do_finalize, uint16_t *out_host) {
  return t_run_scaled(r, backend, p, activation, in, w, cfg, plan, ws, do_finalize, NULL, out_host);
}

moe_status_t t_run_scaled(moe_runner *r, int backend, const moe_problem *p, int activation,
                          const t_moe_in *in, const t_weights *w, int32_t cfg, const moe_plan *plan,
                          const t_ws *ws, int do_finalize, const float *input_scales,
                          uint16_t *out_host) {
  return t_run_fp8(r, backend, p, activation, in, w, cfg, plan, ws, do_finalize, input_scales, NULL,
                   NULL, out_host);
}

moe_status_t t_run_fp8(moe_runner *r, int backend, const moe_problem *p, int activation,
                       const t_moe_in *in, const t_weights *w, int32_t cfg, const moe_plan *plan,
                       const t_ws *ws, int do_finalize, const float *input_scales,
                       const uint8_t *hidden_e4m3, const float *hidden_scales, uint16_t *out_host) {
  const int64_t El = p->local_num_experts ? p->local_num_experts : p->num_experts;
  const int64_t T = p->num_tokens, H = p->hidden_size, I = p->intermediate_size;
  const int64_t f = t_gated(activation) ? 2 : 1;
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.do_finalize = do_finalize;
  ttensor *hid = hidden_e4m3 ? tt_from_host(backend, (DLDataType){kDLFloat8_e4m3fn, 8, 1}, 2,
                                            (int64_t[]){T, H}, hidden_e4m3)
                             : tt_from_host(backend, DT_BF16, 2, (int64_t[]){T, H}, in->hidden);
  ttensor *b1 = NULL, *b2 = NULL, *al = NULL, *be = NULL, *cl = NULL, *out = NULL;
  ttensor *s1 = NULL, *s2 = NULL, *hs = NULL;
  if (hidden_scales) {
    hs = tt_from_host(backend, DT_F32, 2, (int64_t[]){T, H / 128}, hidden_scales);
    a.hidden_states_scale = &hs->t;
  }
  if (input_scales) {
    s1 = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &input_scales[0]);
    s2 = tt_from_host(backend, DT_F32, 1, (int64_t[]){1}, &input_scales[1]);
    a.gemm1_input_scale = &s1->t;
    a.gemm2_input_scale = &s2->t;
  }
  a.hidden_states = &hid->t;
  a.gemm1_weights = &w->w1->t;
  a.gemm2_weights = &w->w2->t;
  if (in->bias1) {
    b1 = tt_from_host(backend, DT_F32, 2, (int64_t[]){El, f * I}, in->bias1);
    a.gemm1_bias = &b1->t;
  }
  if (in->bias2) {
    b2 = tt_from_host(backend, DT_F32, 2, (int64_t[]){El, H}, in->bias2);
    a.gemm2_bias = &b2->t;
  }
  if (in->alpha) {
    al = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, in->alpha);
    a.gemm1_alpha = &al->t;
  }
  if (in->beta) {
    be = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, in->beta);
    a.gemm1_beta = &be->t;
  }
  if (in->clamp_limit) {
    cl = tt_from_host(backend, DT_F32, 1, (int64_t[]){El}, in->clamp_limit);
    a.gemm1_clamp_limit = &cl->t;
  }
  int64_t rows = do_finalize ? T : plan->max_padded_rows;
  out = tt_new(backend, DT_BF16, 2, (int64_t[]){rows, H});
  tmem_poison(backend, out->t.data, out->bytes);
  if (do_finalize)
    a.output = &out->t;
  else
    a.permuted_output = &out->t;
  moe_status_t s = moe_runner_run(r, p, &a, cfg, plan, ws->ptr, ws->bytes, NULL);
  if (!s && out_host) tmem_download(backend, out_host, out->t.data, out->bytes);
  tt_free(hid);
  tt_free(b1);
  tt_free(b2);
  tt_free(al);
  tt_free(be);
  tt_free(cl);
  tt_free(s1);
  tt_free(s2);
  tt_free(hs);
  tt_free(out);
  return s;
}

/* ---- numerics ---------------------------------------------------------------------------- */
double t_rel_err_bf16(const uint16_t *a, const uint16_t *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = bf16_to_f32(a[i]), y = bf16_to_f32(b[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return sqrt(num / den);
}

double t_rel_err_ref(const uint16_t *a, const double *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = bf16_to_f32(a[i]);
    num += (x - ref[i]) * (x - ref[i]);
    den += ref[i] * ref[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return sqrt(num / den);
}

static int row_defined(const t_out_rows *d, int64_t r) {
  return !d->p2t || (r < d->permuted_size && d->p2t[r] >= 0);
}

uint64_t t_output_digest(const uint16_t *out, const t_out_rows *d) {
  uint64_t h = 0xcbf29ce484222325ull;
  const uint8_t *o = (const uint8_t *)out;
  const int64_t rb = d->H * 2;
  for (int64_t r = 0; r < d->rows; ++r) {
    if (!row_defined(d, r)) continue;
    for (int64_t i = 0; i < rb; ++i) h = (h ^ o[r * rb + i]) * 0x100000001b3ull;
  }
  return h;
}

double t_rel_err_defined(const uint16_t *a, const uint16_t *b, const t_out_rows *d,
                         long *nonfinite) {
  const int64_t H = d->H;
  double num = 0, den = 0;
  *nonfinite = 0;
  for (int64_t r = 0; r < d->rows; ++r) {
    if (!row_defined(d, r)) continue;
    for (int64_t h = 0; h < H; ++h) {
      const double x = bf16_to_f32(a[r * H + h]), y = bf16_to_f32(b[r * H + h]);
      *nonfinite += !bf16_isfinite(a[r * H + h]);
      num += (x - y) * (x - y);
      den += y * y;
    }
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

int64_t t_count_nonfinite(const uint16_t *a, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += !bf16_isfinite(a[i]);
  return c;
}

uint64_t t_rng_next(t_rng *r) {
  r->s += 0x9E3779B97F4A7C15ull;
  uint64_t z = r->s;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int64_t t_rng_range(t_rng *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)(t_rng_next(r) % (uint64_t)(hi - lo + 1));
}

void t_expert_data_gen(uint64_t seed, int64_t T, int64_t El, int64_t H, int64_t I, int gated,
                       int gemm_bias, int swiglu_params, t_expert_data *d) {
  const int64_t f = gated ? 2 : 1;
  memset(d, 0, sizeof *d);
  d->hidden = t_xmalloc((size_t)(T * H) * 2);
  gen_fill_bf16(seed, GEN_STREAM_HIDDEN, GEN_SCALE_HIDDEN, d->hidden, T * H);
  d->w1 = t_xmalloc((size_t)(El * f * I * H) * 2);
  gen_fill_bf16(seed, GEN_STREAM_W1, GEN_SCALE_W1, d->w1, El * f * I * H);
  d->w2 = t_xmalloc((size_t)(El * H * I) * 2);
  gen_fill_bf16(seed, GEN_STREAM_W2, GEN_SCALE_W2, d->w2, El * H * I);
  if (gemm_bias) {
    d->b1 = t_xmalloc((size_t)(El * f * I) * 4);
    d->b2 = t_xmalloc((size_t)(El * H) * 4);
    gen_fill_f32(seed, GEN_STREAM_GEMM1_BIAS, GEN_SCALE_GEMM_BIAS, d->b1, El * f * I);
    gen_fill_f32(seed, GEN_STREAM_GEMM2_BIAS, GEN_SCALE_GEMM_BIAS, d->b2, El * H);
  }
  if (swiglu_params) {
    d->alpha = t_xmalloc((size_t)El * 4);
    d->beta = t_xmalloc((size_t)El * 4);
    d->clamp = t_xmalloc((size_t)El * 4);
    gen_swiglu_params(seed, El, d->alpha, d->beta, d->clamp);
  }
}

void t_expert_data_free(t_expert_data *d) {
  free(d->hidden);
  free(d->w1);
  free(d->w2);
  free(d->b1);
  free(d->b2);
  free(d->alpha);
  free(d->beta);
  free(d->clamp);
  memset(d, 0, sizeof *d);
}

t_moe_in t_expert_data_in(const t_expert_data *d) {
  t_moe_in in = {d->hidden, d->w1, d->w2, d->b1, d->b2, d->alpha, d->beta, d->clamp};
  return in;
}
