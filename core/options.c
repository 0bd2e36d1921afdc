/*
 * options.c - the *_init functions of the versioned structs.
 *
 * Each accepts 1 <= version <= the current version and fills the defaults of that version
 * (append-only structs: an older caller's struct is a prefix of ours).
 */
#include <stddef.h>
#include <string.h>

#include "internal.h"

/* A version-v struct is the prefix of ours up to the first field a later version appended:
 * the library reads and writes no byte past it (an older caller's struct is that short). */
size_t moe_runner_options_size(uint32_t version) {
  if (version >= 3) return sizeof(moe_runner_options);
  return version == 2 ? offsetof(moe_runner_options, sm_budget)
                      : offsetof(moe_runner_options, scaling_mode);
}

size_t moe_run_args_size(uint32_t version) {
  return version >= 2 ? sizeof(moe_run_args) : offsetof(moe_run_args, hidden_states_scale);
}

size_t moe_grouped_args_size(uint32_t version) {
  if (version >= 3) return sizeof(moe_grouped_args);
  return version == 2 ? offsetof(moe_grouped_args, hidden_states_scale)
                      : offsetof(moe_grouped_args, count_status);
}

static moe_status_t check_init(const void *ptr, const char *name, uint32_t version,
                               uint32_t current) {
  moe_clear_error();
  if (!ptr) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "%s: expected a non-NULL pointer", name);
  if (version < 1 || version > current)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "%s version: expected 1..%u, given %u", name,
                    current, version);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_options_init(moe_runner_options *opts, uint32_t version) {
  moe_status_t s = check_init(opts, "opts", version, MOE_RUNNER_OPTIONS_VERSION);
  if (s) return s;
  const moe_runner_options def = MOE_RUNNER_OPTIONS_INIT;
  memcpy(opts, &def, moe_runner_options_size(version));
  opts->version = version;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_problem_init(moe_problem *problem, uint32_t version) {
  moe_status_t s = check_init(problem, "problem", version, MOE_PROBLEM_VERSION);
  if (s) return s;
  memset(problem, 0, sizeof *problem);
  problem->version = version;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_routing_args_init(moe_routing_args *args, uint32_t version) {
  moe_status_t s = check_init(args, "args", version, MOE_ROUTING_ARGS_VERSION);
  if (s) return s;
  memset(args, 0, sizeof *args);
  args->version = version;
  args->method = MOE_ROUTING_RENORMALIZE;
  args->n_group = 1;
  args->topk_group = 1;
  args->routed_scaling_factor = 1.0f;
  args->enable_pdl = 1;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_run_args_init(moe_run_args *args, uint32_t version) {
  moe_status_t s = check_init(args, "args", version, MOE_RUN_ARGS_VERSION);
  if (s) return s;
  memset(args, 0, moe_run_args_size(version));
  args->version = version;
  args->do_finalize = 1;
  args->enable_pdl = 1;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_plan_init(moe_plan *plan, uint32_t version) {
  moe_status_t s = check_init(plan, "plan", version, MOE_PLAN_VERSION);
  if (s) return s;
  memset(plan, 0, sizeof *plan);
  plan->version = version;
  return MOE_STATUS_SUCCESS;
}
