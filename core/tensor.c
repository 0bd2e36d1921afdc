/*
 * tensor.c - validation of borrowed DLTensors against what a call expects.
 */
#include <stdio.h>

#include "internal.h"

static const char *dtype_name(int want) {
  switch (want) {
    case MOE_T_F32:
      return "float32";
    case MOE_T_BF16:
      return "bfloat16";
    case MOE_T_I32:
      return "int32";
    case MOE_T_U8:
      return "uint8";
    case MOE_T_E4M3:
      return "float8_e4m3fn";
    default:
      return "float32 or bfloat16";
  }
}

static int dtype_is(DLDataType d, int want) {
  if (d.lanes != 1) return 0;
  switch (want) {
    case MOE_T_F32:
      return d.code == kDLFloat && d.bits == 32;
    case MOE_T_BF16:
      return d.code == kDLBfloat && d.bits == 16;
    case MOE_T_I32:
      return d.code == kDLInt && d.bits == 32;
    case MOE_T_U8:
      return d.code == kDLUInt && d.bits == 8;
    case MOE_T_E4M3:
      return d.code == kDLFloat8_e4m3fn && d.bits == 8;
    default:
      return dtype_is(d, MOE_T_F32) || dtype_is(d, MOE_T_BF16);
  }
}

static void shape_str(char *buf, size_t n, int32_t ndim, const int64_t *shape) {
  size_t at = 0;
  at += (size_t)snprintf(buf + at, n - at, "[");
  for (int32_t i = 0; i < ndim && at < n; ++i)
    at += (size_t)snprintf(buf + at, n - at, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (at < n) snprintf(buf + at, n - at, "]");
}

static void want_str(char *buf, size_t n, int32_t ndim, const int64_t *shape) {
  size_t at = 0;
  at += (size_t)snprintf(buf + at, n - at, "[");
  for (int32_t i = 0; i < ndim && at < n; ++i) {
    const char *sep = i ? ", " : "";
    if (shape[i] == -1)
      at += (size_t)snprintf(buf + at, n - at, "%sany", sep);
    else if (shape[i] <= -2)
      at += (size_t)snprintf(buf + at, n - at, "%s>=%lld", sep, (long long)(-shape[i] - 2));
    else
      at += (size_t)snprintf(buf + at, n - at, "%s%lld", sep, (long long)shape[i]);
  }
  if (at < n) snprintf(buf + at, n - at, "]");
}

/* shape[i] >= 0: exact; -1: any; <= -2: at least (-shape[i] - 2). */
moe_status_t moe_check_tensor(const moe_runner *r, const DLTensor *t, const char *name,
                              int optional, int dtype, int32_t ndim, const int64_t *shape) {
  if (!t) {
    if (optional) return MOE_STATUS_SUCCESS;
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected a tensor, given NULL", name);
  }
  if (!dtype_is(t->dtype, dtype))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected dtype %s, given (code %u, bits %u, lanes %u)", name,
                    dtype_name(dtype), t->dtype.code, t->dtype.bits, t->dtype.lanes);
  if (t->ndim != ndim)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected %d dimensions, given %d", name, ndim,
                    t->ndim);
  if (ndim > 0 && !t->shape)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: shape pointer is NULL", name);
  int ok = 1;
  for (int32_t i = 0; i < ndim; ++i) {
    if (t->shape[i] < 0) ok = 0;
    if (shape[i] >= 0 && t->shape[i] != shape[i]) ok = 0;
    if (shape[i] <= -2 && t->shape[i] < -shape[i] - 2) ok = 0;
  }
  if (!ok) {
    char want[160], got[160];
    want_str(want, sizeof want, ndim, shape);
    shape_str(got, sizeof got, ndim, t->shape);
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected shape %s, given %s", name, want,
                    got);
  }
  int64_t numel = 1;
  for (int32_t i = 0; i < ndim; ++i) numel *= t->shape[i];
  /* Strides of an empty tensor are meaningless (numpy exports zeros); only check real data. */
  if (t->strides && numel > 0) {
    int64_t expect = 1;
    for (int32_t i = ndim - 1; i >= 0; --i) {
      if (t->shape[i] != 1 && t->strides[i] != expect)
        return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                        "%s: expected compact row-major strides, given stride %lld in dim %d "
                        "(expected %lld)",
                        name, (long long)t->strides[i], i, (long long)expect);
      expect *= t->shape[i];
    }
  }
  if (numel > 0 && !t->data)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: data pointer is NULL", name);
  int cpu = r->backend == MOE_BACKEND_CPU;
  int dev_ok =
      cpu ? (t->device.device_type == kDLCPU || t->device.device_type == kDLCUDAHost)
          : ((t->device.device_type == kDLCUDA || t->device.device_type == kDLCUDAManaged) &&
             t->device.device_id == r->device_id);
  if (!dev_ok)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected a tensor on %s, given device (type %d, id %d)", name,
                    cpu ? "the CPU (kDLCPU)" : "the runner's CUDA device (kDLCUDA)",
                    (int)t->device.device_type, t->device.device_id);
  return MOE_STATUS_SUCCESS;
}

void *moe_tensor_data(const DLTensor *t) {
  return t ? (void *)((char *)t->data + t->byte_offset) : NULL;
}

int32_t moe_tensor_kdtype(const DLTensor *t) {
  return (t->dtype.code == kDLBfloat) ? MOE_K_BF16 : MOE_K_F32;
}
