/*
 * backend_cuda.c - the one file of core/ that talks to CUDA: device probing, setting and
 * restoring the runner's device around each call, error translation, the kernels/ launchers,
 * plan reads and autotune timing. In a build without CUDA every entry reports that cleanly.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(MOE_WITH_CUDA)
#include <cuda_runtime.h>

static moe_status_t cuda_fail(cudaError_t e, const char *what) {
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
    return moe_fail(MOE_STATUS_NO_DEVICE, "%s: %s (%s)", what, cudaGetErrorString(e),
                    cudaGetErrorName(e));
  return moe_fail(MOE_STATUS_CUDA_ERROR, "%s: %s (%s)", what, cudaGetErrorString(e),
                  cudaGetErrorName(e));
}

/* Make the runner's device current; remember the caller's to restore it. */
typedef struct {
  int prev;
  int switched;
} device_guard;

static moe_status_t guard_enter(const moe_runner *r, device_guard *g) {
  g->switched = 0;
  cudaError_t e = cudaGetDevice(&g->prev);
  if (e != cudaSuccess) return cuda_fail(e, "cudaGetDevice");
  if (g->prev != r->device_id) {
    e = cudaSetDevice(r->device_id);
    if (e != cudaSuccess) return cuda_fail(e, "cudaSetDevice");
    g->switched = 1;
  }
  return MOE_STATUS_SUCCESS;
}

static void guard_exit(device_guard *g) {
  if (g->switched) cudaSetDevice(g->prev);
}

int32_t moe_gpu_devices(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky-free error of a missing driver */
    return 0;
  }
  return n;
}

moe_status_t moe_gpu_probe(int32_t device_id, int32_t *sm_version, int32_t *num_sms) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return cuda_fail(e, "CUDA device query");
  }
  if (device_id >= n)
    return moe_fail(MOE_STATUS_NO_DEVICE, "opts->device_id: expected 0..%d, given %d", n - 1,
                    device_id);
  int major = 0, minor = 0, sms = 0;
  if ((e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_id)) ||
      (e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_id)) ||
      (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_id)))
    return cuda_fail(e, "cudaDeviceGetAttribute");
  *sm_version = major * 10 + minor;
  *num_sms = sms;
  return MOE_STATUS_SUCCESS;
}

int64_t moe_gpu_scratch_bytes(int64_t max_tokens, int32_t num_experts) {
  return moe_cuda_routing_scratch_bytes(max_tokens, num_experts);
}

moe_status_t moe_gpu_routing(const moe_runner *r, const moe_k_routing *a, const moe_k_plan *plan,
                             moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  moe_k_routing args = *a;
  args.num_sms = r->num_sms;
  int e = moe_cuda_routing(&args, plan, (void *)stream);
  guard_exit(&g);
  return e ? cuda_fail((cudaError_t)e, "routing kernels") : MOE_STATUS_SUCCESS;
}

/* SMs the GEMM launchers size their grids for: the device's, capped by opts->sm_budget. The
 * launchers compare it with the device's count to tell a budget (kernels/gemm/launch.cu). */
static int32_t gemm_sms(const moe_runner *r) {
  const int32_t b = r->opts.sm_budget;
  return b > 0 && b < r->num_sms ? b : r->num_sms;
}

moe_status_t moe_gpu_run(const moe_runner *r, const moe_k_run *a, const moe_k_plan *plan,
                         moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  moe_k_run args = *a;
  args.num_sms = gemm_sms(r);
  int e = moe_cuda_run(&args, plan, (void *)stream);
  guard_exit(&g);
  return e ? cuda_fail((cudaError_t)e, "GEMM / finalize kernels") : MOE_STATUS_SUCCESS;
}

moe_status_t moe_gpu_run_grouped(const moe_runner *r, const moe_k_run *a, const moe_k_plan *plan,
                                 const moe_k_grouped *grouped, moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  moe_k_run args = *a;
  args.num_sms = gemm_sms(r);
  int e = moe_cuda_run_grouped(&args, plan, grouped, (void *)stream);
  guard_exit(&g);
  return e ? cuda_fail((cudaError_t)e, "grouped plan / GEMM kernels") : MOE_STATUS_SUCCESS;
}

moe_status_t moe_gpu_prepare(const moe_runner *r, int32_t which, int32_t gated, int64_t experts,
                             int64_t rows, int64_t cols, const uint16_t *canonical,
                             uint16_t *prepared, moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  int e = moe_cuda_weights_prepare(which, gated, experts, rows, cols, canonical, prepared,
                                   (void *)stream);
  guard_exit(&g);
  return e ? cuda_fail((cudaError_t)e, "weight preparation") : MOE_STATUS_SUCCESS;
}

moe_status_t moe_gpu_prepare_fp8(const moe_runner *r, int32_t which, int32_t gated, int64_t experts,
                                 int64_t rows, int64_t cols, const void *canonical,
                                 const float *canonical_scales, uint8_t *prepared,
                                 moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  int e = moe_cuda_weights_prepare_fp8(which, gated, r->opts.scaling_mode, experts, rows, cols,
                                       canonical, canonical_scales, prepared, (void *)stream);
  guard_exit(&g);
  return e ? cuda_fail((cudaError_t)e, "FP8 weight preparation") : MOE_STATUS_SUCCESS;
}

moe_status_t moe_gpu_prepare_mx(const moe_runner *r, int32_t gated_w1, int32_t interleaved,
                                int64_t experts, int64_t rows, int64_t cols, const uint8_t *values,
                                const uint8_t *scales, uint8_t *prepared,
                                moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  int e = moe_cuda_weights_prepare_mx(gated_w1, interleaved, experts, rows, cols, values, scales,
                                      prepared, (void *)stream);
  guard_exit(&g);
  return e ? cuda_fail((cudaError_t)e, "MXFP4 weight preparation") : MOE_STATUS_SUCCESS;
}

moe_status_t moe_gpu_read(const moe_runner *r, void *dst, const void *src, size_t bytes,
                          moe_cuda_stream_t stream) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  cudaError_t e = cudaSuccess;
  if (bytes) e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  guard_exit(&g);
  return e ? cuda_fail(e, "plan read") : MOE_STATUS_SUCCESS;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

moe_status_t moe_gpu_time(const moe_runner *r, moe_timed_fn fn, void *ctx, int32_t iters,
                          moe_cuda_stream_t stream, float *median_us) {
  device_guard g;
  moe_status_t s = guard_enter(r, &g);
  if (s) return s;
  float *t = (float *)malloc(sizeof(float) * (size_t)iters);
  cudaEvent_t a = NULL, b = NULL;
  cudaError_t e = t ? cudaEventCreate(&a) : cudaErrorMemoryAllocation;
  if (e == cudaSuccess) e = cudaEventCreate(&b);
  if (e == cudaSuccess && (s = fn(ctx)) == MOE_STATUS_SUCCESS) { /* warm-up */
    for (int32_t i = 0; i < iters && e == cudaSuccess && !s; ++i) {
      e = cudaEventRecord(a, stream);
      if (e == cudaSuccess && (s = fn(ctx)) == MOE_STATUS_SUCCESS) {
        e = cudaEventRecord(b, stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(b);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&t[i], a, b);
      }
    }
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  if (!s && e == cudaSuccess) {
    qsort(t, (size_t)iters, sizeof *t, cmp_float);
    *median_us = t[iters / 2] * 1000.0f;
  }
  free(t);
  guard_exit(&g);
  if (s) return s;
  return e ? cuda_fail(e, "autotune timing") : MOE_STATUS_SUCCESS;
}

#else /* CPU-only build */

static moe_status_t no_cuda(void) {
  return moe_fail(MOE_STATUS_NOT_SUPPORTED, "backend: this build has no CUDA backend");
}
int32_t moe_gpu_devices(void) {
  return 0;
}
moe_status_t moe_gpu_probe(int32_t d, int32_t *sm, int32_t *n) {
  return no_cuda();
}
int64_t moe_gpu_scratch_bytes(int64_t t, int32_t e) {
  return 0;
}
moe_status_t moe_gpu_routing(const moe_runner *r, const moe_k_routing *a, const moe_k_plan *p,
                             moe_cuda_stream_t s) {
  return no_cuda();
}
moe_status_t moe_gpu_run(const moe_runner *r, const moe_k_run *a, const moe_k_plan *p,
                         moe_cuda_stream_t s) {
  return no_cuda();
}
moe_status_t moe_gpu_run_grouped(const moe_runner *r, const moe_k_run *a, const moe_k_plan *p,
                                 const moe_k_grouped *g, moe_cuda_stream_t s) {
  return no_cuda();
}
moe_status_t moe_gpu_prepare(const moe_runner *r, int32_t w, int32_t g, int64_t e, int64_t rows,
                             int64_t cols, const uint16_t *c, uint16_t *p, moe_cuda_stream_t s) {
  return no_cuda();
}
moe_status_t moe_gpu_read(const moe_runner *r, void *d, const void *s, size_t b,
                          moe_cuda_stream_t st) {
  return no_cuda();
}
moe_status_t moe_gpu_prepare_fp8(const moe_runner *r, int32_t w, int32_t g, int64_t e, int64_t rows,
                                 int64_t cols, const void *c, const float *cs, uint8_t *p,
                                 moe_cuda_stream_t s) {
  return no_cuda();
}
moe_status_t moe_gpu_prepare_mx(const moe_runner *r, int32_t gw, int32_t il, int64_t e,
                                int64_t rows, int64_t cols, const uint8_t *v, const uint8_t *sc,
                                uint8_t *p, moe_cuda_stream_t s) {
  return no_cuda();
}
moe_status_t moe_gpu_time(const moe_runner *r, moe_timed_fn fn, void *ctx, int32_t iters,
                          moe_cuda_stream_t stream, float *median_us) {
  return no_cuda();
}
#endif
