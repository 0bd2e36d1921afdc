/*
 * test_abi.c - the ABI of the public header, frozen: sizeof / offsetof of every public struct
 * (LP64), the fixed status / enum values, and the defaults the *_init functions write.
 * A failing static assert here means an ABI break (structs are append-only).
 */
#include <stddef.h>
#include <string.h>

#include "common.h"
#include "moe_trtllm_ep.h"

#define SA(cond) _Static_assert(cond, #cond)

/* Status codes and enum-like values never change. */
SA(sizeof(moe_status_t) == 4);
SA(MOE_STATUS_SUCCESS == 0 && MOE_STATUS_INVALID_ARGUMENT == 1 && MOE_STATUS_NOT_SUPPORTED == 2);
SA(MOE_STATUS_OUT_OF_MEMORY == 3 && MOE_STATUS_CUDA_ERROR == 4 && MOE_STATUS_NO_DEVICE == 5);
SA(MOE_STATUS_INSUFFICIENT_WORKSPACE == 6 && MOE_STATUS_VERSION_MISMATCH == 7);
SA(MOE_STATUS_INVALID_CONFIG == 8 && MOE_STATUS_INTERNAL == 99);
SA(MOE_BACKEND_AUTO == -1 && MOE_BACKEND_CPU == 0 && MOE_BACKEND_CUDA == 1);
SA(MOE_ROUTING_DEFAULT == 0 && MOE_ROUTING_RENORMALIZE == 1 && MOE_ROUTING_DEEPSEEK_V3 == 2);
SA(MOE_ROUTING_LLAMA4 == 3 && MOE_ROUTING_RENORMALIZE_NAIVE == 4 && MOE_ROUTING_TOPK == 5);
SA(MOE_ACTIVATION_SWIGLU == 3 && MOE_ACTIVATION_GEGLU == 4 && MOE_ACTIVATION_RELU2 == 6);
SA(MOE_ACTIVATION_IDENTITY == 7 && MOE_DTYPE_BF16 == 0 && MOE_DTYPE_FP8_E4M3 == 1);
SA(MOE_SCALING_NONE == 0 && MOE_SCALING_PER_TENSOR == 1 && MOE_SCALING_BLOCK == 2);
SA(MOE_WEIGHTS_GEMM1 == 1 && MOE_WEIGHTS_GEMM2 == 2);
SA(MOE_PLAN_TOPK_IDS == 0 && MOE_PLAN_EXPERT_WEIGHTS == 1 && MOE_PLAN_EXPANDED_TO_PERMUTED == 2);
SA(MOE_PLAN_PERMUTED_TO_TOKEN == 3 && MOE_PLAN_PERMUTED_TO_EXPANDED == 4);
SA(MOE_PLAN_CTA_TO_BATCH == 5 && MOE_PLAN_CTA_TO_MN_LIMIT == 6 && MOE_PLAN_NUM_CTAS == 7);
SA(MOE_PLAN_PERMUTED_SIZE == 8 && MOE_PLAN_EXPERT_COUNTS == 9);
SA(kDLCPU == 1 && kDLCUDA == 2 && kDLCUDAManaged == 13);
SA(kDLInt == 0 && kDLUInt == 1 && kDLFloat == 2 && kDLBfloat == 4 && kDLFloat4_e2m1fn == 17);
SA(kDLFloat8_e4m3fn == 10 && kDLFloat8_e5m2 == 12);
SA(MOE_RUNNER_OPTIONS_VERSION == 3 && MOE_PROBLEM_VERSION == 1 && MOE_ROUTING_ARGS_VERSION == 1);
SA(MOE_RUN_ARGS_VERSION == 2 && MOE_PLAN_VERSION == 1 && MOE_CONFIG_INFO_VERSION == 1);

/* DLPack (ABI-identical to dlpack.h 1.x). */
SA(sizeof(DLDevice) == 8 && offsetof(DLDevice, device_id) == 4);
SA(sizeof(DLDataType) == 4 && offsetof(DLDataType, bits) == 1 && offsetof(DLDataType, lanes) == 2);

#if UINTPTR_MAX == UINT64_MAX /* LP64 layouts */
SA(sizeof(DLTensor) == 48);
SA(offsetof(DLTensor, data) == 0 && offsetof(DLTensor, device) == 8);
SA(offsetof(DLTensor, ndim) == 16 && offsetof(DLTensor, dtype) == 20);
SA(offsetof(DLTensor, shape) == 24 && offsetof(DLTensor, strides) == 32);
SA(offsetof(DLTensor, byte_offset) == 40);

/* version 1 was the first 64 bytes; version 2 appended scaling_mode, version 3 sm_budget */
SA(sizeof(moe_runner_options) == 72 && offsetof(moe_runner_options, scaling_mode) == 64);
SA(offsetof(moe_runner_options, sm_budget) == 68);
/* moe_grouped_args: version 1 was the first 128 bytes; version 2 appended count_status,
 * version 3 the FP8 scales (hidden_states_scale, gemm1_input_scale, gemm2_input_scale) */
SA(MOE_GROUPED_ARGS_VERSION == 3 && MOE_LAYOUT_CONTIGUOUS == 0 && MOE_LAYOUT_MASKED == 1);
SA(MOE_GROUPED_COUNTS_NEGATIVE == 1 && MOE_GROUPED_COUNTS_OVER_CAPACITY == 2);
SA(MOE_GROUPED_COUNTS_SUM_OVER_ROWS == 4);
SA(offsetof(moe_grouped_args, capacity) == 8 && offsetof(moe_grouped_args, output) == 88);
SA(offsetof(moe_grouped_args, enable_pdl) == 96 && offsetof(moe_grouped_args, reserved) == 100);
SA(offsetof(moe_grouped_args, count_status) == 128);
SA(offsetof(moe_grouped_args, hidden_states_scale) == 136);
SA(offsetof(moe_grouped_args, gemm1_input_scale) == 144);
SA(offsetof(moe_grouped_args, gemm2_input_scale) == 152 && sizeof(moe_grouped_args) == 160);
SA(offsetof(moe_runner_options, version) == 0 && offsetof(moe_runner_options, backend) == 4);
SA(offsetof(moe_runner_options, device_id) == 8);
SA(offsetof(moe_runner_options, sm_version) == 12);
SA(offsetof(moe_runner_options, activation_dtype) == 16);
SA(offsetof(moe_runner_options, weight_dtype) == 20);
SA(offsetof(moe_runner_options, activation) == 24);
SA(offsetof(moe_runner_options, num_threads) == 28);
SA(offsetof(moe_runner_options, reserved) == 32);

SA(sizeof(moe_problem) == 80);
SA(offsetof(moe_problem, version) == 0 && offsetof(moe_problem, num_experts) == 4);
SA(offsetof(moe_problem, num_tokens) == 8 && offsetof(moe_problem, top_k) == 16);
SA(offsetof(moe_problem, local_expert_offset) == 20);
SA(offsetof(moe_problem, local_num_experts) == 24 && offsetof(moe_problem, reserved0) == 28);
SA(offsetof(moe_problem, hidden_size) == 32 && offsetof(moe_problem, intermediate_size) == 40);
SA(offsetof(moe_problem, reserved) == 48);

SA(sizeof(moe_routing_args) == 88);
SA(offsetof(moe_routing_args, version) == 0 && offsetof(moe_routing_args, method) == 4);
SA(offsetof(moe_routing_args, logits) == 8 && offsetof(moe_routing_args, bias) == 16);
SA(offsetof(moe_routing_args, topk_ids) == 24 && offsetof(moe_routing_args, topk_weights) == 32);
SA(offsetof(moe_routing_args, topk_packed) == 40 && offsetof(moe_routing_args, n_group) == 48);
SA(offsetof(moe_routing_args, topk_group) == 52);
SA(offsetof(moe_routing_args, routed_scaling_factor) == 56);
SA(offsetof(moe_routing_args, enable_pdl) == 60 && offsetof(moe_routing_args, reserved) == 64);

/* version 1 was the first 120 bytes; version 2 appended the FP8 scale tensors */
SA(sizeof(moe_run_args) == 144 && offsetof(moe_run_args, hidden_states_scale) == 120);
SA(offsetof(moe_run_args, gemm1_input_scale) == 128);
SA(offsetof(moe_run_args, gemm2_input_scale) == 136);
SA(offsetof(moe_run_args, version) == 0 && offsetof(moe_run_args, do_finalize) == 4);
SA(offsetof(moe_run_args, hidden_states) == 8 && offsetof(moe_run_args, gemm1_weights) == 16);
SA(offsetof(moe_run_args, gemm2_weights) == 24 && offsetof(moe_run_args, gemm1_bias) == 32);
SA(offsetof(moe_run_args, gemm2_bias) == 40 && offsetof(moe_run_args, gemm1_alpha) == 48);
SA(offsetof(moe_run_args, gemm1_beta) == 56 && offsetof(moe_run_args, gemm1_clamp_limit) == 64);
SA(offsetof(moe_run_args, output) == 72 && offsetof(moe_run_args, permuted_output) == 80);
SA(offsetof(moe_run_args, enable_pdl) == 88 && offsetof(moe_run_args, reserved) == 92);

SA(sizeof(moe_plan) == 104);
SA(offsetof(moe_plan, version) == 0 && offsetof(moe_plan, config) == 4);
SA(offsetof(moe_plan, tile) == 8 && offsetof(moe_plan, cluster_size) == 12);
SA(offsetof(moe_plan, num_tokens) == 16 && offsetof(moe_plan, num_experts) == 24);
SA(offsetof(moe_plan, top_k) == 28 && offsetof(moe_plan, local_expert_offset) == 32);
SA(offsetof(moe_plan, local_num_experts) == 36 && offsetof(moe_plan, hidden_size) == 40);
SA(offsetof(moe_plan, intermediate_size) == 48 && offsetof(moe_plan, max_padded_rows) == 56);
SA(offsetof(moe_plan, max_ctas) == 64 && offsetof(moe_plan, workspace) == 72);
SA(offsetof(moe_plan, workspace_bytes) == 80 && offsetof(moe_plan, runner) == 88);
SA(offsetof(moe_plan, state) == 96 && offsetof(moe_plan, backend) == 100);

SA(sizeof(moe_config_info) == 104);
SA(offsetof(moe_config_info, version) == 0 && offsetof(moe_config_info, index) == 4);
SA(offsetof(moe_config_info, tile) == 8 && offsetof(moe_config_info, cta_tile) == 12);
SA(offsetof(moe_config_info, cluster_size) == 16);
SA(offsetof(moe_config_info, gemm1_block_m) == 20);
SA(offsetof(moe_config_info, gemm2_block_m) == 24 && offsetof(moe_config_info, block_k) == 28);
SA(offsetof(moe_config_info, stages) == 32 && offsetof(moe_config_info, sm_version) == 36);
SA(offsetof(moe_config_info, name) == 40);

SA(sizeof(moe_plan_view) == 128);
SA(offsetof(moe_plan_view, device_type) == 0 && offsetof(moe_plan_view, device_id) == 4);
SA(offsetof(moe_plan_view, num_tokens) == 8 && offsetof(moe_plan_view, top_k) == 16);
SA(offsetof(moe_plan_view, num_experts) == 20 && offsetof(moe_plan_view, tile) == 24);
SA(offsetof(moe_plan_view, cluster_size) == 28 && offsetof(moe_plan_view, max_padded_rows) == 32);
SA(offsetof(moe_plan_view, max_ctas) == 40 && offsetof(moe_plan_view, topk_ids) == 48);
SA(offsetof(moe_plan_view, expert_weights) == 56);
SA(offsetof(moe_plan_view, expanded_to_permuted) == 64);
SA(offsetof(moe_plan_view, permuted_to_token) == 72);
SA(offsetof(moe_plan_view, permuted_to_expanded) == 80);
SA(offsetof(moe_plan_view, cta_to_batch) == 88 && offsetof(moe_plan_view, cta_to_mn_limit) == 96);
SA(offsetof(moe_plan_view, num_ctas) == 104 && offsetof(moe_plan_view, permuted_size) == 112);
SA(offsetof(moe_plan_view, expert_counts) == 120);

/* moe_trtllm_ep.h */
SA(MOE_EP_TRANSPORT_NCCL == 0 && MOE_EP_TRANSPORT_LOOPBACK == 1);
SA(MOE_EP_OPTIONS_VERSION == 1 && MOE_EP_FORWARD_ARGS_VERSION == 1);
SA(sizeof(moe_ep_options) == 96 && offsetof(moe_ep_options, transport) == 4);
SA(offsetof(moe_ep_options, comm) == 8 && offsetof(moe_ep_options, rank) == 16);
SA(offsetof(moe_ep_options, num_experts) == 20 &&
   offsetof(moe_ep_options, local_num_experts) == 24);
SA(offsetof(moe_ep_options, top_k) == 28 && offsetof(moe_ep_options, hidden_size) == 32);
SA(offsetof(moe_ep_options, intermediate_size) == 40 && offsetof(moe_ep_options, max_tokens) == 48);
SA(offsetof(moe_ep_options, max_recv_rows) == 56 && offsetof(moe_ep_options, config) == 64);
SA(offsetof(moe_ep_options, reserved) == 68);
SA(sizeof(moe_ep_forward_args) == 128 && offsetof(moe_ep_forward_args, reserved0) == 4);
SA(offsetof(moe_ep_forward_args, hidden_states) == 8 &&
   offsetof(moe_ep_forward_args, topk_ids) == 16);
SA(offsetof(moe_ep_forward_args, topk_weights) == 24);
SA(offsetof(moe_ep_forward_args, gemm1_weights) == 32);
SA(offsetof(moe_ep_forward_args, gemm2_weights) == 40);
SA(offsetof(moe_ep_forward_args, gemm1_bias) == 48 &&
   offsetof(moe_ep_forward_args, gemm2_bias) == 56);
SA(offsetof(moe_ep_forward_args, gemm1_alpha) == 64);
SA(offsetof(moe_ep_forward_args, gemm1_beta) == 72);
SA(offsetof(moe_ep_forward_args, gemm1_clamp_limit) == 80);
SA(offsetof(moe_ep_forward_args, output) == 88 && offsetof(moe_ep_forward_args, reserved) == 96);
SA(sizeof(moe_ep_timings) == 40 && offsetof(moe_ep_timings, sent_rows) == 24);
SA(offsetof(moe_ep_timings, recv_rows) == 32);
#endif

/* The *_INIT macros and the *_init functions agree. */
static void check_inits(void) {
  int32_t ma = -1, mi = -1, pa = -1;
  CHECK_OK(moe_get_version(&ma, &mi, &pa));
  CHECK(ma == MOE_VERSION_MAJOR && mi == MOE_VERSION_MINOR && pa == MOE_VERSION_PATCH,
        "moe_get_version %d.%d.%d", ma, mi, pa);
  CHECK_OK(moe_get_version(NULL, NULL, NULL));

  moe_runner_options o, om = MOE_RUNNER_OPTIONS_INIT;
  memset(&o, 0x5A, sizeof o);
  CHECK_OK(moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION));
  CHECK(memcmp(&o, &om, sizeof o) == 0, "moe_runner_options_init != MOE_RUNNER_OPTIONS_INIT");
  CHECK(o.backend == MOE_BACKEND_AUTO && o.activation == MOE_ACTIVATION_SWIGLU &&
            o.scaling_mode == MOE_SCALING_NONE,
        "runner options defaults");
  /* An older version's init writes only that version's prefix (an old caller's struct is
   * that short). */
  memset(&o, 0x5A, sizeof o);
  CHECK_OK(moe_runner_options_init(&o, 1));
  CHECK(o.version == 1 && o.backend == MOE_BACKEND_AUTO && o.scaling_mode == 0x5A5A5A5A,
        "moe_runner_options_init(v1) wrote past the version-1 struct");

  moe_problem p, pm = MOE_PROBLEM_INIT;
  memset(&p, 0x5A, sizeof p);
  CHECK_OK(moe_problem_init(&p, MOE_PROBLEM_VERSION));
  CHECK(memcmp(&p, &pm, sizeof p) == 0, "moe_problem_init != MOE_PROBLEM_INIT");

  moe_routing_args ra;
  memset(&ra, 0x5A, sizeof ra);
  CHECK_OK(moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION));
  CHECK(ra.version == MOE_ROUTING_ARGS_VERSION && ra.method == MOE_ROUTING_RENORMALIZE &&
            ra.logits == NULL && ra.bias == NULL && ra.topk_ids == NULL &&
            ra.topk_weights == NULL && ra.topk_packed == NULL && ra.n_group == 1 &&
            ra.topk_group == 1 && ra.routed_scaling_factor == 1.0f && ra.enable_pdl == 1,
        "moe_routing_args_init defaults");
  for (int i = 0; i < 6; ++i) CHECK(ra.reserved[i] == 0, "routing args reserved[%d]", i);

  moe_run_args rn;
  memset(&rn, 0x5A, sizeof rn);
  CHECK_OK(moe_run_args_init(&rn, MOE_RUN_ARGS_VERSION));
  CHECK(rn.version == MOE_RUN_ARGS_VERSION && rn.do_finalize == 1 && rn.enable_pdl == 1 &&
            rn.hidden_states == NULL && rn.gemm1_weights == NULL && rn.gemm2_weights == NULL &&
            rn.gemm1_bias == NULL && rn.gemm2_bias == NULL && rn.gemm1_alpha == NULL &&
            rn.gemm1_beta == NULL && rn.gemm1_clamp_limit == NULL && rn.output == NULL &&
            rn.permuted_output == NULL,
        "moe_run_args_init defaults");
  for (int i = 0; i < 7; ++i) CHECK(rn.reserved[i] == 0, "run args reserved[%d]", i);
  CHECK(rn.hidden_states_scale == NULL && rn.gemm1_input_scale == NULL &&
            rn.gemm2_input_scale == NULL,
        "moe_run_args_init: FP8 scales NULL");
  memset(&rn, 0x5A, sizeof rn);
  CHECK_OK(moe_run_args_init(&rn, 1));
  {
    unsigned char tail[sizeof rn - offsetof(moe_run_args, hidden_states_scale)];
    memcpy(tail, (const char *)&rn + offsetof(moe_run_args, hidden_states_scale), sizeof tail);
    int untouched = 1;
    for (size_t i = 0; i < sizeof tail; ++i) untouched &= tail[i] == 0x5A;
    CHECK(rn.version == 1 && rn.do_finalize == 1 && untouched,
          "moe_run_args_init(v1) wrote past the version-1 struct");
  }

  /* moe_grouped_args: version 3 clears the FP8 scales; versions 1 and 2 write no byte past
   * their structs */
  moe_grouped_args ga;
  memset(&ga, 0x5A, sizeof ga);
  CHECK_OK(moe_grouped_args_init(&ga, MOE_GROUPED_ARGS_VERSION));
  CHECK(ga.version == MOE_GROUPED_ARGS_VERSION && ga.layout == MOE_LAYOUT_CONTIGUOUS &&
            ga.enable_pdl == 1 && ga.count_status == NULL && ga.hidden_states_scale == NULL &&
            ga.gemm1_input_scale == NULL && ga.gemm2_input_scale == NULL,
        "moe_grouped_args_init defaults");
  for (uint32_t v = 1; v <= 2; ++v) {
    const size_t end = v == 1 ? offsetof(moe_grouped_args, count_status)
                              : offsetof(moe_grouped_args, hidden_states_scale);
    memset(&ga, 0x5A, sizeof ga);
    CHECK_OK(moe_grouped_args_init(&ga, v));
    int untouched = 1;
    for (size_t i = end; i < sizeof ga; ++i) untouched &= ((const unsigned char *)&ga)[i] == 0x5A;
    CHECK(ga.version == v && ga.enable_pdl == 1 && untouched,
          "moe_grouped_args_init(v%u) wrote past the version-%u struct", v, v);
  }

  moe_plan pl;
  memset(&pl, 0x5A, sizeof pl);
  CHECK_OK(moe_plan_init(&pl, MOE_PLAN_VERSION));
  CHECK(pl.state == 0, "moe_plan_init leaves the plan unprepared");

  moe_ep_options eo;
  memset(&eo, 0x5A, sizeof eo);
  CHECK_OK(moe_ep_options_init(&eo, MOE_EP_OPTIONS_VERSION));
  CHECK(eo.version == MOE_EP_OPTIONS_VERSION && eo.transport == MOE_EP_TRANSPORT_NCCL &&
            eo.comm == NULL && eo.rank == -1 && eo.num_experts == 0 && eo.top_k == 0 &&
            eo.max_tokens == 0 && eo.max_recv_rows == 0 && eo.config == -1,
        "moe_ep_options_init defaults");
  for (int i = 0; i < 7; ++i) CHECK(eo.reserved[i] == 0, "ep options reserved[%d]", i);
  moe_ep_forward_args ea;
  memset(&ea, 0x5A, sizeof ea);
  CHECK_OK(moe_ep_forward_args_init(&ea, MOE_EP_FORWARD_ARGS_VERSION));
  CHECK(ea.version == MOE_EP_FORWARD_ARGS_VERSION && ea.reserved0 == 0 &&
            ea.hidden_states == NULL && ea.topk_ids == NULL && ea.topk_weights == NULL &&
            ea.output == NULL,
        "moe_ep_forward_args_init defaults");

  for (int s = -2; s < 102; ++s) CHECK(moe_status_string(s) != NULL, "status string %d NULL", s);
  CHECK(moe_get_last_error() != NULL, "moe_get_last_error NULL");
  int32_t n = -1;
  CHECK_OK(moe_cuda_device_count(&n));
  CHECK(n >= 0, "device count %d", n);
}

int main(void) {
  check_inits();
  return tc_summary("test_abi");
}
