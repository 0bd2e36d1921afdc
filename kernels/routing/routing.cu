/*
 * routing.cu - moe_cuda_routing (the dispatcher) and moe_cuda_routing_scratch_bytes.
 *
 * Path choice depends on T only (never on the SM count), so results are identical on every
 * GPU: T <= kSingleMaxTokens -> one single-CTA kernel; else topk_hist -> block_scan ->
 * scatter. Method family by input kind and method (pre-routed input skips the math).
 */
#include "kernels/kernels.h"
#include "kernels/routing/routing_common.cuh"

namespace moe {
namespace routing {

static int64_t max_blocks_for(int64_t max_tokens) {
  /* num_blocks_for(T) <= min(ceil(T / 8), max(kSoftMaxBlocks, ceil(T / (8 * 32)))), and both
   * bounds grow with T. */
  const int64_t a = (max_tokens + kHistWarps - 1) / kHistWarps;
  const int64_t big = (int64_t)kHistWarps * kMaxTokensPerWarp;
  int64_t b = (max_tokens + big - 1) / big;
  if (b < kSoftMaxBlocks) b = kSoftMaxBlocks;
  return a < b ? a : b;
}

static inline size_t align256(size_t x) {
  return (x + 255) & ~(size_t)255;
}

}  // namespace routing
}  // namespace moe

using namespace moe::routing;

extern "C" int64_t moe_cuda_routing_scratch_bytes(int64_t max_tokens, int32_t num_experts) {
  if (max_tokens < 0) max_tokens = 0;
  if (num_experts < 1) num_experts = 1;
  const int64_t B = max_blocks_for(max_tokens);
  return (int64_t)(align256((size_t)B * num_experts * sizeof(int32_t)) +
                   align256((size_t)num_experts * sizeof(int32_t)));
}

extern "C" int moe_cuda_routing(const moe_k_routing *a, const moe_k_plan *plan, void *stream) {
  cudaStream_t s = (cudaStream_t)stream;
  Params p = {};
  p.method = a->method;
  p.input_kind = a->input_kind;
  p.logits = a->logits;
  p.bias = a->bias;
  p.ids_in = a->topk_ids_in;
  p.w_in = a->topk_weights_in;
  p.packed_in = a->topk_packed_in;
  p.logits_bf16 = a->logits_dtype == MOE_K_BF16;
  p.bias_bf16 = a->bias_dtype == MOE_K_BF16;
  p.w_in_bf16 = a->topk_weights_dtype == MOE_K_BF16;
  p.num_tokens = a->num_tokens;
  p.num_experts = a->num_experts;
  p.top_k = a->top_k;
  p.n_group = a->n_group < 1 ? 1 : a->n_group;
  p.topk_group = a->topk_group < 1 ? p.n_group : a->topk_group;
  p.scale = a->routed_scaling_factor;
  {
    const int G = p.num_experts / p.n_group > 0 ? p.num_experts / p.n_group : 1;
    p.group_size = G;
    p.group_mul = ((1 << 21) + G - 1) / G;
    int lg = 0;
    while ((2 << lg) * p.n_group <= 32) ++lg;
    p.lanes_per_group_log2 = lg;
  }
  /* DeepSeek-V3's shape (E = 256 in 8 groups of 32, topk_group <= 4, K <= 8) with 16-byte
   * aligned logits and bias: deepseek.cu's fast path may take the token. */
  p.v3_fast = a->method == MOE_ROUTING_DEEPSEEK_V3 && a->input_kind == MOE_K_INPUT_LOGITS &&
              p.num_experts == 256 && p.n_group == 8 && p.topk_group <= 4 && p.top_k <= 8 &&
              ((uintptr_t)p.logits & 15u) == 0 && ((uintptr_t)p.bias & 15u) == 0;
  p.local_offset = a->local_expert_offset;
  p.local_num = a->local_num_experts;
  p.tile = a->tile;
  p.cluster = a->cluster_size;
  p.topk_ids = plan->topk_ids;
  p.weights = plan->expert_weights;
  p.e2p = plan->expanded_to_permuted;
  p.p2t = plan->permuted_to_token;
  p.p2e = plan->permuted_to_expanded;
  p.cta_batch = plan->cta_to_batch;
  p.cta_mn = plan->cta_to_mn_limit;
  p.num_ctas = plan->num_ctas;
  p.permuted_size = plan->permuted_size;
  p.expert_counts = plan->expert_counts;

  if (p.top_k < 1 || p.top_k > kMaxTopK || p.num_experts < 1 || p.num_experts > kMaxExperts ||
      p.local_num < 1 || p.local_num > kMaxExperts || p.num_tokens < 0 || p.tile < 1 ||
      p.cluster < 1)
    return (int)cudaErrorInvalidValue;
  const bool pdl = a->enable_pdl != 0;
  const bool single = p.num_tokens <= kSingleMaxTokens;
  if (!single) {
    const int64_t B = num_blocks_for(p.num_tokens);
    const size_t need = align256((size_t)B * p.local_num * sizeof(int32_t));
    if ((int64_t)(need + align256((size_t)p.local_num * sizeof(int32_t))) > plan->scratch_bytes ||
        plan->scratch == nullptr)
      return (int)cudaErrorInvalidValue;
    p.blk_counts = reinterpret_cast<int32_t *>(plan->scratch);
    p.totals = reinterpret_cast<int32_t *>(reinterpret_cast<char *>(plan->scratch) + need);
    p.tokens_per_warp = tokens_per_warp_for(p.num_tokens);
    p.num_blocks = (int32_t)B;
  }

  cudaError_t e;
  if (a->input_kind != MOE_K_INPUT_LOGITS) {
    e = launch_preroute(p, single, s, pdl);
  } else {
    switch (a->method) {
      case MOE_ROUTING_DEEPSEEK_V3:
        e = launch_deepseek(p, single, s, pdl);
        break;
      case MOE_ROUTING_LLAMA4:
        e = launch_llama4(p, single, s, pdl);
        break;
      default:
        e = launch_renormalize(p, single, s, pdl);
        break;
    }
  }
  if (e == cudaSuccess && !single) e = launch_plan_multi(p, s, pdl);
  if (e == cudaSuccess) e = cudaGetLastError();
  return (int)e;
}
