/*
 * launch.cu - moe_cuda_run: GEMM1 (+ fused activation) -> GEMM2 -> finalize on one stream, for
 * the runner's config catalogue (configs.cuh); moe_cuda_run_grouped: the grouped run's plan
 * (kernels/routing/grouped_plan.cu) -> GEMM1 -> GEMM2 -> its rows to the caller's positions.
 *
 * With enable_pdl, every kernel is launched with programmatic stream serialisation and waits
 * (griddepcontrol.wait) before it reads anything its predecessor wrote.
 * Order: [permute] -> GEMM1 -> GEMM2 -> [finalize]; grouped: plan -> [permute] -> GEMM1 -> GEMM2,
 * whose epilogue stores each row at its position in the caller's output. A grouped run's permute
 * (FP8 runners) takes the plan's inverse row map (expanded_to_permuted with K = 1 over the N input
 * rows, written by the plan kernel) where a routed run takes expanded_to_permuted, so the same
 * permute kernels serve both.
 *
 * SM budget (moe_runner_options.sm_budget): core passes num_sms = min(device SMs, budget). Below
 * the device's count, GEMM2 runs its persistent kernel wherever the config has one (C = 1), with
 * at most num_sms x (CTAs per SM) CTAs; the one-tile kernels keep one CTA per tile.
 */
#include <cuda.h>
#include <cuda_runtime.h>

#include "kernels/finalize.cuh"
#include "kernels/gemm/common/dtypes.cuh"
#include "kernels/gemm/common/launch_gemm.cuh"
#include "kernels/gemm/common/scheduler.cuh"
#include "kernels/gemm/common/tensor_map.cuh"
#include "kernels/gemm/configs.cuh"
#include "kernels/kernels.h"
#include "kernels/mxfp4_math.h"
#include "kernels/routing/grouped_plan.cuh"
#include "moe_trtllm.h"

namespace moe {
namespace sm90 {
namespace {

/*
 * Tokens per local expert (T*K / E_l, the config heuristic's a) from which GEMM1 reads a
 * permuted copy of hidden (one TMA box per stage) instead of gathering its rows with cp.async.
 * The permute pass writes and re-reads T*K rows of H; the gather feeds the tensor pipe less
 * well. H100, 256-row configs sm90_bf16_t128_c1_m256_s4 / t192: at a <= 128 the gather was
 * 3-7% faster per forward (qwen3-30b T = 2048 568 against 611 us, qwen3-235b T = 2048 1909
 * against 1973), at a = 256 / 512 it was 6-17% slower (gpt-oss-120b T = 8192 4223 against 3601,
 * qwen3-235b T = 8192 4761 against 4101); with the 128-row tile-64 default at a = 32 it was 3-5%
 * faster (qwen3-30b T = 512 444 against 468 us, qwen3-235b T = 512 1681 against 1741). Both
 * read the same operands in the same order, so the output is bit-identical either way. With
 * every cell gathering (H100) the a >= 256 cells ran 23-47% slower per forward, 11-37% with an
 * asynchronous (.noinc) arrival: the cp.async path, not L2 or DRAM, is the limit.
 */
constexpr int64_t kPermuteFromTokensPerExpert = 256;

/*
 * Longest GEMM2 (K = I, in k-blocks) that runs the persistent kernel where a config has one.
 * H100, same-run A/B: it gained where GEMM2's tiles are
 * short (qwen3-30b 12, qwen3-235b 24, DeepSeek-V3 32 k-blocks: -1.5 to -4.3% per forward at
 * T >= 8192) and lost or tied where they are long (gpt-oss-120b 45: +3.4% at T = 8192; llama4
 * 128: +1-1.6%; mixtral 224: +-0.5%): there the fill is a small share of a tile, and the two
 * ring stages held through the epilogue halve the prefetch depth.
 */
constexpr int64_t kPersistentGemm2MaxKBlocks = 32;

/* The config row of a run, or NULL where the catalogue or index is unknown. */
const ConfigEntry *config_of(const moe_k_run *a) {
  const Catalogue *cat = find_catalogue(a->catalogue);
  if (cat == nullptr || a->config < 0 || a->config >= cat->count) return nullptr;
  return &cat->rows[a->config];
}

/*
 * The GEMM1 kernel of a run: block-scaled FP8 always reads the permuted copy; the others gather
 * below kPermuteFromTokensPerExpert slots per local expert (a grouped run: N input rows, K = 1)
 * and from there on read the permuted copy where the config has a permuted-input GEMM1 (CTA
 * tiles >= kPermuteFromN): once every expert has that many rows, one copy costs less than the
 * gather's per-stage row indirection. Routed and grouped runs choose alike, so a grouped layout
 * runs the kernels of the plain run on the same rows. A grouped run's plan kernel writes the
 * permute's map (the inverse row map) only where this kernel permutes.
 */
const GemmKernel &gemm1_kernel(const ConfigEntry &cfg, const moe_k_run *a) {
  const bool fp8_block = a->catalogue == MOE_K_CATALOGUE_SM90_FP8_BLOCK;
  const bool gather =
      !fp8_block && a->num_tokens * a->top_k < kPermuteFromTokensPerExpert * a->local_num_experts;
  return gather ? cfg.gemm1_gather : cfg.gemm1;
}

/*
 * Whether a grouped run's GEMM1 reads its token rows by TMA straight from the caller's hidden
 * states: BF16 runs whose GEMM1 reads a permuted layout. Both grouped layouts already hold each
 * expert's rows consecutively and in the plan's order, so the tile at padded row r0 reads from
 * input row permuted_to_token[r0] on, and the permute copy (a read and a write of N·H) is not
 * needed. FP8 runs keep the copy: it quantizes (and BLOCK transposes the 1x128 scales).
 */
bool grouped_reads_hidden(const moe_k_run *a, bool grouped, const GemmKernel &g1) {
  return grouped && g1.permuted_input != 0 && a->catalogue == MOE_K_CATALOGUE_SM90_BF16;
}

/* GEMM1 -> GEMM2 (-> finalize). grouped: GEMM1 gathers hidden's rows through permuted_to_token,
 * or reads them in place (BF16, grouped_reads_hidden), or reads the permuted copy the permute
 * made through the plan's inverse row map (FP8; plan->expanded_to_permuted with K = 1,
 * gemm1_kernel), and GEMM2 stores its valid rows at output[permuted_to_token[r]]. */
cudaError_t run_gemms(const moe_k_run *a, const moe_k_plan *plan, bool grouped,
                      cudaStream_t stream) {
  if (a == nullptr || plan == nullptr) return cudaErrorInvalidValue;
  const Catalogue *cat = find_catalogue(a->catalogue);
  if (cat == nullptr || a->config < 0 || a->config >= cat->count) return cudaErrorInvalidValue;
  const ConfigEntry &cfg = cat->rows[a->config];
  if (a->tile != cfg.tile || a->cluster_size != cfg.cluster) return cudaErrorInvalidValue;
  if (a->num_tokens <= 0) return cudaSuccess;
  if (a->launch_ctas <= 0 || a->launch_ctas % cfg.cluster != 0) return cudaErrorInvalidValue;

  /* The operand element: bf16, or e4m3 (FP8 per-tensor: hidden quantized with the static s1,
   * GEMM1's output with s2, the weights' per-expert scales after their values). */
  const bool fp8_block = a->catalogue == MOE_K_CATALOGUE_SM90_FP8_BLOCK;
  const bool fp8 = a->catalogue == MOE_K_CATALOGUE_SM90_FP8_TENSOR || fp8_block;
  if (fp8 && !fp8_block &&
      (a->scaling_mode != MOE_K_SCALING_PER_TENSOR || a->input_scale1 == nullptr ||
       a->input_scale2 == nullptr || a->act_scratch == nullptr)) {
    return cudaErrorInvalidValue;
  }
  /* Block scales: the permute writes the token rows' scales transposed, [H/128, max_rows], and
   * GEMM1 its output's, [I/128, max_rows], each after its e4m3 values (float2 loads: max_rows
   * is a multiple of the tile, so even). */
  if (fp8_block && (a->scaling_mode != MOE_K_SCALING_BLOCK || a->act_scratch == nullptr ||
                    (a->hidden_fp8 && a->hidden_scale == nullptr) || plan->max_rows % 2 != 0)) {
    return cudaErrorInvalidValue;
  }
  /* MXFP4 weights (W4A16): packed values by a 3-D map, their scales by the kernels' bulk copy;
   * bf16 token rows as BF16 runs. K <= MOE_SM90_MX_MAX_K: a tile's scales in shared memory. */
  const bool mx = a->catalogue == MOE_K_CATALOGUE_SM90_MXFP4_W4A16;
  if (mx && (a->scaling_mode != MOE_K_SCALING_MX || a->act_fp8 != 0 ||
             a->hidden_size > MOE_SM90_MX_MAX_K || a->intermediate_size > MOE_SM90_MX_MAX_K)) {
    return cudaErrorInvalidValue;
  }
  const int es = cat->elem_bytes;
  const CUtensorMapDataType tma_type = cat->tma_type;
  const int64_t kBK = kStageRowBytes / es;
  const int64_t H = a->hidden_size, I = a->intermediate_size, E = a->local_num_experts;
  if (H % kBK != 0 || I % kBK != 0 || H <= 0 || I <= 0 || E <= 0) return cudaErrorInvalidValue;
  const bool gated =
      a->activation == MOE_ACTIVATION_SWIGLU || a->activation == MOE_ACTIVATION_GEGLU;
  const int64_t rows1 = gated ? 2 * I : I;
  const bool pdl = a->enable_pdl != 0;
  int32_t num_sms = 0;
  cudaError_t e = device_sms(a->num_sms, &num_sms);
  if (e != cudaSuccess) return e;

  /* Token rows: GEMM1 gathers them with cp.async (no activation map) for small CTA tiles and
   * below kPermuteFromTokensPerExpert; otherwise it reads a permuted copy of hidden, written
   * by a permute kernel first (into the workspace's GEMM2 output region, which GEMM2 overwrites
   * afterwards), with one {kBlockK, ctaTile} box per stage, as GEMM2 reads its rows of
   * gemm1_out. tx*: one {kBlockK, ctaTile} box per stage; txs*: {kBlockK, kLiveStep} boxes, for
   * the token rows of a partly filled tile's trimmed main loop. */
  CUtensorMap tw1, tx1, tx1s, tw2, tx2, tx2s;
  const int32_t n_cta = cfg.tile / cfg.cluster;
  const int32_t slice = n_cta < kLiveStep ? n_cta : kLiveStep;
  /* Rows this call can touch: the padded capacity for this T (<= the workspace's max_rows);
   * a caller's permuted_output may be sized for this T only. */
  int64_t rows_t = a->launch_ctas / cfg.cluster * cfg.tile;
  if (rows_t > plan->max_rows) rows_t = plan->max_rows;
  const int32_t C = cfg.cluster;
  if (a->hidden == nullptr || (reinterpret_cast<uintptr_t>(a->hidden) & 15u) != 0) {
    return cudaErrorInvalidValue;
  }
  auto map = [&](CUtensorMap *m, const void *ptr, int64_t inner, int64_t outer, int32_t box) {
    return encode_stage_map(m, tma_type, es, ptr, inner, outer, box);
  };
  if (mx) {
    if ((e = encode_mx_weight_map(&tw1, a->w1, rows1, H, E, moe_mx_expert_bytes(rows1, H),
                                  kStageRowBytes / 4, cfg.gemm1.block_m / C)) != cudaSuccess ||
        (e = encode_mx_weight_map(&tw2, a->w2, H, I, E, moe_mx_expert_bytes(H, I),
                                  kStageRowBytes / 4, cfg.gemm2.block_m / C)) != cudaSuccess) {
      return e;
    }
  } else if ((e = map(&tw1, a->w1, H, E * rows1, cfg.gemm1.block_m / C)) != cudaSuccess ||
             (e = map(&tw2, a->w2, I, E * H, cfg.gemm2.block_m / C)) != cudaSuccess) {
    return e;
  }
  if ((e = map(&tx2, a->gemm1_out, I, rows_t, cfg.tile / C)) != cudaSuccess ||
      (e = map(&tx2s, a->gemm1_out, I, rows_t, slice)) != cudaSuccess) {
    return e;
  }
  const GemmKernel &g1 = gemm1_kernel(cfg, a);
  const bool permuted = g1.permuted_input != 0;
  /* A grouped BF16 run's permuted-input GEMM1 reads the caller's rows in place (no copy). */
  const bool direct = grouped_reads_hidden(a, grouped, g1);
  /* the permute's map: expanded_to_permuted, or a grouped plan's inverse row map (K = 1) */
  if (permuted && !direct &&
      (plan->expanded_to_permuted == nullptr || (grouped && a->top_k != 1))) {
    return cudaErrorInvalidValue;
  }
  /* GEMM1's token rows: hidden as given (bf16, or e4m3 already quantized), or e4m3 quantized
   * from bf16 by the permute (permuted) or by one pass over hidden (gathered) into the
   * workspace's GEMM2 output region, which only GEMM2 (after GEMM1) writes. */
  const bool quantize = fp8 && !fp8_block && !a->hidden_fp8;
  void *const permuted_rows = fp8 ? a->act_scratch : static_cast<void *>(a->gemm2_out);
  const void *gather_rows = a->hidden;
  if (quantize && !permuted) {
    const int q = moe_cuda_quantize_fp8(a->hidden, a->num_tokens, H, MOE_K_SCALING_PER_TENSOR,
                                        a->input_scale1, static_cast<uint8_t *>(a->act_scratch),
                                        nullptr, stream);
    if (q != 0) return static_cast<cudaError_t>(q);
    gather_rows = a->act_scratch;
  }
  if (direct) {
    /* hidden [N, H] itself: a tile's rows past the expert's count read the next rows or, past
     * N, TMA's zero fill; those columns are never stored */
    if ((e = map(&tx1, a->hidden, H, a->num_tokens, cfg.tile / C)) != cudaSuccess ||
        (e = map(&tx1s, a->hidden, H, a->num_tokens, slice)) != cudaSuccess) {
      return e;
    }
  } else if (permuted) {
    if ((e = map(&tx1, permuted_rows, H, rows_t, cfg.tile / C)) != cudaSuccess ||
        (e = map(&tx1s, permuted_rows, H, rows_t, slice)) != cudaSuccess) {
      return e;
    }
  } else {
    tx1 = tx1s = tw1; /* unused by the gathering kernels */
  }
  /* Under an SM budget (num_sms below the device's), the persistent GEMM2 whatever K is: its
   * grid is the one kernel of the forward the budget can cap. */
  bool persistent2 = cfg.gemm2_persistent.func != nullptr;
  if (persistent2 && I / kBK > kPersistentGemm2MaxKBlocks) {
    int32_t device_num_sms = 0;
    if ((e = device_sms(0, &device_num_sms)) != cudaSuccess) return e;
    persistent2 = num_sms < device_num_sms;
  }
  const GemmKernel &g2 = persistent2 ? cfg.gemm2_persistent : cfg.gemm2;
  int64_t resident1 = 0, resident2 = 0;
  if ((e = prepare_gemm_kernel(g1, num_sms, &resident1)) != cudaSuccess ||
      (e = prepare_gemm_kernel(g2, num_sms, &resident2)) != cudaSuccess) {
    return e;
  }

  GroupedGemmParams p1 = {};
  p1.out = a->gemm1_out;
  p1.bias = a->bias1;
  p1.alpha = a->alpha;
  p1.beta = a->beta;
  p1.clamp_limit = a->clamp_limit;
  p1.permuted_to_token = plan->permuted_to_token;
  p1.x_rows = direct ? plan->permuted_to_token : nullptr;
  p1.gather_src = static_cast<const uint8_t *>(gather_rows);
  p1.gather_row_bytes = H * es;
  p1.cta_to_batch = plan->cta_to_batch;
  p1.cta_to_mn_limit = plan->cta_to_mn_limit;
  p1.num_ctas = plan->num_ctas;
  p1.tile_counter = plan->gemm_tile_counter;
  p1.w_rows = static_cast<int32_t>(rows1);
  p1.k_blocks = static_cast<int32_t>(H / kBK);
  p1.out_ld = static_cast<int32_t>(I);
  p1.out_cols = static_cast<int32_t>(I);
  p1.bias_stride = static_cast<int32_t>(rows1);
  p1.activation = a->activation;
  p1.gated = gated ? 1 : 0;
  if (fp8) {
    /* prepared FP8 weights: e4m3 values, then the per-expert fp32 scales (docs/formats.md) */
    p1.w_scale = reinterpret_cast<const float *>(reinterpret_cast<const uint8_t *>(a->w1) +
                                                 moe_k_fp8_scales_offset(E * rows1 * H));
    p1.x_scale = a->input_scale1;
    p1.out_scale = const_cast<float *>(a->input_scale2); /* read only: StoreE4m3Static */
  }
  /* block scales of the token operands (after their e4m3 values): only block-scaled runs */
  float *const x1_scales =
      fp8_block ? reinterpret_cast<float *>(static_cast<uint8_t *>(a->act_scratch) +
                                            moe_k_fp8_scales_offset(plan->max_rows * H))
                : nullptr;
  float *const x2_scales =
      fp8_block ? reinterpret_cast<float *>(reinterpret_cast<uint8_t *>(a->gemm1_out) +
                                            moe_k_fp8_scales_offset(plan->max_rows * I))
                : nullptr;
  if (fp8_block) {
    p1.x_scale = x1_scales;
    p1.out_scale = x2_scales;
    p1.scale_ld = plan->max_rows;
    p1.w_scale_blocks = static_cast<int32_t>(rows1 / MOE_SM90_FP8_BLOCK_K);
  }

  if (mx) {
    p1.w_mx = reinterpret_cast<const uint8_t *>(a->w1);
    p1.w_expert_bytes = moe_mx_expert_bytes(rows1, H);
    p1.w_scales_offset = moe_mx_scales_offset(rows1, H);
  }

  GroupedGemmParams p2 = p1;
  /* A grouped run's GEMM2 stores each row at its position in the caller's output (the plan's
   * permuted_to_token: contiguous s_e + i, masked e * capacity + i); padding rows are not live
   * in any tile, so rows past the counts stay untouched. */
  p2.out = grouped ? a->output : a->gemm2_out;
  p2.out_rows = grouped ? plan->permuted_to_token : nullptr;
  p2.bias = a->bias2;
  p2.alpha = p2.beta = p2.clamp_limit = nullptr;
  p2.permuted_to_token = nullptr;
  p2.x_rows = nullptr;
  p2.gather_src = nullptr;
  p2.gather_row_bytes = 0;
  p2.w_rows = static_cast<int32_t>(H);
  p2.k_blocks = static_cast<int32_t>(I / kBK);
  p2.out_ld = static_cast<int32_t>(H);
  p2.out_cols = static_cast<int32_t>(H);
  p2.bias_stride = static_cast<int32_t>(H);
  p2.activation = MOE_ACTIVATION_IDENTITY;
  p2.gated = 0;
  if (fp8) {
    p2.w_scale = reinterpret_cast<const float *>(reinterpret_cast<const uint8_t *>(a->w2) +
                                                 moe_k_fp8_scales_offset(E * H * I));
    p2.x_scale = fp8_block ? x2_scales : a->input_scale2;
    p2.out_scale = nullptr;
    p2.w_scale_blocks = static_cast<int32_t>(H / MOE_SM90_FP8_BLOCK_K);
  }

  if (mx) {
    p2.w_mx = reinterpret_cast<const uint8_t *>(a->w2);
    p2.w_expert_bytes = moe_mx_expert_bytes(H, I);
    p2.w_scales_offset = moe_mx_scales_offset(H, I);
  }

  const int64_t m1 = (rows1 + g1.block_m - 1) / g1.block_m;
  const int64_t m2 = (H + g2.block_m - 1) / g2.block_m;
  if (fp8_block) {
    e = launch_permute_block(permuted_rows, x1_scales, plan->max_rows, a->hidden,
                             a->hidden_fp8 ? a->hidden_scale : nullptr, plan->expanded_to_permuted,
                             a->num_tokens, a->top_k, H, num_sms, pdl, stream);
  } else if (permuted && !direct) {
    e = launch_permute(permuted_rows, a->hidden, plan->expanded_to_permuted, a->num_tokens,
                       a->top_k, H * es, quantize ? a->input_scale1 : nullptr, num_sms, pdl,
                       stream);
  }
  if (e != cudaSuccess) return e;
  if ((e = launch_gemm(g1, C, a->launch_ctas, m1, resident1, tw1, tx1, tx1s, p1, pdl, stream)) !=
      cudaSuccess) {
    return e;
  }
  if ((e = launch_gemm(g2, C, a->launch_ctas, m2, resident2, tw2, tx2, tx2s, p2, pdl, stream)) !=
      cudaSuccess) {
    return e;
  }
  if (!grouped && a->do_finalize && a->output != nullptr) {
    e = moe::launch_finalize(a->output, a->gemm2_out, plan->expert_weights,
                             plan->expanded_to_permuted, a->num_tokens, a->top_k, H, pdl, stream);
  }
  return e;
}

}  // namespace
}  // namespace sm90
}  // namespace moe

extern "C" int moe_cuda_run(const moe_k_run *a, const moe_k_plan *plan, void *stream) {
  return moe::sm90::run_gemms(a, plan, false, static_cast<cudaStream_t>(stream));
}

extern "C" int moe_cuda_run_grouped(const moe_k_run *a, const moe_k_plan *plan,
                                    const moe_k_grouped *g, void *stream_ptr) {
  if (a == nullptr || plan == nullptr || g == nullptr || a->do_finalize != 0 ||
      a->output == nullptr) {
    return cudaErrorInvalidValue;
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const moe::sm90::ConfigEntry *cfg = moe::sm90::config_of(a);
  if (cfg == nullptr) return cudaErrorInvalidValue;
  /* The inverse row map only where GEMM1 reads a permuted copy (the permute's map). */
  const moe::sm90::GemmKernel &g1 = moe::sm90::gemm1_kernel(*cfg, a);
  int32_t *const row_map = g1.permuted_input != 0 && !moe::sm90::grouped_reads_hidden(a, true, g1)
                               ? plan->expanded_to_permuted
                               : nullptr;
  /* The plan kernel runs even for N = 0: it writes the status word and an empty plan. */
  cudaError_t e =
      moe::routing::launch_grouped_plan(*g, *plan, a->num_tokens, a->local_num_experts, a->tile,
                                        a->cluster_size, row_map, a->enable_pdl != 0, stream);
  if (e == cudaSuccess) e = moe::sm90::run_gemms(a, plan, true, stream);
  if (e == cudaSuccess) e = cudaGetLastError();
  return static_cast<int>(e);
}
