/*
 * backend.c - dispatch of validated work to the CPU reference backend or the CUDA backend.
 */
#include <string.h>

#include "internal.h"
#include "cpu/cpu_backend.h"

static moe_status_t need_device(const moe_runner *r) {
  if (r->has_device) return MOE_STATUS_SUCCESS;
  return moe_fail(MOE_STATUS_NO_DEVICE,
                  "runner: created with sm_version %d but no usable CUDA device %d is present; "
                  "only config queries and workspace sizing work",
                  r->sm_version, r->device_id);
}

static moe_status_t need_null_stream(const moe_runner *r, moe_cuda_stream_t stream) {
  if (!stream) return MOE_STATUS_SUCCESS;
  return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "stream: expected NULL on the CPU backend, given %p",
                  (void *)stream);
}

moe_status_t moe_backend_routing(const moe_runner *r, const moe_k_routing *a,
                                 const moe_k_plan *plan, moe_cuda_stream_t stream) {
  moe_status_t s;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    moe_cpu_routing(a, plan, r->num_threads);
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_routing(r, a, plan, stream);
}

moe_status_t moe_backend_run(const moe_runner *r, const moe_k_run *a, const moe_k_plan *plan,
                             moe_cuda_stream_t stream) {
  moe_status_t s;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    moe_cpu_run(a, plan, r->num_threads);
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_run(r, a, plan, stream);
}

moe_status_t moe_backend_run_grouped(const moe_runner *r, const moe_k_run *a,
                                     const moe_k_plan *plan, const moe_k_grouped *g,
                                     moe_cuda_stream_t stream) {
  moe_status_t s;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    moe_cpu_run_grouped(a, plan, g->counts, g->masked, g->capacity, r->num_threads);
    if (g->status) *g->status = 0; /* the counts were checked on the host */
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_run_grouped(r, a, plan, g, stream);
}

moe_status_t moe_backend_weights_prepare(const moe_runner *r, int32_t which, int64_t experts,
                                         int64_t rows, int64_t cols, const uint16_t *canonical,
                                         uint16_t *prepared, moe_cuda_stream_t stream) {
  moe_status_t s;
  int32_t gated = which == MOE_WEIGHTS_GEMM1 && r->gated;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    moe_cpu_weights_prepare(which, gated, experts, rows, cols, canonical, prepared);
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_prepare(r, which, gated, experts, rows, cols, canonical, prepared, stream);
}

moe_status_t moe_backend_weights_prepare_fp8(const moe_runner *r, int32_t which, int64_t experts,
                                             int64_t rows, int64_t cols, const void *canonical,
                                             const float *canonical_scales, uint8_t *prepared,
                                             moe_cuda_stream_t stream) {
  moe_status_t s;
  int32_t gated = which == MOE_WEIGHTS_GEMM1 && r->gated;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    moe_cpu_weights_prepare_fp8(which, gated, r->opts.scaling_mode, experts, rows, cols, canonical,
                                canonical_scales, prepared);
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_prepare_fp8(r, which, gated, experts, rows, cols, canonical, canonical_scales,
                             prepared, stream);
}

moe_status_t moe_backend_weights_prepare_mx(const moe_runner *r, int32_t gated_w1,
                                            int32_t interleaved, int64_t experts, int64_t rows,
                                            int64_t cols, const uint8_t *values,
                                            const uint8_t *scales, uint8_t *prepared,
                                            moe_cuda_stream_t stream) {
  moe_status_t s;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    moe_cpu_weights_prepare_mx(gated_w1, interleaved, experts, rows, cols, values, scales,
                               prepared);
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_prepare_mx(r, gated_w1, interleaved, experts, rows, cols, values, scales, prepared,
                            stream);
}

moe_status_t moe_backend_read(const moe_runner *r, void *dst, const void *src, size_t bytes,
                              moe_cuda_stream_t stream) {
  moe_status_t s;
  if (r->backend == MOE_BACKEND_CPU) {
    if ((s = need_null_stream(r, stream))) return s;
    if (bytes) memcpy(dst, src, bytes);
    return MOE_STATUS_SUCCESS;
  }
  if ((s = need_device(r))) return s;
  return moe_gpu_read(r, dst, src, bytes, stream);
}
