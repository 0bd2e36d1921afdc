/*
 * tensor.c - validation of borrowed DLTensors against what a call expects.
 */
#include <stdint.h>
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
    else if (shape[i] <= -2) /* -(s + 2) cannot overflow, unlike -s - 2 at INT64_MIN */
      at += (size_t)snprintf(buf + at, n - at, "%s>=%lld", sep, (long long)-(shape[i] + 2));
    else
      at += (size_t)snprintf(buf + at, n - at, "%s%lld", sep, (long long)shape[i]);
  }
  if (at < n) snprintf(buf + at, n - at, "]");
}

/* Bytes of one element of a dtype that passed dtype_is (sub-byte types pack into bytes). */
static int64_t elem_bytes(DLDataType d) {
  return d.bits >= 8 ? d.bits / 8 : 1;
}

/*
 * Metadata checks that need no expected shape: negative dims or strides, the element count
 * (overflow-checked: a wrapped count of 0 would skip the NULL-data and stride checks below), the
 * address range and the alignment of data + byte_offset. Fills *numel.
 */
static moe_status_t check_layout(const DLTensor *t, const char *name, int64_t *numel) {
  const int64_t esize = elem_bytes(t->dtype);
  int64_t n = 1;
  for (int32_t i = 0; i < t->ndim; ++i) {
    if (t->shape[i] < 0)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected shape[%d] >= 0, given %lld", name,
                      i, (long long)t->shape[i]);
    if (t->strides && t->strides[i] < 0)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected strides[%d] >= 0, given %lld",
                      name, i, (long long)t->strides[i]);
  }
  /* Zero anywhere makes the tensor empty, whatever the other dims are. */
  for (int32_t i = 0; i < t->ndim; ++i)
    if (t->shape[i] == 0) n = 0;
  for (int32_t i = 0; i < t->ndim && n > 0; ++i) {
    if (t->shape[i] > INT64_MAX / esize / n)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "%s: expected at most %lld bytes of elements, given a shape whose size "
                      "overflows it (shape[%d] = %lld)",
                      name, (long long)INT64_MAX, i, (long long)t->shape[i]);
    n *= t->shape[i];
  }
  *numel = n;
  if (n == 0) return MOE_STATUS_SUCCESS; /* data may be NULL; nothing is read or written */
  if (!t->data)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected a data pointer for %lld elements, given NULL", name,
                    (long long)n);
  const uint64_t base = (uint64_t)(uintptr_t)t->data, bytes = (uint64_t)(n * esize);
  if (t->byte_offset > UINT64_MAX - base || base + t->byte_offset > UINT64_MAX - bytes)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: data %p + byte_offset %llu + %llu bytes wraps around the address space",
                    name, t->data, (unsigned long long)t->byte_offset, (unsigned long long)bytes);
  if ((base + t->byte_offset) % (uint64_t)esize)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected data + byte_offset aligned to the element size (%lld bytes), "
                    "given %p + %llu",
                    name, (long long)esize, t->data, (unsigned long long)t->byte_offset);
  return MOE_STATUS_SUCCESS;
}

/* shape[i] >= 0: exact; -1: any; <= -2: at least -(shape[i] + 2) (moe_shape_at_least). */
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
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected a shape array for %d dimensions, given NULL", name, ndim);
  int64_t numel = 0;
  moe_status_t s = check_layout(t, name, &numel);
  if (s) return s;
  int ok = 1;
  for (int32_t i = 0; i < ndim; ++i) {
    if (shape[i] >= 0 && t->shape[i] != shape[i]) ok = 0;
    if (shape[i] <= -2 && t->shape[i] < -(shape[i] + 2)) ok = 0;
  }
  if (!ok) {
    char want[160], got[160];
    want_str(want, sizeof want, ndim, shape);
    shape_str(got, sizeof got, ndim, t->shape);
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected shape %s, given %s", name, want,
                    got);
  }
  /* Strides of an empty tensor are meaningless (numpy exports zeros); only check real data.
   * numel fits int64, so the running products do too. */
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
  int cpu = r->backend == MOE_BACKEND_CPU;
  int dev_ok =
      cpu ? (t->device.device_type == kDLCPU || t->device.device_type == kDLCUDAHost)
          : ((t->device.device_type == kDLCUDA || t->device.device_type == kDLCUDAManaged) &&
             t->device.device_id == r->device_id);
  if (!dev_ok)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected a tensor on %s, given device (type %d, id %d)", name,
                    cpu ? "the CPU (kDLCPU or kDLCUDAHost)"
                        : "the runner's CUDA device (kDLCUDA or kDLCUDAManaged)",
                    (int)t->device.device_type, t->device.device_id);
  return MOE_STATUS_SUCCESS;
}

moe_status_t moe_check_tensor_aligned(const DLTensor *t, const char *name, int32_t align,
                                      const char *why) {
  if (!t || !t->data) return MOE_STATUS_SUCCESS;
  const uint64_t at = (uint64_t)(uintptr_t)t->data + t->byte_offset;
  if (at % (uint64_t)align)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "%s: expected data + byte_offset %d-byte aligned (%s), given %p + %llu", name,
                    align, why, t->data, (unsigned long long)t->byte_offset);
  return MOE_STATUS_SUCCESS;
}

moe_status_t moe_check_tensor_vector_aligned(const moe_runner *r, const DLTensor *t,
                                             const char *name) {
  /* The CUDA kernels read these tensors through TMA (16-byte aligned base addresses) and
   * 16-byte vector loads / stores; a misaligned one would fault on the device and poison the
   * CUDA context, so it is refused here. The CPU backend reads elements one by one. */
  if (r->backend != MOE_BACKEND_CUDA) return MOE_STATUS_SUCCESS;
  return moe_check_tensor_aligned(t, name, MOE_VECTOR_ALIGN,
                                  "TMA and vector access on the CUDA backend");
}

void *moe_tensor_data(const DLTensor *t) {
  /* No arithmetic on a NULL pointer (UB even with offset 0): an empty tensor may have NULL
   * data with any byte_offset. The sum is done on integers, already range-checked. */
  if (!t || !t->data) return NULL;
  return (void *)((uintptr_t)t->data + (uintptr_t)t->byte_offset);
}

int32_t moe_tensor_kdtype(const DLTensor *t) {
  return (t->dtype.code == kDLBfloat) ? MOE_K_BF16 : MOE_K_F32;
}
