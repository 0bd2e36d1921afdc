/*
 * internal.h - host-side internals shared by the files of core/ (never installed).
 */
#ifndef MOE_CORE_INTERNAL_H_
#define MOE_CORE_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include "moe_trtllm.h"
#include "kernels/kernels.h"

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
size_t moe_grouped_args_size(uint32_t version);

/* ---- FP8 (fp8.c; docs/formats.md "FP8") ---- */
/* Dtypes and scaling mode of the options: consistent and supported (names the field). */
moe_status_t moe_check_precision_options(const moe_runner_options *o);
/* Shape rules of FP8 (H and I multiples of 128) and MXFP4 (multiples of 32,
 * moe_check_mx_problem); success on a BF16 runner. */
moe_status_t moe_check_fp8_problem(const moe_runner *r, const moe_problem *p);
/* Prepared bytes of an FP8 weight tensor of [el, rows, cols] (values, pad, scales). */
int64_t moe_fp8_prepared_bytes(const moe_runner *r, int64_t el, int64_t rows, int64_t cols);
/* FP8 half of moe_weights_prepare_scaled (the runner is FP8; which and problem checked). */
moe_status_t moe_fp8_weights_prepare(const moe_runner *r, const moe_problem *p, int32_t which,
                                     int64_t rows, int64_t cols, const DLTensor *canonical,
                                     const DLTensor *canonical_scales, const DLTensor *prepared,
                                     moe_cuda_stream_t stream);
/* NOT_SUPPORTED for a precision the runner's backend has no kernels for (MXFP4 W4A8 on CUDA);
 * moe_runner_run calls it first. */
moe_status_t moe_check_fp8_backend(const moe_runner *r);
/* The output of a scaled weight preparation (weights.c): @p prepared (checked: uint8, at
 * least @p bytes) 16-byte aligned and disjoint from the sources srcs[0] ("canonical") and
 * srcs[1] ("canonical_scales", may be NULL) of src_bytes bytes (no in-place preparation: rows
 * move, and scales land after the values). Sets *dst. */
moe_status_t moe_check_prepared_out(const DLTensor *prepared, uint64_t bytes,
                                    const DLTensor *const srcs[2], const uint64_t src_bytes[2],
                                    uint8_t **dst);

/* ---- MXFP4 (mxfp4.c; docs/formats.md "MXFP4") ---- */
/* H and I multiples of 32 (INVALID_ARGUMENT naming the field). */
moe_status_t moe_check_mx_problem(const moe_problem *p);
/* Prepared bytes of an MXFP4 weight tensor of [el, rows, cols] (kernels/mxfp4_math.h). */
int64_t moe_mx_prepared_bytes(int64_t el, int64_t rows, int64_t cols);
/* MXFP4 half of moe_weights_prepare_scaled (the runner is MX; which and problem checked;
 * which may be MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED). */
moe_status_t moe_mx_weights_prepare(const moe_runner *r, const moe_problem *p, int32_t which,
                                    int64_t rows, int64_t cols, const DLTensor *canonical,
                                    const DLTensor *canonical_scales, const DLTensor *prepared,
                                    moe_cuda_stream_t stream);
/* The activation inputs of a run (moe_run_args, moe_grouped_args): hidden_states of
 * @p hidden_ndim dims @p hidden_shape (its last dim H), and the FP8 scale tensors (NULL where
 * the caller's struct version has none). */
typedef struct moe_act_inputs {
  const DLTensor *hidden, *hidden_scale, *scale1, *scale2;
  int32_t hidden_ndim;
  const int64_t *hidden_shape;
  int64_t rows;          /* hidden rows: T, or N of a grouped run (rows of hidden_states_scale) */
  const char *no_fields; /* NULL, or why a required scale is missing (an old struct version) */
} moe_act_inputs;
/* hidden_states and the FP8 scale tensors against the runner's precision; fills the hidden and
 * FP8 fields of @p k. */
moe_status_t moe_check_act_precision(const moe_runner *r, const moe_problem *p,
                                     const moe_act_inputs *in, moe_k_run *k);
/* moe_check_act_precision of run args (version 1 has no scales). */
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
/* Appends a workspace region of @p bytes at the running offset *at (each region starts
 * MOE_WORKSPACE_ALIGN-aligned) and returns its offset; on int64 overflow, a negative size or a
 * failed earlier call, *at becomes (stays) -1 and 0 is returned (layout.c). */
int64_t moe_ws_region(int64_t *at, int64_t bytes);
/* Whether a total built by moe_ws_region can be allocated: no overflow (-1), within size_t. */
int moe_ws_fits(int64_t total);
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
/* NULL if moe_compute_layout would succeed, else the reason (written to @p why); records no
 * error. Config validity uses it, so every valid config can be sized. */
const char *moe_layout_unfit(const moe_runner *r, const moe_problem *p, int32_t tile,
                             int32_t cluster, char *why, size_t why_len);
/* Plan table pointers for a workspace base address. */
void moe_layout_plan(const moe_layout *l, void *workspace, moe_k_plan *plan);

/* ---- plans (plan_check.c, plan_registry.c) ---- */
/* The plan descriptor must be, unedited, the one prepare of this runner recorded last for this
 * workspace; fills the table layout recomputed from its (checked) fields. */
moe_status_t moe_check_plan(const moe_runner *r, const moe_plan *plan, const void *workspace,
                            size_t workspace_bytes, moe_layout *layout);
/* Device of a runner's workspaces in the registry (0 for host memory). */
static inline int32_t moe_registry_device(const moe_runner *r) {
  return r->backend == MOE_BACKEND_CPU ? 0 : r->device_id;
}
/* Before prepare writes into [workspace, +bytes): forget every plan recorded for memory
 * overlapping it; returns the new plan's stamp (moe_plan.state, never 0). */
uint32_t moe_registry_begin(int32_t backend, int32_t device_id, const void *workspace,
                            size_t bytes);
/* After a successful prepare: @p plan is what its workspace holds now. */
void moe_registry_commit(const moe_plan *plan, int32_t device_id);
/* SUCCESS if @p plan is, field for field, the last one recorded for its workspace. */
moe_status_t moe_registry_check(const moe_plan *plan, int32_t device_id);
/* Drop the records of a runner being destroyed. */
void moe_registry_forget_runner(const moe_runner *r);

/* The expert tensors every run entry point takes (prepared weights, optional biases and SwiGLU
 * parameters): validated against the problem and the runner's activation, then stored in @p k
 * (run.c). Names in messages are the run-args fields. */
typedef struct moe_expert_tensors {
  const DLTensor *w1, *w2, *bias1, *bias2, *alpha, *beta, *clamp_limit;
} moe_expert_tensors;
moe_status_t moe_check_expert_tensors(const moe_runner *r, const moe_problem *p,
                                      const moe_expert_tensors *t, moe_k_run *k);

/* ---- tensors (tensor.c) ---- */
/* Element-type codes for moe_check_tensor. */
#define MOE_T_F32 1
#define MOE_T_BF16 2
#define MOE_T_I32 3
#define MOE_T_U8 4
#define MOE_T_F32_OR_BF16 5
#define MOE_T_E4M3 6 /* kDLFloat8_e4m3fn, 8 bits */
/* "At least n" in a moe_check_tensor shape: -2 - n, saturated so that no n overflows (a
 * prepared size near 2^63 must not wrap); decoded as -(s + 2). */
static inline int64_t moe_shape_at_least(uint64_t n) {
  return n > (uint64_t)INT64_MAX - 2 ? INT64_MIN : -2 - (int64_t)n;
}
/* Validate a tensor: non-NULL (unless optional), dtype (lanes 1), ndim, shape pointer, no
 * negative dims or strides, an element count whose bytes fit int64, non-NULL data and an
 * address range that does not wrap when non-empty, data + byte_offset aligned to the element
 * size, exact shape (-1 = any, moe_shape_at_least(n) = at least n), compact strides, device of
 * the runner. */
moe_status_t moe_check_tensor(const moe_runner *r, const DLTensor *t, const char *name,
                              int optional, int dtype, int32_t ndim, const int64_t *shape);
/* Alignment the CUDA kernels need for the tensors they read through TMA or 16-byte vectors
 * (hidden states, prepared weights, outputs). */
#define MOE_VECTOR_ALIGN 16
/* data + byte_offset of @p t (if any) must be a multiple of @p align; @p why goes in the message.
 */
moe_status_t moe_check_tensor_aligned(const DLTensor *t, const char *name, int32_t align,
                                      const char *why);
/* On the CUDA backend, data + byte_offset of @p t (if any) must be MOE_VECTOR_ALIGN-aligned. */
moe_status_t moe_check_tensor_vector_aligned(const moe_runner *r, const DLTensor *t,
                                             const char *name);
/* Data pointer with byte_offset applied (NULL for NULL data). */
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
/* Grouped run (core/grouped.c): plan from the counts, GEMM1, GEMM2, rows to the output. */
moe_status_t moe_backend_run_grouped(const moe_runner *r, const moe_k_run *a,
                                     const moe_k_plan *plan, const moe_k_grouped *g,
                                     moe_cuda_stream_t stream);
moe_status_t moe_backend_weights_prepare(const moe_runner *r, int32_t which, int64_t experts,
                                         int64_t rows, int64_t cols, const uint16_t *canonical,
                                         uint16_t *prepared, moe_cuda_stream_t stream);
/* FP8 preparation (kernels.h moe_cuda_weights_prepare_fp8 for the arguments). */
moe_status_t moe_backend_weights_prepare_fp8(const moe_runner *r, int32_t which, int64_t experts,
                                             int64_t rows, int64_t cols, const void *canonical,
                                             const float *canonical_scales, uint8_t *prepared,
                                             moe_cuda_stream_t stream);
/* MXFP4 preparation (kernels.h moe_cuda_weights_prepare_mx for the arguments). */
moe_status_t moe_backend_weights_prepare_mx(const moe_runner *r, int32_t gated_w1,
                                            int32_t interleaved, int64_t experts, int64_t rows,
                                            int64_t cols, const uint8_t *values,
                                            const uint8_t *scales, uint8_t *prepared,
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
moe_status_t moe_gpu_run_grouped(const moe_runner *r, const moe_k_run *a, const moe_k_plan *plan,
                                 const moe_k_grouped *g, moe_cuda_stream_t stream);
moe_status_t moe_gpu_prepare(const moe_runner *r, int32_t which, int32_t gated, int64_t experts,
                             int64_t rows, int64_t cols, const uint16_t *canonical,
                             uint16_t *prepared, moe_cuda_stream_t stream);
moe_status_t moe_gpu_prepare_fp8(const moe_runner *r, int32_t which, int32_t gated, int64_t experts,
                                 int64_t rows, int64_t cols, const void *canonical,
                                 const float *canonical_scales, uint8_t *prepared,
                                 moe_cuda_stream_t stream);
moe_status_t moe_gpu_prepare_mx(const moe_runner *r, int32_t gated_w1, int32_t interleaved,
                                int64_t experts, int64_t rows, int64_t cols, const uint8_t *values,
                                const uint8_t *scales, uint8_t *prepared, moe_cuda_stream_t stream);
moe_status_t moe_gpu_read(const moe_runner *r, void *dst, const void *src, size_t bytes,
                          moe_cuda_stream_t stream);
int64_t moe_gpu_scratch_bytes(int64_t max_tokens, int32_t num_experts);
/* Timing for autotune: elapsed microseconds of fn(ctx) run @p iters times (median). */
typedef moe_status_t (*moe_timed_fn)(void *ctx);
moe_status_t moe_gpu_time(const moe_runner *r, moe_timed_fn fn, void *ctx, int32_t iters,
                          moe_cuda_stream_t stream, float *median_us);

#endif /* MOE_CORE_INTERNAL_H_ */
