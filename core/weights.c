/*
 * weights.c - prepared weight sizes and the canonical -> prepared conversion (BF16 here; the
 * FP8 arguments are checked in fp8.c).
 */
#include <limits.h>

#include "internal.h"

/* Canonical shape of one weight tensor: [E_l, rows, cols]. */
static void weight_dims(const moe_runner *r, const moe_problem *p, int32_t which, int64_t *rows,
                        int64_t *cols) {
  if (which != MOE_WEIGHTS_GEMM2) { /* GEMM1, or GEMM1 with interleaved gate/up rows */
    *rows = (r->gated ? 2 : 1) * p->intermediate_size;
    *cols = p->hidden_size;
  } else {
    *rows = p->hidden_size;
    *cols = p->intermediate_size;
  }
}

static moe_status_t check_which(const moe_runner *r, const moe_problem *p, int32_t which) {
  const int mx = r->opts.scaling_mode == MOE_SCALING_MX;
  if (which != MOE_WEIGHTS_GEMM1 && which != MOE_WEIGHTS_GEMM2 &&
      which != MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "which: expected %d (GEMM1), %d (GEMM2) or %d (GEMM1_GATE_UP_INTERLEAVED), "
                    "given %d",
                    MOE_WEIGHTS_GEMM1, MOE_WEIGHTS_GEMM2, MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED,
                    which);
  if (which == MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED && (!mx || !r->gated))
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "which: %d (GEMM1_GATE_UP_INTERLEAVED, the gpt-oss checkpoint row order) is "
                    "supported by MXFP4 runners with a gated activation; given weight_dtype %d, "
                    "activation %d",
                    which, r->opts.weight_dtype, r->opts.activation);
  if (which != MOE_WEIGHTS_GEMM2 && r->gated && p->intermediate_size % 8)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "problem->intermediate_size: gated activations need a multiple of 8, given "
                    "%lld",
                    (long long)p->intermediate_size);
  moe_status_t s = moe_check_fp8_problem(r, p);
  if (s) return s;
  int64_t rows, cols;
  weight_dims(r, p, which, &rows, &cols);
  int64_t el = moe_local_experts(p);
  if (rows > INT64_MAX / cols / el / 2)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED, "problem: weight size overflows");
  return MOE_STATUS_SUCCESS;
}

moe_status_t moe_check_prepared_out(const DLTensor *prepared, uint64_t bytes,
                                    const DLTensor *const srcs[2], const uint64_t src_bytes[2],
                                    uint8_t **dst) {
  uint8_t *d = (uint8_t *)moe_tensor_data(prepared);
  if ((uintptr_t)d % 16)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "prepared: expected 16-byte aligned data, given %p", (void *)d);
  const uint64_t d0 = (uint64_t)(uintptr_t)d;
  for (int i = 0; i < 2; ++i) {
    if (!srcs[i]) continue;
    const uint64_t s0 = (uint64_t)(uintptr_t)moe_tensor_data(srcs[i]), sn = src_bytes[i];
    if (bytes > 0 && sn > 0 && s0 < d0 + bytes && d0 < s0 + sn)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "prepared: expected memory disjoint from %s (in-place preparation is not "
                      "supported), given %p overlapping %p",
                      i == 0 ? "canonical" : "canonical_scales", (void *)d, (const void *)s0);
  }
  *dst = d;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_weights_prepared_size(const moe_runner *r, const moe_problem *p,
                                               int32_t which, size_t *bytes) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!bytes) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "bytes: expected a non-NULL pointer");
  *bytes = 0;
  moe_status_t s = moe_check_problem(p, "problem");
  if (s || (s = check_which(r, p, which))) return s;
  int64_t rows, cols;
  weight_dims(r, p, which, &rows, &cols);
  const int64_t el = moe_local_experts(p);
  const int32_t mode = r->opts.scaling_mode;
  *bytes = (size_t)(mode == MOE_SCALING_MX     ? moe_mx_prepared_bytes(el, rows, cols)
                    : mode != MOE_SCALING_NONE ? moe_fp8_prepared_bytes(r, el, rows, cols)
                                               : el * rows * cols * 2);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_weights_prepare(const moe_runner *r, const moe_problem *p, int32_t which,
                                         const DLTensor *canonical, const DLTensor *prepared,
                                         moe_cuda_stream_t stream) {
  return moe_weights_prepare_scaled(r, p, which, canonical, NULL, prepared, stream);
}

MOE_API moe_status_t moe_weights_prepare_scaled(const moe_runner *r, const moe_problem *p,
                                                int32_t which, const DLTensor *canonical,
                                                const DLTensor *canonical_scales,
                                                const DLTensor *prepared,
                                                moe_cuda_stream_t stream) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  size_t bytes = 0;
  moe_status_t s = moe_weights_prepared_size(r, p, which, &bytes);
  if (s) return s;
  int64_t rows, cols;
  weight_dims(r, p, which, &rows, &cols);
  if (r->opts.scaling_mode == MOE_SCALING_MX)
    return moe_mx_weights_prepare(r, p, which, rows, cols, canonical, canonical_scales, prepared,
                                  stream);
  if (r->opts.scaling_mode != MOE_SCALING_NONE)
    return moe_fp8_weights_prepare(r, p, which, rows, cols, canonical, canonical_scales, prepared,
                                   stream);
  if (canonical_scales)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "canonical_scales: expected NULL on a BF16 runner (scaling_mode NONE), "
                    "given a tensor");
  const int64_t el = moe_local_experts(p);
  const int64_t cshape[3] = {el, rows, cols}, pshape[1] = {moe_shape_at_least(bytes)};
  if ((s = moe_check_tensor(r, canonical, "canonical", 0, MOE_T_BF16, 3, cshape)) ||
      (s = moe_check_tensor(r, prepared, "prepared", 0, MOE_T_U8, 1, pshape)))
    return s;
  const uint16_t *src = (const uint16_t *)moe_tensor_data(canonical);
  uint16_t *dst = (uint16_t *)moe_tensor_data(prepared);
  if ((uintptr_t)dst % 16)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "prepared: expected 16-byte aligned data, given %p", (void *)dst);
  /* In place is not supported: gated W1 interleaves up and gate rows, so a row would be
   * overwritten before it is read. Any overlap of the two byte ranges is refused. */
  const uint64_t s0 = (uint64_t)(uintptr_t)src, d0 = (uint64_t)(uintptr_t)dst;
  if (bytes > 0 && s0 < d0 + bytes && d0 < s0 + bytes)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "prepared: expected memory disjoint from canonical (in-place preparation is "
                    "not supported), given %p overlapping %p (%zu bytes each)",
                    (void *)dst, (const void *)src, bytes);
  return moe_backend_weights_prepare(r, which, el, rows, cols, src, dst, stream);
}
