/*
 * internal.h - host-side internals shared by the files of core/ (never installed).
 */
#ifndef MOE_CORE_INTERNAL_H_
#define MOE_CORE_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include "moe_trtllm.h"
#include "kernels/kernels.h"

#define MOE_PLAN_MAGIC 0x4D4F4550u /* "MOEP": set in moe_plan.state by prepare */
#define MOE_WORKSPACE_ALIGN 256
#define MOE_MAX_TOP_K 64 /* finalize and plan code assume K <= 64 */
#define MOE_MAX_EXPERTS_ROUTING 512

struct moe_runner {
  moe_runner_options opts; /* as given, after defaults */
  int32_t backend;         /* MOE_BACKEND_CPU or MOE_BACKEND_CUDA (AUTO resolved) */
  int32_t device_id;
  int32_t sm_version; /* catalogue architecture (90) */
  int32_t has_device; /* CUDA: a usable device of that architecture is present */
  int32_t num_sms;
  int32_t num_threads; /* CPU backend */
  int32_t gated;       /* activation is SwiGLU or GeGLU */
};

/* ---- versioned structs (options.c) ---- */
/* Bytes of a caller's struct of @p version (1..current): the prefix the library may touch. */
size_t moe_runner_options_size(uint32_t version);
size_t moe_run_args_size(uint32_t version);

/* ---- FP8 (fp8.c; docs/formats.md "FP8") ---- */
/* Dtypes and scaling mode of the options: consistent and supported (names the field). */
moe_status_t moe_check_precision_options(const moe_runner_options *o);
/* Shape rules of FP8 (H and I multiples of 128); success on a BF16 runner. */
moe_status_t moe_check_fp8_problem(const moe_runner *r, const moe_problem *p);
/* Prepared bytes of an FP8 weight tensor of [el, rows, cols] (values, pad, scales). */
int64_t moe_fp8_prepared_bytes(const moe_runner *r, int64_t el, int64_t rows, int64_t cols);
/* FP8 half of moe_weights_prepare_scaled (the runner is FP8; which and problem checked). */
moe_status_t moe_fp8_weights_prepare(const moe_runner *r, const moe_problem *p, int32_t which,
                                     int64_t rows, int64_t cols, const DLTensor *canonical,
                                     const DLTensor *canonical_scales, const DLTensor *prepared,
                                     moe_cuda_stream_t stream);
/* NOT_SUPPORTED for an FP8 runner on the CUDA backend until the FP8 GEMM kernels land (the
 * one place to remove then; moe_runner_run calls it first). */
moe_status_t moe_check_fp8_backend(const moe_runner *r);
/* hidden_states and the version-2 scale tensors of run args against the runner's precision;
 * fills the hidden and FP8 fields of @p k. */
moe_status_t moe_check_run_precision(const moe_runner *r, const moe_problem *p,
                                     const moe_run_args *a, moe_k_run *k);

/* ---- errors (status.c) ---- */
/* Record a failure message for this thread and return @p status. printf-style. */
moe_status_t moe_fail(moe_status_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void moe_clear_error(void);

/* ---- config catalogue (configs.c) ---- */
typedef struct moe_config_row {
  int32_t tile, cluster, gemm1_block_m, gemm2_block_m, block_k, stages;
} moe_config_row;
/* The rows of one (architecture, dtypes) catalogue and its best-first score (lower first). */
#define MOE_MAX_CATALOGUE_ROWS 64
typedef struct moe_catalogue {
  int32_t key;            /* MOE_K_CATALOGUE_* (kernels/kernels.h) */
  const char *dtype_name; /* in config names: sm90_<dtype_name>_t..._c..._m..._s... */
  const moe_config_row *rows;
  int32_t count;
  int32_t h_align, i_align; /* H and I multiples the CUDA kernels need */
  int64_t (*score)(const moe_problem *p, const moe_config_row *row);
} moe_catalogue;
/* The runner's catalogue, fixed at creation by its architecture and dtypes. */
const moe_catalogue *moe_catalogue_of(const moe_runner *r);
int32_t moe_catalogue_size(const moe_runner *r);
const moe_config_row *moe_catalogue_row(const moe_runner *r, int32_t config);
/* Check @p config against the runner's catalogue and @p problem; sets the error. */
moe_status_t moe_check_config(const moe_runner *r, const moe_problem *p, int32_t config,
                              const char *arg_name);

/* ---- problem validation and plan arithmetic (layout.c) ---- */
/* Validate a problem struct; names the field on failure. */
moe_status_t moe_check_problem(const moe_problem *p, const char *arg_name);
/* E_l with the "0 means E" default applied. */
int32_t moe_local_experts(const moe_problem *p);
/* max_cgas = min(E, n) + floor((n - min(E, n)) / tile) with n = T*K; 64-bit. */
int64_t moe_max_cgas(int64_t num_tokens, int64_t top_k, int64_t num_experts, int64_t tile);

/* Byte offsets of every region of a workspace for a problem and config. */
typedef struct moe_layout {
  int64_t max_rows, max_ctas, launch_ctas;
  int64_t off_topk_ids, off_expert_weights, off_expanded_to_permuted, off_permuted_to_token,
      off_permuted_to_expanded, off_cta_to_batch, off_cta_to_mn_limit, off_scalars,
      off_expert_counts, off_scratch, scratch_bytes, off_gemm1_out, off_gemm2_out;
  int64_t total_bytes;
} moe_layout;
/* Compute the layout; NOT_SUPPORTED (with message) if a table value or row offset would
 * exceed int32 or the total size_t. */
moe_status_t moe_compute_layout(const moe_runner *r, const moe_problem *p, int32_t tile,
                                int32_t cluster, moe_layout *out);
/* Plan table pointers for a workspace base address. */
void moe_layout_plan(const moe_layout *l, void *workspace, moe_k_plan *plan);

/* ---- plans (run.c) ---- */
/* The plan descriptor must come from a prepare of this runner in this workspace. */
moe_status_t moe_check_plan(const moe_runner *r, const moe_plan *plan, const void *workspace,
                            size_t workspace_bytes);

/* ---- tensors (tensor.c) ---- */
/* Element-type codes for moe_check_tensor. */
#define MOE_T_F32 1
#define MOE_T_BF16 2
#define MOE_T_I32 3
#define MOE_T_U8 4
#define MOE_T_F32_OR_BF16 5
#define MOE_T_E4M3 6 /* kDLFloat8_e4m3fn, 8 bits */
/* Validate a tensor: non-NULL (unless optional), dtype, ndim, exact shape (-1 = any, -2 =
 * at least min_dim0 for dim 0), compact strides, device of the runner. */
moe_status_t moe_check_tensor(const moe_runner *r, const DLTensor *t, const char *name,
                              int optional, int dtype, int32_t ndim, const int64_t *shape);
/* Data pointer with byte_offset applied. */
void *moe_tensor_data(const DLTensor *t);
/* MOE_K_F32 or MOE_K_BF16 of a float tensor. */
int32_t moe_tensor_kdtype(const DLTensor *t);
/* Check a workspace pointer and size against a required size. */
moe_status_t moe_check_workspace(const void *ws, size_t bytes, int64_t required);

/* ---- backends (backend.c dispatches; backend_cuda.c is the only file that touches CUDA) ---- */
moe_status_t moe_backend_routing(const moe_runner *r, const moe_k_routing *a,
                                 const moe_k_plan *plan, moe_cuda_stream_t stream);
moe_status_t moe_backend_run(const moe_runner *r, const moe_k_run *a, const moe_k_plan *plan,
                             moe_cuda_stream_t stream);
moe_status_t moe_backend_weights_prepare(const moe_runner *r, int32_t which, int64_t experts,
                                         int64_t rows, int64_t cols, const uint16_t *canonical,
                                         uint16_t *prepared, moe_cuda_stream_t stream);
/* FP8 preparation (kernels.h moe_cuda_weights_prepare_fp8 for the arguments). */
moe_status_t moe_backend_weights_prepare_fp8(const moe_runner *r, int32_t which, int64_t experts,
                                             int64_t rows, int64_t cols, const void *canonical,
                                             const float *canonical_scales, uint8_t *prepared,
                                             moe_cuda_stream_t stream);
/* Copy device (or host) memory of the runner's backend to host; synchronises the stream. */
moe_status_t moe_backend_read(const moe_runner *r, void *dst, const void *src, size_t bytes,
                              moe_cuda_stream_t stream);

/* CUDA-specific (backend_cuda.c); CPU-only builds return NOT_SUPPORTED / 0 devices. */
moe_status_t moe_gpu_probe(int32_t device_id, int32_t *sm_version, int32_t *num_sms);
int32_t moe_gpu_devices(void);
moe_status_t moe_gpu_routing(const moe_runner *r, const moe_k_routing *a, const moe_k_plan *plan,
                             moe_cuda_stream_t stream);
moe_status_t moe_gpu_run(const moe_runner *r, const moe_k_run *a, const moe_k_plan *plan,
                         moe_cuda_stream_t stream);
moe_status_t moe_gpu_prepare(const moe_runner *r, int32_t which, int32_t gated, int64_t experts,
                             int64_t rows, int64_t cols, const uint16_t *canonical,
                             uint16_t *prepared, moe_cuda_stream_t stream);
moe_status_t moe_gpu_prepare_fp8(const moe_runner *r, int32_t which, int32_t gated, int64_t experts,
                                 int64_t rows, int64_t cols, const void *canonical,
                                 const float *canonical_scales, uint8_t *prepared,
                                 moe_cuda_stream_t stream);
moe_status_t moe_gpu_read(const moe_runner *r, void *dst, const void *src, size_t bytes,
                          moe_cuda_stream_t stream);
int64_t moe_gpu_scratch_bytes(int64_t max_tokens, int32_t num_experts);
/* Timing for autotune: elapsed microseconds of fn(ctx) run @p iters times (median). */
typedef moe_status_t (*moe_timed_fn)(void *ctx);
moe_status_t moe_gpu_time(const moe_runner *r, moe_timed_fn fn, void *ctx, int32_t iters,
                          moe_cuda_stream_t stream, float *median_us);

#endif /* MOE_CORE_INTERNAL_H_ */
