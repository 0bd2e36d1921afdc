/*
 * fp8.c - the FP8 rules of core/ (docs/formats.md "FP8"): runner precision options, the shape
 * rule, the prepared weight size, the arguments of FP8 weight preparation, and the FP8 run
 * arguments. Everything is validated here before any backend work, so a failing call writes
 * nothing.
 */
#include <stddef.h>
#include <stdio.h>

#include "internal.h"
#include "kernels/fp8_math.h"

/* FP8 weights (PER_TENSOR or BLOCK); MXFP4 runners are MX (mxfp4.c). */
static int is_fp8(const moe_runner *r) {
  return r->opts.scaling_mode == MOE_SCALING_PER_TENSOR ||
         r->opts.scaling_mode == MOE_SCALING_BLOCK;
}

static const char *mode_name(int32_t m) {
  return m == MOE_SCALING_PER_TENSOR ? "PER_TENSOR"
         : m == MOE_SCALING_BLOCK    ? "BLOCK"
         : m == MOE_SCALING_MX       ? "MX"
                                     : "NONE";
}

moe_status_t moe_check_precision_options(const moe_runner_options *o) {
  const int32_t ad = o->activation_dtype, wd = o->weight_dtype, m = o->scaling_mode;
  if (ad != MOE_DTYPE_BF16 && ad != MOE_DTYPE_FP8_E4M3)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->activation_dtype: expected 0 (BF16) or 1 (FP8_E4M3), given %d", ad);
  if (wd != MOE_DTYPE_BF16 && wd != MOE_DTYPE_FP8_E4M3 && wd != MOE_DTYPE_MXFP4)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->weight_dtype: expected 0 (BF16), 1 (FP8_E4M3) or 2 (MXFP4), given %d",
                    wd);
  if (m < MOE_SCALING_NONE || m > MOE_SCALING_MX)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->scaling_mode: expected 0 (NONE), 1 (PER_TENSOR), 2 (BLOCK) or 3 (MX), "
                    "given %d",
                    m);
  /* MXFP4 weights and MX scales go together; both activation dtypes (W4A16, W4A8) */
  if (wd == MOE_DTYPE_MXFP4 && m != MOE_SCALING_MX)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->scaling_mode: MXFP4 weights carry MX scales; expected 3 (MX), given %d "
                    "(%s)",
                    m, mode_name(m));
  if (m == MOE_SCALING_MX && wd != MOE_DTYPE_MXFP4)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->weight_dtype: scaling_mode 3 (MX) is for MXFP4 weights; expected 2 "
                    "(MXFP4), given %d",
                    wd);
  if (wd == MOE_DTYPE_MXFP4) return MOE_STATUS_SUCCESS;
  if (ad == MOE_DTYPE_FP8_E4M3 && wd != MOE_DTYPE_FP8_E4M3)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->weight_dtype: FP8_E4M3 activations need FP8_E4M3 weights; expected 1, "
                    "given %d",
                    wd);
  if (wd == MOE_DTYPE_FP8_E4M3 && ad != MOE_DTYPE_FP8_E4M3)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "opts->activation_dtype: FP8_E4M3 weights with BF16 activations (W8A16) are "
                    "not supported; expected 1 (FP8_E4M3), given %d",
                    ad);
  if (ad == MOE_DTYPE_BF16 && m != MOE_SCALING_NONE)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->scaling_mode: BF16 activations and weights take no scales; expected 0 "
                    "(NONE), given %d (%s)",
                    m, mode_name(m));
  if (ad == MOE_DTYPE_FP8_E4M3 && m == MOE_SCALING_NONE)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->scaling_mode: FP8_E4M3 needs scales; expected 1 (PER_TENSOR) or 2 "
                    "(BLOCK), given 0 (NONE)");
  return MOE_STATUS_SUCCESS;
}

moe_status_t moe_check_fp8_problem(const moe_runner *r, const moe_problem *p) {
  if (r->opts.scaling_mode == MOE_SCALING_MX) return moe_check_mx_problem(p);
  if (!is_fp8(r)) return MOE_STATUS_SUCCESS;
  if (p->hidden_size % MOE_FP8_BLOCK)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem->hidden_size: FP8 needs a multiple of %d, given %lld", MOE_FP8_BLOCK,
                    (long long)p->hidden_size);
  if (p->intermediate_size % MOE_FP8_BLOCK)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "problem->intermediate_size: FP8 needs a multiple of %d, given %lld",
                    MOE_FP8_BLOCK, (long long)p->intermediate_size);
  return MOE_STATUS_SUCCESS;
}

/*
 * Formats whose CUDA GEMM kernels are not in this build (MXFP4 weights): runner creation,
 * config queries, workspace sizing and weight preparation work on CUDA, and moe_runner_run
 * stops here, before any other check, so that CPU-only CI (sm_version 90, no device) sees it
 * too. FP8 runs on the sm90_fp8pt_* (per-tensor) and sm90_fp8blk_* (block) catalogues.
 */
moe_status_t moe_check_fp8_backend(const moe_runner *r) {
  if (r->backend != MOE_BACKEND_CUDA || r->opts.scaling_mode != MOE_SCALING_MX ||
      r->opts.activation_dtype == MOE_DTYPE_BF16)
    return MOE_STATUS_SUCCESS;
  return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                  "runner: MXFP4 weights with FP8_E4M3 activations (W4A8) run only on the CPU "
                  "backend in this build; the CUDA backend runs MXFP4 with BF16 activations "
                  "(W4A16)");
}

/* Scales of one weight tensor: [el, rows/128, cols/128] (BLOCK) or [el] (PER_TENSOR). */
static int64_t weight_scale_count(const moe_runner *r, int64_t el, int64_t rows, int64_t cols) {
  if (r->opts.scaling_mode == MOE_SCALING_BLOCK)
    return el * (rows / MOE_FP8_BLOCK) * (cols / MOE_FP8_BLOCK);
  return el;
}

/* The caller checked el * rows * cols * 2 against INT64_MAX, which bounds both terms. */
int64_t moe_fp8_prepared_bytes(const moe_runner *r, int64_t el, int64_t rows, int64_t cols) {
  return moe_k_fp8_scales_offset(el * rows * cols) + 4 * weight_scale_count(r, el, rows, cols);
}

static int dtype_is(const DLTensor *t, uint8_t code, uint8_t bits) {
  return t && t->dtype.code == code && t->dtype.bits == bits && t->dtype.lanes == 1;
}

moe_status_t moe_fp8_weights_prepare(const moe_runner *r, const moe_problem *p, int32_t which,
                                     int64_t rows, int64_t cols, const DLTensor *canonical,
                                     const DLTensor *canonical_scales, const DLTensor *prepared,
                                     moe_cuda_stream_t stream) {
  const int64_t el = moe_local_experts(p);
  const int64_t bytes = moe_fp8_prepared_bytes(r, el, rows, cols);
  const int64_t cshape[3] = {el, rows, cols}, pshape[1] = {moe_shape_at_least((uint64_t)bytes)};
  const int block = r->opts.scaling_mode == MOE_SCALING_BLOCK;
  const int64_t bshape[3] = {el, rows / MOE_FP8_BLOCK, cols / MOE_FP8_BLOCK}, tshape[1] = {el};
  moe_status_t s;
  if (canonical_scales) {
    if (dtype_is(canonical, kDLBfloat, 16))
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "canonical: expected float8_e4m3fn weights with canonical_scales (or bf16 "
                      "weights with canonical_scales NULL), given bfloat16 with scales");
    if ((s = moe_check_tensor(r, canonical, "canonical", 0, MOE_T_E4M3, 3, cshape)) ||
        (s = moe_check_tensor(r, canonical_scales, "canonical_scales", 0, MOE_T_F32, block ? 3 : 1,
                              block ? bshape : tshape)))
      return s;
  } else {
    if (dtype_is(canonical, kDLFloat8_e4m3fn, 8))
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "canonical_scales: expected the fp32 scales of float8_e4m3fn weights "
                      "(%s: [E_l, rows/128, cols/128] = [%lld, %lld, %lld]; PER_TENSOR: [E_l]), "
                      "given NULL",
                      mode_name(r->opts.scaling_mode), (long long)el,
                      (long long)(rows / MOE_FP8_BLOCK), (long long)(cols / MOE_FP8_BLOCK));
    if ((s = moe_check_tensor(r, canonical, "canonical", 0, MOE_T_BF16, 3, cshape))) return s;
  }
  if ((s = moe_check_tensor(r, prepared, "prepared", 0, MOE_T_U8, 1, pshape))) return s;
  /* In place is not supported (as for BF16: gated W1's rows move, and the scales land after the
   * values): the prepared bytes may overlap neither the canonical values nor their scales. */
  const DLTensor *const srcs[2] = {canonical, canonical_scales};
  /* both were checked above: compact, of exactly these shapes */
  const uint64_t src_bytes[2] = {
      (uint64_t)(el * rows * cols) * (canonical->dtype.bits / 8u),
      (uint64_t)(block ? el * (rows / MOE_FP8_BLOCK) * (cols / MOE_FP8_BLOCK) : el) * 4u};
  uint8_t *dst = NULL;
  if ((s = moe_check_prepared_out(prepared, (uint64_t)bytes, srcs, src_bytes, &dst))) return s;
  return moe_backend_weights_prepare_fp8(r, which, el, rows, cols, moe_tensor_data(canonical),
                                         (const float *)moe_tensor_data(canonical_scales), dst,
                                         stream);
}

/* A scale tensor that this mode or input does not use must be NULL. */
static moe_status_t must_be_null(const DLTensor *t, const char *name, const char *why) {
  if (!t) return MOE_STATUS_SUCCESS;
  return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected NULL (%s), given a tensor", name, why);
}

/* A required scale tensor: NULL gets a message that also says when the caller's struct version
 * has no such field. */
static moe_status_t required(const moe_runner *r, const moe_act_inputs *in, const DLTensor *t,
                             const char *name, int32_t ndim, const int64_t *shape,
                             const char *what) {
  if (!t)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected %s, given NULL%s", name, what,
                    in->no_fields ? in->no_fields : "");
  return moe_check_tensor(r, t, name, 0, MOE_T_F32, ndim, shape);
}

moe_status_t moe_check_run_precision(const moe_runner *r, const moe_problem *p,
                                     const moe_run_args *a, moe_k_run *k) {
  const int v2 = a->version >= 2;
  const int64_t th[2] = {p->num_tokens, p->hidden_size};
  const moe_act_inputs in = {a->hidden_states,
                             v2 ? a->hidden_states_scale : NULL,
                             v2 ? a->gemm1_input_scale : NULL,
                             v2 ? a->gemm2_input_scale : NULL,
                             2,
                             th,
                             p->num_tokens,
                             v2 ? NULL : " (run args version 1 has no such field: use version 2)"};
  return moe_check_act_precision(r, p, &in, k);
}

moe_status_t moe_check_act_precision(const moe_runner *r, const moe_problem *p,
                                     const moe_act_inputs *in, moe_k_run *k) {
  const DLTensor *hs = in->hidden_scale, *s1 = in->scale1, *s2 = in->scale2;
  const int64_t H = p->hidden_size;
  const int64_t one[1] = {1}, ths[2] = {in->rows, H / MOE_FP8_BLOCK};
  const int32_t mode = r->opts.scaling_mode, nd = in->hidden_ndim;
  const int64_t *th = in->hidden_shape;
  moe_status_t s;
  if (r->opts.activation_dtype == MOE_DTYPE_BF16) { /* BF16 runners and W4A16 */
    if ((s = moe_check_fp8_problem(r, p))) return s;
    const char *why = mode == MOE_SCALING_MX
                          ? "MXFP4 weights with BF16 activations (W4A16) take no activation scales"
                          : "a BF16 runner (scaling_mode NONE) takes no scales";
    if ((s = moe_check_tensor(r, in->hidden, "args->hidden_states", 0, MOE_T_BF16, nd, th)) ||
        (s = must_be_null(hs, "args->hidden_states_scale", why)) ||
        (s = must_be_null(s1, "args->gemm1_input_scale", why)) ||
        (s = must_be_null(s2, "args->gemm2_input_scale", why)))
      return s;
    k->hidden = (const uint16_t *)moe_tensor_data(in->hidden);
    k->scaling_mode = mode;
    return MOE_STATUS_SUCCESS;
  }
  if ((s = moe_check_fp8_problem(r, p))) return s;
  const DLTensor *x = in->hidden;
  const int fp8_in = dtype_is(x, kDLFloat8_e4m3fn, 8);
  if (x && !fp8_in && !dtype_is(x, kDLBfloat, 16))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->hidden_states: expected dtype bfloat16 or float8_e4m3fn on an FP8 "
                    "runner, given (code %u, bits %u, lanes %u)",
                    x->dtype.code, x->dtype.bits, x->dtype.lanes);
  if ((s = moe_check_tensor(r, x, "args->hidden_states", 0, fp8_in ? MOE_T_E4M3 : MOE_T_BF16, nd,
                            th)))
    return s;
  if (mode == MOE_SCALING_PER_TENSOR || mode == MOE_SCALING_MX) { /* static scales (W4A8 too) */
    if ((s = must_be_null(hs, "args->hidden_states_scale",
                          "static per-tensor scales read e4m3 hidden states with "
                          "gemm1_input_scale")) ||
        (s = required(r, in, s1, "args->gemm1_input_scale", 1, one,
                      "a [1] fp32 tensor with static activation scales (PER_TENSOR, W4A8)")) ||
        (s = required(r, in, s2, "args->gemm2_input_scale", 1, one,
                      "a [1] fp32 tensor with static activation scales (PER_TENSOR, W4A8)")))
      return s;
  } else {
    const char *why = "BLOCK mode computes activation scales per token per 128 columns";
    if ((s = must_be_null(s1, "args->gemm1_input_scale", why)) ||
        (s = must_be_null(s2, "args->gemm2_input_scale", why)))
      return s;
    if (fp8_in) {
      char what[128];
      snprintf(what, sizeof what,
               "[%lld, %lld] fp32 scales of the float8_e4m3fn hidden states (one per row per 128 "
               "columns)",
               (long long)ths[0], (long long)ths[1]);
      if ((s = required(r, in, hs, "args->hidden_states_scale", 2, ths, what))) return s;
    } else if ((s = must_be_null(hs, "args->hidden_states_scale",
                                 "bf16 hidden states are quantized by the library"))) {
      return s;
    }
  }
  k->hidden = (const uint16_t *)moe_tensor_data(x);
  k->scaling_mode = mode;
  k->act_fp8 = 1;
  k->hidden_fp8 = fp8_in;
  k->hidden_scale = (const float *)moe_tensor_data(hs);
  k->input_scale1 = (const float *)moe_tensor_data(s1);
  k->input_scale2 = (const float *)moe_tensor_data(s2);
  return MOE_STATUS_SUCCESS;
}
