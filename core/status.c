/*
 * status.c - status strings and the thread-local last-error message.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char g_last_error[1024];

moe_status_t moe_fail(moe_status_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
  va_end(ap);
  return status;
}

void moe_clear_error(void) {
  g_last_error[0] = '\0';
}

MOE_API const char *moe_get_last_error(void) {
  return g_last_error;
}

MOE_API const char *moe_status_string(moe_status_t status) {
  switch (status) {
    case MOE_STATUS_SUCCESS:
      return "success";
    case MOE_STATUS_INVALID_ARGUMENT:
      return "invalid argument";
    case MOE_STATUS_NOT_SUPPORTED:
      return "not supported";
    case MOE_STATUS_OUT_OF_MEMORY:
      return "out of memory";
    case MOE_STATUS_CUDA_ERROR:
      return "CUDA error";
    case MOE_STATUS_NO_DEVICE:
      return "no CUDA device";
    case MOE_STATUS_INSUFFICIENT_WORKSPACE:
      return "insufficient workspace";
    case MOE_STATUS_VERSION_MISMATCH:
      return "struct version mismatch";
    case MOE_STATUS_INVALID_CONFIG:
      return "invalid config";
    case MOE_STATUS_INTERNAL:
      return "internal error";
    default:
      return "unknown status";
  }
}

MOE_API moe_status_t moe_get_version(int32_t *major, int32_t *minor, int32_t *patch) {
  if (major) *major = MOE_VERSION_MAJOR;
  if (minor) *minor = MOE_VERSION_MINOR;
  if (patch) *patch = MOE_VERSION_PATCH;
  return MOE_STATUS_SUCCESS;
}
