/*
 * mxfp4.c - the MXFP4 rules of core/ (docs/formats.md, "MXFP4"): the shape rule, the prepared
 * weight size and the arguments of MXFP4 weight preparation (the checkpoint's packed e2m1
 * blocks and ue8m0 scales). Runner options and run arguments are checked with the FP8 ones
 * (fp8.c): W4A8 takes the static per-tensor activation scales of the FP8 path. Everything is
 * validated before any backend work, so a failing call writes nothing.
 */
#include <stddef.h>

#include "internal.h"
#include "kernels/mxfp4_math.h"

moe_status_t moe_check_mx_problem(const moe_problem *p) {
  const int64_t k[2] = {p->hidden_size, p->intermediate_size};
  static const char *const names[2] = {"hidden_size", "intermediate_size"};
  for (int i = 0; i < 2; ++i)
    if (k[i] % MOE_MX_BLOCK)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "problem->%s: MXFP4 needs a multiple of %d (one ue8m0 scale per %d values "
                      "along K), given %lld",
                      names[i], MOE_MX_BLOCK, MOE_MX_BLOCK, (long long)k[i]);
  return MOE_STATUS_SUCCESS;
}

/* The caller checked el * rows * cols * 2 against INT64_MAX, which bounds this (two 128-byte
 * pads per expert on at most half and a sixteenth of rows * cols bytes). */
int64_t moe_mx_prepared_bytes(int64_t el, int64_t rows, int64_t cols) {
  return el * moe_mx_expert_bytes(rows, cols);
}

/*
 * A uint8 view of @p t when its dtype is one of @p n accepted byte-sized codes (code, bits,
 * lanes), so moe_check_tensor can check its shape; else @p t itself (whose dtype then fails the
 * check with the expected name).
 */
static const DLTensor *as_bytes(const DLTensor *t, DLTensor *view, const DLDataType *ok, int n) {
  if (!t) return t;
  for (int i = 0; i < n; ++i)
    if (t->dtype.code == ok[i].code && t->dtype.bits == ok[i].bits &&
        t->dtype.lanes == ok[i].lanes) {
      *view = *t;
      view->dtype.code = kDLUInt;
      view->dtype.bits = 8;
      view->dtype.lanes = 1;
      return view;
    }
  return t;
}

static moe_status_t dtype_fail(const DLTensor *t, const char *name, const char *want) {
  return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                  "%s: expected dtype %s, given (code %u, bits %u, lanes %u)", name, want,
                  t->dtype.code, t->dtype.bits, t->dtype.lanes);
}

moe_status_t moe_mx_weights_prepare(const moe_runner *r, const moe_problem *p, int32_t which,
                                    int64_t rows, int64_t cols, const DLTensor *canonical,
                                    const DLTensor *canonical_scales, const DLTensor *prepared,
                                    moe_cuda_stream_t stream) {
  const int64_t el = moe_local_experts(p), nb = cols / MOE_MX_BLOCK;
  const int64_t bytes = moe_mx_prepared_bytes(el, rows, cols);
  const int64_t vshape[3] = {el, rows, cols / 2}, sshape[3] = {el, rows, nb};
  const int64_t pshape[1] = {moe_shape_at_least((uint64_t)bytes)};
  static const DLDataType k_values[2] = {{kDLUInt, 8, 1}, {kDLFloat4_e2m1fn, 4, 2}};
  static const DLDataType k_scales[2] = {{kDLUInt, 8, 1}, {kDLFloat8_e8m0fnu, 8, 1}};
  DLTensor vview, sview;
  moe_status_t s;
  if (!canonical_scales)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "canonical_scales: expected the ue8m0 scales of the MXFP4 blocks, uint8 or "
                    "float8_e8m0fnu [E_l, rows, cols/32] = [%lld, %lld, %lld], given NULL (an "
                    "MXFP4 runner takes the checkpoint's blocks and scales: "
                    "moe_weights_prepare_scaled)",
                    (long long)el, (long long)rows, (long long)nb);
  const DLTensor *v = as_bytes(canonical, &vview, k_values, 2);
  const DLTensor *sc = as_bytes(canonical_scales, &sview, k_scales, 2);
  if (v && v == canonical &&
      !(v->dtype.code == kDLUInt && v->dtype.bits == 8 && v->dtype.lanes == 1))
    return dtype_fail(v, "canonical",
                      "uint8 (packed e2m1 pairs) or float4_e2m1fn x2 lanes (the MXFP4 blocks)");
  if (sc == canonical_scales &&
      !(sc->dtype.code == kDLUInt && sc->dtype.bits == 8 && sc->dtype.lanes == 1))
    return dtype_fail(sc, "canonical_scales", "uint8 or float8_e8m0fnu (ue8m0 scales)");
  if ((s = moe_check_tensor(r, v, "canonical", 0, MOE_T_U8, 3, vshape)) ||
      (s = moe_check_tensor(r, sc, "canonical_scales", 0, MOE_T_U8, 3, sshape)) ||
      (s = moe_check_tensor(r, prepared, "prepared", 0, MOE_T_U8, 1, pshape)))
    return s;
  const DLTensor *const srcs[2] = {v, sc};
  const uint64_t src_bytes[2] = {(uint64_t)(el * rows * (cols / 2)), (uint64_t)(el * rows * nb)};
  uint8_t *dst = NULL;
  if ((s = moe_check_prepared_out(prepared, (uint64_t)bytes, srcs, src_bytes, &dst))) return s;
  /* ue8m0 0xFF is NaN (OCP MX): refused where the scales are host memory (CPU backend), so a
   * prepared tensor never holds a NaN scale there; device scales cannot be read without a
   * synchronisation, and a NaN scale decodes as NaN (docs/formats.md). */
  const uint8_t *scales = (const uint8_t *)moe_tensor_data(sc);
  for (int64_t i = 0; r->backend == MOE_BACKEND_CPU && i < el * rows * nb; ++i)
    if (scales[i] == MOE_MX_SCALE_NAN)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "canonical_scales: expected ue8m0 codes 0..254, given 0xFF (NaN) at "
                      "[%lld, %lld, %lld]",
                      (long long)(i / (rows * nb)), (long long)(i / nb % rows),
                      (long long)(i % nb));
  const int32_t gated_w1 = which != MOE_WEIGHTS_GEMM2 && r->gated;
  return moe_backend_weights_prepare_mx(r, gated_w1, which == MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED,
                                        el, rows, cols, (const uint8_t *)moe_tensor_data(v), scales,
                                        dst, stream);
}
