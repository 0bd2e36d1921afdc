/*
 * device.cu - device queries for core/backend_cuda.c. Without a driver or a device these return
 * the CUDA error (never crash); counts are 0 on error.
 */
#include <cuda_runtime.h>

#include "kernels.h"

extern "C" int moe_cuda_device_count(int32_t *count) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (count != nullptr) *count = e == cudaSuccess ? n : 0;
  if (e != cudaSuccess) (void)cudaGetLastError(); /* do not leave a sticky last error */
  return e;
}

extern "C" int moe_cuda_device_sm(int32_t device, int32_t *sm_version, int32_t *num_sms) {
  int major = 0, minor = 0, sms = 0;
  cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    major = minor = sms = 0;
  }
  if (sm_version != nullptr) *sm_version = major * 10 + minor;
  if (num_sms != nullptr) *num_sms = sms;
  return e;
}

extern "C" const char *moe_cuda_error_string(int err) {
  const char *s = cudaGetErrorString(static_cast<cudaError_t>(err));
  return s != nullptr ? s : "unknown CUDA error";
}
