/*
 * moe_bind_decls.i - the declarations SWIG wraps, shared by the Python and Java modules.
 * The implementations are the static inline helpers of moe_bind.h; each language's .i sets its
 * typemaps for `const DLTensor *`, `moe_plan *`, `moe_cuda_stream_t` and its %exception first.
 */

typedef struct moe_runner moe_runner;

/* Constants of the public header (bindings cannot see the header's macros). Java declares
   its own in io.moetrtllm.Moe. */
#if !defined(SWIGJAVA)
%constant int STATUS_SUCCESS = MOE_STATUS_SUCCESS;
%constant int STATUS_INVALID_ARGUMENT = MOE_STATUS_INVALID_ARGUMENT;
%constant int STATUS_NOT_SUPPORTED = MOE_STATUS_NOT_SUPPORTED;
%constant int STATUS_OUT_OF_MEMORY = MOE_STATUS_OUT_OF_MEMORY;
%constant int STATUS_CUDA_ERROR = MOE_STATUS_CUDA_ERROR;
%constant int STATUS_NO_DEVICE = MOE_STATUS_NO_DEVICE;
%constant int STATUS_INSUFFICIENT_WORKSPACE = MOE_STATUS_INSUFFICIENT_WORKSPACE;
%constant int STATUS_VERSION_MISMATCH = MOE_STATUS_VERSION_MISMATCH;
%constant int STATUS_INVALID_CONFIG = MOE_STATUS_INVALID_CONFIG;
%constant int STATUS_INTERNAL = MOE_STATUS_INTERNAL;
%constant int BACKEND_AUTO = MOE_BACKEND_AUTO;
%constant int BACKEND_CPU = MOE_BACKEND_CPU;
%constant int BACKEND_CUDA = MOE_BACKEND_CUDA;
%constant int ROUTING_DEFAULT = MOE_ROUTING_DEFAULT;
%constant int ROUTING_RENORMALIZE = MOE_ROUTING_RENORMALIZE;
%constant int ROUTING_DEEPSEEK_V3 = MOE_ROUTING_DEEPSEEK_V3;
%constant int ROUTING_LLAMA4 = MOE_ROUTING_LLAMA4;
%constant int ROUTING_RENORMALIZE_NAIVE = MOE_ROUTING_RENORMALIZE_NAIVE;
%constant int ROUTING_TOPK = MOE_ROUTING_TOPK;
%constant int ACTIVATION_SWIGLU = MOE_ACTIVATION_SWIGLU;
%constant int ACTIVATION_GEGLU = MOE_ACTIVATION_GEGLU;
%constant int ACTIVATION_RELU2 = MOE_ACTIVATION_RELU2;
%constant int ACTIVATION_IDENTITY = MOE_ACTIVATION_IDENTITY;
%constant int DTYPE_BF16 = MOE_DTYPE_BF16;
%constant int DTYPE_FP8_E4M3 = MOE_DTYPE_FP8_E4M3;
%constant int SCALING_NONE = MOE_SCALING_NONE;
%constant int SCALING_PER_TENSOR = MOE_SCALING_PER_TENSOR;
%constant int SCALING_BLOCK = MOE_SCALING_BLOCK;
%constant int LAYOUT_CONTIGUOUS = MOE_LAYOUT_CONTIGUOUS;
%constant int LAYOUT_MASKED = MOE_LAYOUT_MASKED;
%constant int WEIGHTS_GEMM1 = MOE_WEIGHTS_GEMM1;
%constant int WEIGHTS_GEMM2 = MOE_WEIGHTS_GEMM2;
%constant int PLAN_TOPK_IDS = MOE_PLAN_TOPK_IDS;
%constant int PLAN_EXPERT_WEIGHTS = MOE_PLAN_EXPERT_WEIGHTS;
%constant int PLAN_EXPANDED_TO_PERMUTED = MOE_PLAN_EXPANDED_TO_PERMUTED;
%constant int PLAN_PERMUTED_TO_TOKEN = MOE_PLAN_PERMUTED_TO_TOKEN;
%constant int PLAN_PERMUTED_TO_EXPANDED = MOE_PLAN_PERMUTED_TO_EXPANDED;
%constant int PLAN_CTA_TO_BATCH = MOE_PLAN_CTA_TO_BATCH;
%constant int PLAN_CTA_TO_MN_LIMIT = MOE_PLAN_CTA_TO_MN_LIMIT;
%constant int PLAN_NUM_CTAS = MOE_PLAN_NUM_CTAS;
%constant int PLAN_PERMUTED_SIZE = MOE_PLAN_PERMUTED_SIZE;
%constant int PLAN_EXPERT_COUNTS = MOE_PLAN_EXPERT_COUNTS;
#endif

int32_t moe_b_version_major(void);
int32_t moe_b_version_minor(void);
int32_t moe_b_version_patch(void);
const char *moe_b_status_string(int32_t status);
int32_t moe_b_cuda_device_count(void);

moe_runner *moe_b_runner_create(int32_t backend, int32_t device_id, int32_t sm_version,
                                int32_t activation, int32_t num_threads,
                                int32_t activation_dtype, int32_t weight_dtype,
                                int32_t scaling_mode);
void moe_b_runner_destroy(moe_runner *r);
int32_t moe_b_runner_backend(const moe_runner *r);
int32_t moe_b_num_configs(const moe_runner *r);
int32_t moe_b_valid_config_count(const moe_runner *r, int32_t num_experts, int64_t num_tokens,
                                 int32_t top_k, int32_t local_expert_offset,
                                 int32_t local_num_experts, int64_t hidden_size,
                                 int64_t intermediate_size);
int32_t moe_b_valid_config_at(const moe_runner *r, int32_t num_experts, int64_t num_tokens,
                              int32_t top_k, int32_t local_expert_offset,
                              int32_t local_num_experts, int64_t hidden_size,
                              int64_t intermediate_size, int32_t i);
int32_t moe_b_default_config(const moe_runner *r, int32_t num_experts, int64_t num_tokens,
                             int32_t top_k, int32_t local_expert_offset,
                             int32_t local_num_experts, int64_t hidden_size,
                             int64_t intermediate_size);
int32_t moe_b_config_field(const moe_runner *r, int32_t config, int32_t field);
const char *moe_b_config_name(const moe_runner *r, int32_t config);
int32_t moe_b_cluster_size(const moe_runner *r, int32_t config);
int64_t moe_b_workspace_size(const moe_runner *r, int32_t num_experts, int64_t num_tokens,
                             int32_t top_k, int32_t local_expert_offset,
                             int32_t local_num_experts, int64_t hidden_size,
                             int64_t intermediate_size, int32_t config);
int64_t moe_b_weights_prepared_size(const moe_runner *r, int32_t num_experts,
                                    int64_t num_tokens, int32_t top_k,
                                    int32_t local_expert_offset, int32_t local_num_experts,
                                    int64_t hidden_size, int64_t intermediate_size,
                                    int32_t which);
void moe_b_weights_prepare(const moe_runner *r, int32_t num_experts, int64_t num_tokens,
                           int32_t top_k, int32_t local_expert_offset, int32_t local_num_experts,
                           int64_t hidden_size, int64_t intermediate_size, int32_t which,
                           const DLTensor *canonical, const DLTensor *prepared,
                           moe_cuda_stream_t stream);
void moe_b_weights_prepare_scaled(const moe_runner *r, int32_t num_experts, int64_t num_tokens,
                                  int32_t top_k, int32_t local_expert_offset,
                                  int32_t local_num_experts, int64_t hidden_size,
                                  int64_t intermediate_size, int32_t which,
                                  const DLTensor *canonical, const DLTensor *canonical_scales,
                                  const DLTensor *prepared, moe_cuda_stream_t stream);
void moe_b_routing_prepare(moe_runner *r, int32_t num_experts, int64_t num_tokens,
                           int32_t top_k, int32_t local_expert_offset, int32_t local_num_experts,
                           int64_t hidden_size, int64_t intermediate_size, int32_t config,
                           int32_t method, const DLTensor *logits, const DLTensor *bias,
                           const DLTensor *topk_ids, const DLTensor *topk_weights,
                           const DLTensor *topk_packed, int32_t n_group, int32_t topk_group,
                           float routed_scaling_factor, int32_t enable_pdl,
                           const DLTensor *workspace, moe_plan *plan, moe_cuda_stream_t stream);
void moe_b_run(moe_runner *r, int32_t num_experts, int64_t num_tokens, int32_t top_k,
               int32_t local_expert_offset, int32_t local_num_experts, int64_t hidden_size,
               int64_t intermediate_size, int32_t config, const moe_plan *plan,
               int32_t do_finalize, const DLTensor *hidden_states,
               const DLTensor *gemm1_weights, const DLTensor *gemm2_weights,
               const DLTensor *gemm1_bias, const DLTensor *gemm2_bias,
               const DLTensor *gemm1_alpha, const DLTensor *gemm1_beta,
               const DLTensor *gemm1_clamp_limit, const DLTensor *output,
               const DLTensor *permuted_output, const DLTensor *hidden_states_scale, const DLTensor *gemm1_input_scale, const DLTensor *gemm2_input_scale, int32_t enable_pdl, const DLTensor *workspace,
               moe_cuda_stream_t stream);
void moe_b_forward(moe_runner *r, int32_t num_experts, int64_t num_tokens, int32_t top_k,
                   int32_t local_expert_offset, int32_t local_num_experts, int64_t hidden_size,
                   int64_t intermediate_size, int32_t method, const DLTensor *logits,
                   const DLTensor *bias, const DLTensor *topk_ids,
                   const DLTensor *topk_weights, const DLTensor *topk_packed, int32_t n_group,
                   int32_t topk_group, float routed_scaling_factor, int32_t do_finalize,
                   const DLTensor *hidden_states, const DLTensor *gemm1_weights,
                   const DLTensor *gemm2_weights, const DLTensor *gemm1_bias,
                   const DLTensor *gemm2_bias, const DLTensor *gemm1_alpha,
                   const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit,
                   const DLTensor *output, const DLTensor *permuted_output, const DLTensor *hidden_states_scale, const DLTensor *gemm1_input_scale, const DLTensor *gemm2_input_scale, int32_t enable_pdl,
                   const DLTensor *workspace, moe_cuda_stream_t stream);
int32_t moe_b_autotune(moe_runner *r, int32_t num_experts, int64_t num_tokens, int32_t top_k,
                       int32_t local_expert_offset, int32_t local_num_experts,
                       int64_t hidden_size, int64_t intermediate_size, int32_t method,
                       const DLTensor *logits, const DLTensor *bias, const DLTensor *topk_ids,
                       const DLTensor *topk_weights, const DLTensor *topk_packed,
                       int32_t n_group, int32_t topk_group, float routed_scaling_factor,
                       int32_t do_finalize, const DLTensor *hidden_states,
                       const DLTensor *gemm1_weights, const DLTensor *gemm2_weights,
                       const DLTensor *gemm1_bias, const DLTensor *gemm2_bias,
                       const DLTensor *gemm1_alpha, const DLTensor *gemm1_beta,
                       const DLTensor *gemm1_clamp_limit, const DLTensor *output,
                       const DLTensor *permuted_output, const DLTensor *hidden_states_scale, const DLTensor *gemm1_input_scale, const DLTensor *gemm2_input_scale, int32_t enable_pdl,
                       const DLTensor *workspace, int32_t iterations,
                       const DLTensor *configs_out, const DLTensor *times_out,
                       moe_cuda_stream_t stream);
int64_t moe_b_grouped_workspace_size(const moe_runner *r, int32_t num_experts,
                                     int64_t num_tokens, int32_t top_k,
                                     int32_t local_expert_offset, int32_t local_num_experts,
                                     int64_t hidden_size, int64_t intermediate_size,
                                     int32_t config);
void moe_b_run_grouped(moe_runner *r, int32_t num_experts, int64_t num_tokens, int32_t top_k,
                       int32_t local_expert_offset, int32_t local_num_experts,
                       int64_t hidden_size, int64_t intermediate_size, int32_t config,
                       int32_t layout, int64_t capacity, const DLTensor *hidden_states,
                       const DLTensor *expert_counts, const DLTensor *gemm1_weights,
                       const DLTensor *gemm2_weights, const DLTensor *gemm1_bias,
                       const DLTensor *gemm2_bias, const DLTensor *gemm1_alpha,
                       const DLTensor *gemm1_beta, const DLTensor *gemm1_clamp_limit,
                       const DLTensor *output, int32_t enable_pdl, const DLTensor *workspace,
                       moe_cuda_stream_t stream);
int64_t moe_b_plan_field(const moe_plan *plan, int32_t field);
int64_t moe_b_plan_read_count(const moe_runner *r, const moe_plan *plan,
                              const DLTensor *workspace, int32_t table,
                              moe_cuda_stream_t stream);
void moe_b_plan_read(const moe_runner *r, const moe_plan *plan, const DLTensor *workspace,
                     int32_t table, const DLTensor *dst, moe_cuda_stream_t stream);
