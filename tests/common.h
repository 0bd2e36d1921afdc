/*
 * common.h - helpers shared by the C tests: a tiny check harness, bf16 conversion, tensors on
 * either backend, poisoning, runner / config / workspace setup, routing preparation from host
 * inputs, reading a whole plan back, and running the MoE from canonical host weights.
 * Tests use only the public header (include/moe_trtllm.h) and libmoe_trtllm.
 */
#ifndef MOE_TEST_COMMON_H_
#define MOE_TEST_COMMON_H_

#include <stddef.h>
#include <stdint.h>

#include "moe_trtllm.h"

/* ---- harness ------------------------------------------------------------------------------ */
extern long tc_checks;   /* checks evaluated */
extern long tc_failures; /* checks failed */
void tc_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Print a summary line and return the process exit code. */
int tc_summary(const char *test_name);

#define CHECK(cond, ...)                                   \
  do {                                                     \
    ++tc_checks;                                           \
    if (!(cond)) tc_fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

/* A call that must succeed; evaluates to its status. */
#define CHECK_OK(call) tc_check_ok((call), #call, __FILE__, __LINE__)
moe_status_t tc_check_ok(moe_status_t s, const char *what, const char *file, int line);

/* ---- bf16 (independent of the library's conversion) ----------------------------------------- */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
/* Distance in bf16 ulps between two bit patterns (+0 == -0). */
int bf16_ulp_diff(uint16_t a, uint16_t b);
int bf16_isfinite(uint16_t h);

#define DT_BF16 ((DLDataType){kDLBfloat, 16, 1})
#define DT_F32 ((DLDataType){kDLFloat, 32, 1})
#define DT_I32 ((DLDataType){kDLInt, 32, 1})
#define DT_U8 ((DLDataType){kDLUInt, 8, 1})

/* ---- memory and tensors on a backend ------------------------------------------------------ */
/* True when this test binary was built with CUDA and a device is usable. */
int t_have_cuda(void);

/*
 * MOE_TEST_GPU_CONFIGS="entry,..." restricts the GPU suites to some configs (scripts/gpu-check.sh
 * keeps its sanitizer steps short with it). An entry is a config name as
 * moe_runner_describe_config gives it, or an fnmatch pattern (sm90_w4a16_*_c2_*), which selects
 * the first config of the runner's catalogue, in index order, whose name matches. Unset or
 * empty: every config.
 * MOE_TEST_GPU_SHARD="i/n" (0 <= i < n) keeps, of those, the configs whose catalogue index is
 * i modulo n, so n processes split a suite whose CPU reference work per config dominates
 * (scripts/gpu-check.sh runs test_fp8 so); a malformed value fails a CHECK.
 * t_gpu_config_selected: whether config @p cfg of @p r is selected.
 * t_check_gpu_config_names: every entry selects a config of one of the @p n runners (a stale
 * name would otherwise run nothing); a failed CHECK names the entry.
 */
int t_gpu_config_selected(const moe_runner *r, int32_t cfg);
/* The name moe_runner_describe_config gives config @p cfg of @p r into @p name; 0 on failure. */
int t_config_name(const moe_runner *r, int32_t cfg, char *name, size_t n);
void t_check_gpu_config_names(moe_runner *const *runners, int n);
void *tmem_alloc(int backend, size_t bytes); /* 256-byte aligned; never NULL for bytes 0 */
void tmem_free(int backend, void *p);
void tmem_upload(int backend, void *dst, const void *src, size_t bytes);
void tmem_download(int backend, void *dst, const void *src, size_t bytes);
void tmem_poison(int backend, void *dst, size_t bytes); /* 0xFF bytes: bf16 NaN, int32 -1 */
void tmem_sync(int backend);

typedef struct ttensor {
  DLTensor t;
  int64_t shape[4];
  int backend;
  size_t bytes;
} ttensor;
/* Allocate a compact tensor on @p backend (contents undefined). */
ttensor *tt_new(int backend, DLDataType dt, int ndim, const int64_t *dims);
/* Like tt_from_host, but the data starts @p shift elements into the allocation (byte_offset),
 * so it is not 16-byte aligned for shift = 1. */
ttensor *tt_from_host_shifted(int backend, DLDataType dt, int ndim, const int64_t *dims,
                              const void *host, int64_t shift);
/* Allocate and upload host data (may be NULL: zero-size tensors). */
ttensor *tt_from_host(int backend, DLDataType dt, int ndim, const int64_t *dims, const void *host);
void tt_free(ttensor *t); /* NULL ok; synchronises the backend first */
int64_t tt_numel(const ttensor *t);

/* ---- runner, problem, configs, workspace ---------------------------------------------------- */
moe_runner *t_runner(int backend, int activation);
/* An FP8 runner: e4m3 activations and weights, scaling @p mode (options version 2+); sm_version
 * 90 on CUDA, so that sizes and configs answer without a device. */
moe_runner *t_fp8_runner(int backend, int mode, int activation, int32_t threads);
void t_problem(moe_problem *p, int32_t E, int64_t T, int32_t K, int32_t offset, int32_t local,
               int64_t H, int64_t I);
/* DESIGN §4: max_cgas = min(E, T*K) + floor((T*K - min(E, T*K)) / tile), in 64 bits. */
int64_t t_max_cgas(int64_t T, int64_t K, int64_t E, int64_t tile);
/* First valid config (get_valid_configs order) with this tile and cluster size; -1 if none. */
int32_t t_find_config(const moe_runner *r, const moe_problem *p, int32_t tile, int32_t cluster);

typedef struct t_ws {
  int backend;
  void *ptr;
  size_t bytes;
} t_ws;
moe_status_t t_ws_alloc(const moe_runner *r, int backend, const moe_problem *p, int32_t cfg,
                        t_ws *ws);
void t_ws_free(t_ws *ws);

/* ---- routing from host inputs ------------------------------------------------------------- */
#define T_INPUT_LOGITS 0
#define T_INPUT_IDS 1
#define T_INPUT_PACKED 2

typedef struct t_route {
  int32_t method;
  int input;             /* T_INPUT_* */
  int logits_f32;        /* logits dtype: 1 fp32, 0 bf16 */
  const void *logits;    /* host [T, E] */
  int bias_dtype;        /* 0 none, 1 bf16, 2 fp32 */
  const void *bias;      /* host [E] */
  const int32_t *ids;    /* host [T, K] (T_INPUT_IDS) */
  int weights_f32;       /* pre-routed weights dtype */
  const void *weights;   /* host [T, K] */
  const int32_t *packed; /* host [T, K] (T_INPUT_PACKED) */
  int32_t n_group, topk_group;
  float scale;
  int misalign; /* logits and bias start one element past a 16-byte boundary (byte_offset) */
} t_route;
void t_route_init(t_route *r);
/* Build the tensors on the runner's backend, call moe_routing_prepare, free the tensors. */
moe_status_t t_prepare(moe_runner *r, int backend, const moe_problem *p, const t_route *in,
                       int32_t cfg, const t_ws *ws, moe_plan *plan);

/* ---- the whole plan on the host ---------------------------------------------------------- */
typedef struct host_plan {
  int64_t tk; /* T*K */
  int32_t num_ctas, permuted_size;
  int64_t cnt[10];           /* element counts reported by moe_plan_read_count per table */
  int32_t *topk_ids;         /* [T*K] */
  uint16_t *weights;         /* [T*K] */
  int32_t *e2p;              /* [T*K] */
  int32_t *p2t, *p2x;        /* [P] */
  int32_t *batch, *mn_limit; /* [N] */
  int32_t *counts;           /* [E] */
} host_plan;
/* Read every table with moe_plan_read_count + moe_plan_read. Returns 0 on success. */
int t_read_plan(const moe_runner *r, const moe_plan *plan, const t_ws *ws, int32_t E,
                host_plan *hp);
void t_free_plan(host_plan *hp);
/* Conformance plan digest (docs/conformance.md). */
uint64_t t_plan_digest(const host_plan *hp);
/* Bit-for-bit comparison of two plans; reports differences under @p what. Returns 0 if equal. */
int t_compare_plans(const host_plan *a, const host_plan *b, const char *what);

/* ---- MoE from canonical host weights ------------------------------------------------------- */
typedef struct t_moe_in {
  const uint16_t *hidden; /* [T, H] */
  const uint16_t *w1;     /* canonical [E_l, f*I, H] */
  const uint16_t *w2;     /* canonical [E_l, H, I] */
  const float *bias1, *bias2;
  const float *alpha, *beta, *clamp_limit;
} t_moe_in;
/* Conformance-generator inputs of the GEMM stages (docs/conformance.md streams 3-5, 8-10):
 * hidden [T, H], canonical W1/W2, and optionally the gemm biases and SwiGLU parameters.
 * Owned; free with t_expert_data_free. */
typedef struct t_expert_data {
  uint16_t *hidden, *w1, *w2;
  float *b1, *b2, *alpha, *beta, *clamp;
} t_expert_data;
void t_expert_data_gen(uint64_t seed, int64_t T, int64_t El, int64_t H, int64_t I, int gated,
                       int gemm_bias, int swiglu_params, t_expert_data *d);
void t_expert_data_free(t_expert_data *d);
t_moe_in t_expert_data_in(const t_expert_data *d);
/* Holds prepared weights on a backend (prepared once per runner). */
typedef struct t_weights {
  ttensor *w1, *w2;
} t_weights;
int t_gated(int activation);
moe_status_t t_weights_prepare(moe_runner *r, int backend, const moe_problem *p, int activation,
                               const t_moe_in *in, t_weights *w);
void t_weights_free(t_weights *w);
/*
 * Run a prepared plan. The output tensor is poisoned first. With do_finalize = 1 @p out_host
 * gets [T, H]; with 0 it gets the permuted output [plan->max_padded_rows, H].
 */
moe_status_t t_run(moe_runner *r, int backend, const moe_problem *p, int activation,
                   const t_moe_in *in, const t_weights *w, int32_t cfg, const moe_plan *plan,
                   const t_ws *ws, int do_finalize, uint16_t *out_host);
/* t_run with the PER_TENSOR FP8 static input scales (host fp32 [2]: gemm1_input_scale,
 * gemm2_input_scale), or none (NULL). */
moe_status_t t_run_scaled(moe_runner *r, int backend, const moe_problem *p, int activation,
                          const t_moe_in *in, const t_weights *w, int32_t cfg, const moe_plan *plan,
                          const t_ws *ws, int do_finalize, const float *input_scales,
                          uint16_t *out_host);

/* t_run_scaled with e4m3 hidden states: @p hidden_e4m3 host [T, H] codes (NULL: in->hidden,
 * bf16) and, in BLOCK mode, @p hidden_scales host fp32 [T, H/128] (or NULL). */
moe_status_t t_run_fp8(moe_runner *r, int backend, const moe_problem *p, int activation,
                       const t_moe_in *in, const t_weights *w, int32_t cfg, const moe_plan *plan,
                       const t_ws *ws, int do_finalize, const float *input_scales,
                       const uint8_t *hidden_e4m3, const float *hidden_scales, uint16_t *out_host);

/* ---- numerics -------------------------------------------------------------------------------- */
/* ||a - b|| / ||b|| over n bf16 values (a, b bf16) or with b as doubles. */
double t_rel_err_bf16(const uint16_t *a, const uint16_t *b, int64_t n);
double t_rel_err_ref(const uint16_t *a, const double *ref, int64_t n);
int64_t t_count_nonfinite(const uint16_t *a, int64_t n);

/* The rows of a [rows, H] bf16 forward output that a run defines: all of them (p2t NULL: a
 * finalized output, rows = T), or the permuted rows r < permuted_size with p2t[r] >= 0. */
typedef struct t_out_rows {
  int64_t rows, H;
  const int32_t *p2t;
  int32_t permuted_size;
} t_out_rows;
/* FNV-1a of the defined rows' bytes (printed per case so a change of bits shows). */
uint64_t t_output_digest(const uint16_t *out, const t_out_rows *d);
/* ||a - b|| / ||b|| over the defined rows; *nonfinite counts the non-finite values of a. */
double t_rel_err_defined(const uint16_t *a, const uint16_t *b, const t_out_rows *d,
                         long *nonfinite);

/* Small deterministic PRNG for test-case choices (not the conformance generator). */
typedef struct t_rng {
  uint64_t s;
} t_rng;
uint64_t t_rng_next(t_rng *r);
int64_t t_rng_range(t_rng *r, int64_t lo, int64_t hi); /* inclusive */

void *t_xmalloc(size_t bytes); /* aborts the test on failure */

#endif /* MOE_TEST_COMMON_H_ */
