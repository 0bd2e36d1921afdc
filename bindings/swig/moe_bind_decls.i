/*
 * moe_bind_decls.i - the declarations SWIG wraps, shared by the Python and Java modules.
 * The implementations are the static inline helpers of moe_bind.h; each language's .i sets its
 * typemaps for `const DLTensor *`, `moe_plan *`, `moe_cuda_stream_t` and its %exception first.
 */

typedef struct moe_runner moe_runner;

/* Constants of the public header (bindings cannot see the header's macros). Java includes
   the same list itself, as compile-time constants (moe_trtllm_jni.i). */
#if !defined(SWIGJAVA)
%include "moe_constants.i"
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
                       const DLTensor *output, const DLTensor *hidden_states_scale,
                       const DLTensor *gemm1_input_scale, const DLTensor *gemm2_input_scale,
                       int32_t enable_pdl, const DLTensor *workspace, moe_cuda_stream_t stream);
int64_t moe_b_plan_field(const moe_plan *plan, int32_t field);
int64_t moe_b_plan_read_count(const moe_runner *r, const moe_plan *plan,
                              const DLTensor *workspace, int32_t table,
                              moe_cuda_stream_t stream);
void moe_b_plan_read(const moe_runner *r, const moe_plan *plan, const DLTensor *workspace,
                     int32_t table, const DLTensor *dst, moe_cuda_stream_t stream);
