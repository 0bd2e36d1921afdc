/*
 * kernels.h - the only header core/ includes from kernels/.
 *
 * Plain C: parameter blocks shared by the CPU reference backend (core/cpu/) and the CUDA
 * launchers (kernels/), the config catalogue, and the launch functions. Nothing here knows
 * about handles, DLPack or error strings: core/ validates everything before calling in, and
 * the launchers return a cudaError_t value (0 = success) as int.
 */
#ifndef MOE_KERNELS_H_
#define MOE_KERNELS_H_

#include <stdint.h>

#include "kernels/moe_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Routing input kinds. */
#define MOE_K_INPUT_LOGITS 0
#define MOE_K_INPUT_IDS 1    /* topk_ids + topk_weights */
#define MOE_K_INPUT_PACKED 2 /* (id << 16) | bf16 */

/* Element types used inside kernels.h parameter blocks. */
#define MOE_K_F32 0
#define MOE_K_BF16 1

/* FP8 scaling modes (= MOE_SCALING_* of the public header; docs/formats.md "FP8"). */
#define MOE_K_SCALING_NONE 0
#define MOE_K_SCALING_PER_TENSOR 1
#define MOE_K_SCALING_BLOCK 2
#define MOE_K_SCALING_MX 3 /* MXFP4 weights (kernels/mxfp4_math.h); activations per act_fp8 */

/*
 * Byte offset of the fp32 scales after @p elems e4m3 values, 256-byte aligned. Used by the
 * FP8 prepared weights (e4m3 [E_l, R, C], then scales) and by the CPU backend's FP8
 * activation buffers (e4m3 [rows, C], then fp32 [rows, C/128]).
 */
static inline int64_t moe_k_fp8_scales_offset(int64_t elems) {
  return (elems + 255) / 256 * 256;
}

/*
 * The routing plan inside a workspace (see docs/routing.md). Device pointers on CUDA, host
 * pointers on the CPU backend. Capacities are fixed by the workspace's T_max; this call's
 * tables only use the first T*K / permuted_size / num_ctas entries.
 */
typedef struct moe_k_plan {
  int32_t *topk_ids;             /* [T*K] global expert ids */
  uint16_t *expert_weights;      /* [T*K] bf16 */
  int32_t *expanded_to_permuted; /* [T*K] */
  int32_t *permuted_to_token;    /* [max_rows] */
  int32_t *permuted_to_expanded; /* [max_rows] */
  int32_t *cta_to_batch;         /* [max_ctas] */
  int32_t *cta_to_mn_limit;      /* [max_ctas] */
  int32_t *num_ctas;             /* [1] */
  int32_t *permuted_size;        /* [1] */
  int32_t *gemm_tile_counter;    /* [1] GEMM2's tile queue (persistent kernel); GEMM1 zeroes it */
  int32_t *expert_counts;        /* [E] */
  void *scratch;                 /* routing scratch (multi-CTA path), scratch_bytes */
  int64_t scratch_bytes;
  int64_t max_rows; /* capacity of the permuted maps (workspace T_max) */
  int64_t max_ctas; /* capacity of the CTA tables (workspace T_max) */
} moe_k_plan;

/* Everything routing needs; validated and range-checked by core/. */
typedef struct moe_k_routing {
  int32_t method;     /* MOE_ROUTING_* */
  int32_t input_kind; /* MOE_K_INPUT_* */
  const void *logits; /* [T, E] */
  int32_t logits_dtype;
  const void *bias; /* [E] or NULL */
  int32_t bias_dtype;
  const int32_t *topk_ids_in;    /* [T, K] */
  const void *topk_weights_in;   /* [T, K] */
  int32_t topk_weights_dtype;    /* MOE_K_F32 or MOE_K_BF16 */
  const int32_t *topk_packed_in; /* [T, K] */
  int32_t num_tokens;
  int32_t num_experts;
  int32_t top_k;
  int32_t n_group;    /* >= 1 */
  int32_t topk_group; /* >= 1 */
  float routed_scaling_factor;
  int32_t local_expert_offset;
  int32_t local_num_experts;
  int32_t tile;         /* cluster tile */
  int32_t cluster_size; /* C */
  int32_t enable_pdl;
  int32_t num_sms; /* CUDA: multiprocessors (used for sizing grids only, never results) */
} moe_k_routing;

/* Everything the GEMM stages need. */
typedef struct moe_k_run {
  const uint16_t *hidden;   /* [T, H] bf16 */
  const uint16_t *w1;       /* prepared W1 */
  const uint16_t *w2;       /* prepared W2 */
  const float *bias1;       /* [E_l, f*I] canonical order, or NULL */
  const float *bias2;       /* [E_l, H] or NULL */
  const float *alpha;       /* [E_l] or NULL */
  const float *beta;        /* [E_l] or NULL */
  const float *clamp_limit; /* [E_l] or NULL */
  uint16_t *gemm1_out;      /* [max_rows, I] bf16 (workspace) */
  uint16_t *gemm2_out;      /* [max_rows, H] bf16 (workspace or caller's permuted_output) */
  uint16_t *output;         /* [T, H] bf16 or NULL when !do_finalize */
  int64_t num_tokens;
  int64_t hidden_size;
  int64_t intermediate_size;
  int32_t top_k;
  int32_t local_num_experts;
  int32_t activation; /* MOE_ACTIVATION_* */
  int32_t catalogue;  /* MOE_K_CATALOGUE_*: the runner's (architecture, dtypes) catalogue */
  int32_t config;     /* index in that catalogue's X-macro list */
  int32_t tile;       /* cluster tile of the plan */
  int32_t cluster_size;
  int64_t launch_ctas; /* CTAs to launch along tokens: max_cgas(T, K, E_l, tile) * C, a
                          multiple of C; CTAs >= *plan->num_ctas exit at once */
  int32_t do_finalize;
  int32_t enable_pdl;
  int32_t num_sms;
  /* FP8 (docs/formats.md "FP8"); scaling_mode NONE (BF16) leaves the rest 0 / NULL. Then w1
   * and w2 point to FP8 prepared bytes and gemm1_out's region holds e4m3 [max_rows, I] and,
   * at moe_k_fp8_scales_offset(max_rows * I) bytes, fp32 [max_rows, I/128] (BLOCK). */
  int32_t scaling_mode;      /* MOE_K_SCALING_* */
  int32_t hidden_fp8;        /* 1: hidden is e4m3 [T, H]; 0: bf16, quantized by the backend */
  const float *hidden_scale; /* BLOCK with hidden_fp8: [T, H/128] */
  const float *input_scale1; /* PER_TENSOR: [1] scale of GEMM1's input */
  const float *input_scale2; /* PER_TENSOR: [1] scale of GEMM2's input (GEMM1's output) */
  void *act_scratch;         /* 2 * max_rows * H workspace bytes unused until GEMM2 (the
                                workspace's GEMM2 output region): the CPU backend quantizes
                                bf16 hidden states into it */
  /* MXFP4 (scaling_mode MX): w1 and w2 point to MXFP4 prepared bytes (kernels/mxfp4_math.h).
   * act_fp8 1 = W4A8: e4m3 activations with the PER_TENSOR input scales (hidden_fp8,
   * input_scale1/2 as above, GEMM1 stores e4m3 [max_rows, I]); 0 = W4A16: bf16 activations,
   * gemm1_out bf16 as in BF16 runs. Always 1 for the FP8 modes. */
  int32_t act_fp8;
  /* bf16 biases (CPU backend only for now): when set, used instead of bias1 / bias2 */
  const uint16_t *bias1_bf16; /* [E_l, f*I] canonical order, or NULL */
  const uint16_t *bias2_bf16; /* [E_l, H] or NULL */
} moe_k_run;

/*
 * Config catalogues, one per (architecture, activation dtype, weight dtype, scaling mode), each
 * with its own rows and its own best-first heuristic (core/configs.c). A key names one.
 */
#define MOE_K_CATALOGUE_SM90_BF16 0
#define MOE_K_CATALOGUE_SM90_FP8_TENSOR 1  /* e4m3 x e4m3, per-tensor scales */
#define MOE_K_CATALOGUE_SM90_FP8_BLOCK 2   /* e4m3 x e4m3, 128 x 128 / 1 x 128 block scales */
#define MOE_K_CATALOGUE_SM90_MXFP4_W4A16 3 /* MXFP4 weights x bf16 token rows */

/*
 * The sm_90a BF16 x BF16 catalogue, one X(...) per config:
 *   X(tile, cluster, gemm1_block_m, gemm2_block_m, block_k, stages)
 * tile = cluster (CGA) tile in tokens; cta tile = tile / cluster (the wgmma N).
 * Index = position in this list (stable within a library version). core/ builds the
 * backend-independent descriptions from it; kernels/gemm/ instantiates one kernel pair each.
 */
#define MOE_SM90_BF16_CONFIGS(X) \
  X(8, 1, 128, 128, 64, 13)      \
  X(16, 1, 128, 128, 64, 12)     \
  X(32, 1, 128, 128, 64, 11)     \
  X(64, 1, 128, 128, 64, 9)      \
  X(128, 1, 128, 128, 64, 7)     \
  X(256, 1, 128, 128, 64, 4)     \
  X(16, 2, 128, 128, 64, 13)     \
  X(32, 2, 128, 128, 64, 12)     \
  X(64, 2, 128, 128, 64, 11)     \
  X(128, 2, 128, 128, 64, 9)     \
  X(256, 2, 128, 128, 64, 7)     \
  X(32, 4, 128, 128, 64, 13)     \
  X(64, 4, 128, 128, 64, 12)     \
  X(128, 4, 128, 128, 64, 11)    \
  X(256, 4, 128, 128, 64, 9)     \
  X(16, 1, 64, 64, 64, 8)        \
  X(64, 1, 128, 128, 64, 4)      \
  X(128, 1, 256, 256, 64, 4)     \
  X(256, 2, 256, 256, 64, 4)     \
  X(192, 1, 256, 256, 64, 4)     \
  X(144, 1, 256, 256, 64, 4)     \
  X(160, 1, 256, 256, 64, 4)     \
  X(176, 1, 256, 256, 64, 4)

/*
 * The sm_90a FP8 per-tensor catalogue: the BF16 rows, whose block_k entry its users read as
 * 128 (MOE_SM90_FP8_BLOCK_K). The same mainloop runs both (one fp32 accumulator over K; the
 * scales apply in the epilogue) with the same 128-byte stage rows, registers and shared memory
 * per config, so the tile trade-offs of the BF16 rows carry over; a stage holds twice the
 * elements of K.
 */
#define MOE_SM90_FP8_TENSOR_CONFIGS(X) MOE_SM90_BF16_CONFIGS(X)
#define MOE_SM90_FP8_BLOCK_K 128
/*
 * The sm_90a block-scaled FP8 catalogue (kernels/gemm/sm90_fp8_block_grouped.cuh): 256-row
 * weight tiles in both GEMMs (a gated GEMM1 tile is 128 output features, the 1 x 128 group its
 * epilogue quantizes; a warpgroup's 128 rows with two accumulator sets fit the registers up to
 * a CTA tile of 64 tokens), stages as many as shared memory holds (one CTA per SM), C = 1, 2, 4.
 */
#define MOE_SM90_FP8_BLOCK_CONFIGS(X) \
  X(8, 1, 256, 256, 128, 6)           \
  X(16, 1, 256, 256, 128, 6)          \
  X(32, 1, 256, 256, 128, 6)          \
  X(64, 1, 256, 256, 128, 5)          \
  X(16, 2, 256, 256, 128, 6)          \
  X(32, 2, 256, 256, 128, 6)          \
  X(64, 2, 256, 256, 128, 6)          \
  X(128, 2, 256, 256, 128, 5)         \
  X(32, 4, 256, 256, 128, 6)          \
  X(64, 4, 256, 256, 128, 6)          \
  X(128, 4, 256, 256, 128, 6)         \
  X(256, 4, 256, 256, 128, 5)
/*
 * The sm_90a MXFP4 x BF16 (W4A16) catalogue (kernels/gemm/sm90_w4a16_mxfp4_grouped.cuh): the
 * weights stream packed (32 bytes a row per 64-K stage) and are expanded in registers, so a
 * stage is a quarter of BF16's weight bytes and the rings run deeper. 64-row tiles for decode
 * (more CTAs over a few experts' rows, two per SM), 128-row ones (two consumer warpgroups of one
 * m64 atom each: the expansion of one overlaps the other's wgmma) elsewhere; C = 1, 2, 4.
 * Every config keeps its tile's scales for K <= MOE_SM90_MX_MAX_K in shared memory.
 */
#define MOE_SM90_MXFP4_W4A16_CONFIGS(X) \
  X(8, 1, 64, 64, 64, 16)               \
  X(16, 1, 64, 64, 64, 16)              \
  X(8, 1, 128, 128, 64, 16)             \
  X(16, 1, 128, 128, 64, 14)            \
  X(32, 1, 128, 128, 64, 12)            \
  X(64, 1, 128, 128, 64, 10)            \
  X(128, 1, 128, 128, 64, 8)            \
  X(256, 1, 128, 128, 64, 5)            \
  X(64, 2, 128, 128, 64, 12)            \
  X(128, 2, 128, 128, 64, 10)           \
  X(256, 2, 128, 128, 64, 8)            \
  X(128, 4, 128, 128, 64, 12)           \
  X(256, 4, 128, 128, 64, 10)
#define MOE_SM90_MX_K_ALIGN 64 /* H % 64 == 0 and I % 64 == 0 (whole 64-K stages) */
#define MOE_SM90_MX_MAX_K 8192 /* H, I <= 8192: a tile's scales fit shared memory */

/* Shape constraints every sm_90a BF16 config needs (TMA strides, wgmma tiles). */
#define MOE_SM90_H_ALIGN 64 /* H % 64 == 0 */
#define MOE_SM90_I_ALIGN 64 /* I % 64 == 0 */

/* ---- CUDA launchers (.cu files in kernels/). Return a cudaError_t value, 0 = success. ---- */

/* Bytes of routing scratch for a workspace of T_max tokens (multi-CTA path). */
int64_t moe_cuda_routing_scratch_bytes(int64_t max_tokens, int32_t num_experts);

/* Build the plan on the GPU. */
int moe_cuda_routing(const moe_k_routing *args, const moe_k_plan *plan, void *stream);

/* Canonical -> prepared weights on the GPU (which: 1 = W1, 2 = W2). */
int moe_cuda_weights_prepare(int32_t which, int32_t gated, int64_t local_experts, int64_t rows,
                             int64_t cols, const uint16_t *canonical, uint16_t *prepared,
                             void *stream);

/*
 * Canonical -> FP8 prepared weights on the GPU (docs/formats.md, prepared layout version 2):
 * e4m3 values in the BF16 prepared row order, then at moe_k_fp8_scales_offset(E_l*rows*cols)
 * the fp32 scales in canonical order ([E_l, rows/128, cols/128] BLOCK, [E_l] PER_TENSOR).
 * canonical_scales != NULL: canonical is e4m3 and both are copied; NULL: canonical is bf16 and
 * is quantized (kernels/fp8_math.h). rows and cols are multiples of 128.
 */
int moe_cuda_weights_prepare_fp8(int32_t which, int32_t gated, int32_t scaling_mode,
                                 int64_t local_experts, int64_t rows, int64_t cols,
                                 const void *canonical, const float *canonical_scales,
                                 uint8_t *prepared, void *stream);

/*
 * Checkpoint MXFP4 -> prepared weights on the GPU (docs/formats.md "MXFP4", prepared layout
 * version 3, kernels/mxfp4_math.h): packed e2m1 values [E_l, rows, cols/2] and ue8m0 scales
 * [E_l, rows, cols/32] relaid per expert into values, pad, scales, pad; gated_w1: the 8-row
 * up/gate interleave of W1; gate_up_interleaved: the source W1 rows are gpt-oss's (2f = gate f,
 * 2f + 1 = up f). cols % 32 == 0. The bytes of the CPU backend's (core/cpu/mxfp4_weights.c).
 */
int moe_cuda_weights_prepare_mx(int32_t gated_w1, int32_t gate_up_interleaved,
                                int64_t local_experts, int64_t rows, int64_t cols,
                                const uint8_t *values, const uint8_t *scales, uint8_t *prepared,
                                void *stream);

/*
 * bf16 [rows, cols] -> e4m3 [rows, cols] (+ fp32 scales [rows, cols/128] in BLOCK mode, one per
 * row per 128 columns; PER_TENSOR: q = e4m3(x / *static_scale), scales unused) with the rule
 * of kernels/fp8_math.h: the hidden-state quantization point of an FP8 run, as one pass
 * (kernels/quantize_fp8.cu; not called by the library yet). cols % 128 == 0.
 */
int moe_cuda_quantize_fp8(const uint16_t *x, int64_t rows, int64_t cols, int32_t scaling_mode,
                          const float *static_scale, uint8_t *q, float *scales, void *stream);

/* GEMM1 + activation, GEMM2 and finalize on the GPU. */
int moe_cuda_run(const moe_k_run *args, const moe_k_plan *plan, void *stream);

/* Count checks of a grouped run, done on the device (bits of *moe_k_grouped.status; equal to
 * the public MOE_GROUPED_COUNTS_* values). A violating count is clamped, never followed. */
#define MOE_K_GROUPED_COUNT_NEGATIVE 1      /* a count < 0: taken as 0 */
#define MOE_K_GROUPED_COUNT_OVER_CAPACITY 2 /* MASKED: a count > capacity: taken as capacity */
#define MOE_K_GROUPED_SUM_OVER_ROWS                      \
  4 /* CONTIGUOUS: counts summing past N: the count that \
       crosses N is cut to end at N, later ones are 0 */

/* The per-call part of a grouped run (moe_runner_run_grouped, docs/ep.md). */
typedef struct moe_k_grouped {
  const int32_t *counts; /* [E_l] int32, device memory */
  int32_t masked;        /* 1: MASKED (expert e's rows start at e * capacity); 0: CONTIGUOUS */
  int64_t capacity;      /* MASKED: rows per expert */
  int32_t *status;       /* [1] int32 device word or NULL: 0 or MOE_K_GROUPED_* bits */
} moe_k_grouped;

/* Largest E_l of a grouped run on the GPU (the plan builder keeps per-expert tables in shared
 * memory). */
#define MOE_K_GROUPED_MAX_LOCAL_EXPERTS 2048

/*
 * Grouped run on the GPU: the plan from the device counts (kernels/routing/grouped_plan.cu),
 * GEMM1 (+ activation; rows gathered through permuted_to_token, or, FP8 runs, read from the
 * permuted copy made through plan->expanded_to_permuted, the inverse row map [N] the plan kernel
 * writes), GEMM2 into args->gemm2_out, then the valid rows copied to
 * args->output[permuted_to_token[r]]. args->do_finalize is 0, args->top_k 1 and
 * args->launch_ctas the capacity-sized grid (max_cgas(N, 1, E_l, tile) * C). No host sync.
 */
int moe_cuda_run_grouped(const moe_k_run *args, const moe_k_plan *plan, const moe_k_grouped *g,
                         void *stream);

/* moe_ep row kernels (kernels/ep.cu; core/ep_internal.h): dst[i, :] = src[map[i], :] for
 * i < n (rows of H bf16); and out[t, :] = bf16(sum over k = 0..K-1 of w[t*K+k] *
 * rows[pos[t*K+k], :]) in fp32, slot order, mul and add each rounded. */
int moe_cuda_ep_gather_rows(uint16_t *dst, const uint16_t *src, const int32_t *map, int64_t n,
                            int64_t H, void *stream);
int moe_cuda_ep_combine(uint16_t *out, const uint16_t *rows, const int32_t *pos, const uint16_t *w,
                        int64_t T, int32_t K, int64_t H, void *stream);

/* Device probing, device set/restore and error text live in core/backend_cuda.c (it calls
 * the CUDA runtime directly); kernels/ needs no device helpers of its own. */

#ifdef __cplusplus
}
#endif

#endif /* MOE_KERNELS_H_ */
