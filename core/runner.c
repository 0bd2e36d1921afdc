/*
 * runner.c - runner creation (backend resolution) and workspace sizing.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int activation_known(int32_t a) {
  return a == MOE_ACTIVATION_SWIGLU || a == MOE_ACTIVATION_GEGLU || a == MOE_ACTIVATION_RELU2 ||
         a == MOE_ACTIVATION_IDENTITY;
}

/* opts->version was checked by moe_runner_create before the struct was copied. */
static moe_status_t check_options(const moe_runner_options *o) {
  if (o->backend < MOE_BACKEND_AUTO || o->backend > MOE_BACKEND_CUDA)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->backend: expected -1 (AUTO), 0 (CPU) or 1 (CUDA), given %d", o->backend);
  if (o->device_id < 0)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "opts->device_id: expected >= 0, given %d",
                    o->device_id);
  if (o->sm_version != 0 && o->sm_version != 90)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "opts->sm_version: expected 0 (ask the device) or 90 (the only catalogue), "
                    "given %d",
                    o->sm_version);
  moe_status_t s = moe_check_precision_options(o);
  if (s) return s;
  if (!activation_known(o->activation))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->activation: expected 3 (SwiGLU), 4 (GeGLU), 6 (ReLU2) or 7 "
                    "(Identity), given %d",
                    o->activation);
  if (o->num_threads < 0 || o->num_threads > 1024)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "opts->num_threads: expected 0..1024, given %d",
                    o->num_threads);
  if (o->sm_budget < 0 || o->sm_budget > 65535)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "opts->sm_budget: expected 0 (all SMs) or 1..65535 SMs, given %d",
                    o->sm_budget);
  for (int i = 0; i < 8; ++i)
    if (o->reserved[i])
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "opts->reserved[%d]: expected 0, given %d", i,
                      o->reserved[i]);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_create(const moe_runner_options *opts, moe_runner **out) {
  moe_clear_error();
  if (!out) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "out: expected a non-NULL pointer");
  *out = NULL;
  moe_runner_options o = MOE_RUNNER_OPTIONS_INIT;
  if (opts) {
    if (opts->version < 1 || opts->version > MOE_RUNNER_OPTIONS_VERSION)
      return moe_fail(MOE_STATUS_VERSION_MISMATCH, "opts->version: expected 1..%d, given %u",
                      MOE_RUNNER_OPTIONS_VERSION, opts->version);
    memcpy(&o, opts, moe_runner_options_size(opts->version)); /* later fields: defaults */
  }
  moe_status_t s = check_options(&o);
  if (s) return s;

  moe_runner r;
  memset(&r, 0, sizeof r);
  r.opts = o;
  r.device_id = o.device_id;
  r.num_threads = o.num_threads;
  r.gated = o.activation == MOE_ACTIVATION_SWIGLU || o.activation == MOE_ACTIVATION_GEGLU;
  r.sm_version = 90;
  if (o.backend == MOE_BACKEND_CPU) {
    r.backend = MOE_BACKEND_CPU;
  } else {
    int32_t sm = 0, sms = 0;
    moe_status_t probe = moe_gpu_probe(o.device_id, &sm, &sms);
    if (probe == MOE_STATUS_SUCCESS && sm != 90) {
      probe = moe_fail(MOE_STATUS_NOT_SUPPORTED,
                       "device %d: compute capability %d.%d has no kernels in this build "
                       "(sm_90a only)",
                       o.device_id, sm / 10, sm % 10);
    }
    if (o.backend == MOE_BACKEND_AUTO) {
      r.backend = probe == MOE_STATUS_SUCCESS ? MOE_BACKEND_CUDA : MOE_BACKEND_CPU;
      moe_clear_error();
    } else {
      r.backend = MOE_BACKEND_CUDA;
      if (probe != MOE_STATUS_SUCCESS && o.sm_version == 0) return probe;
    }
    if (r.backend == MOE_BACKEND_CUDA) {
      r.has_device = probe == MOE_STATUS_SUCCESS;
      r.num_sms = sms;
      moe_clear_error();
    }
  }
  moe_runner *h = (moe_runner *)malloc(sizeof *h);
  if (!h) return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "runner: host allocation failed");
  *h = r;
  *out = h;
  return MOE_STATUS_SUCCESS;
}

MOE_API void moe_runner_destroy(moe_runner *runner) {
  if (runner) moe_registry_forget_runner(runner); /* its plans die with it */
  free(runner);
}

MOE_API moe_status_t moe_runner_get_backend(const moe_runner *r, int32_t *backend) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!backend)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "backend: expected a non-NULL pointer");
  *backend = r->backend;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_get_workspace_size(const moe_runner *r, const moe_problem *p,
                                                   int32_t config, size_t *bytes) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!bytes) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "bytes: expected a non-NULL pointer");
  *bytes = 0;
  moe_status_t s = moe_check_problem(p, "problem");
  if (s) return s;
  s = moe_check_config(r, p, config, "config");
  if (s) return s;
  const moe_config_row *row = moe_catalogue_row(r, config);
  moe_layout l;
  s = moe_compute_layout(r, p, row->tile, row->cluster, &l);
  if (s) return s;
  *bytes = (size_t)l.total_bytes;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_cuda_device_count(int32_t *count) {
  moe_clear_error();
  if (!count) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "count: expected a non-NULL pointer");
  *count = moe_gpu_devices();
  return MOE_STATUS_SUCCESS;
}
