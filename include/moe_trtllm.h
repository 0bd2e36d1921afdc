/**
 * @file moe_trtllm.h
 * @brief moe-trtllm: fused Mixture-of-Experts inference with a stable C ABI.
 *
 * One call computes, for T tokens,
 *   out[t] = sum_k w[t,k] * FFN_{e(t,k)}(x[t]),   FFN_e(x) = W2_e * act(W1_e * x)
 * in four stages: routing (logits -> top-K -> a routing plan), GEMM1 (gather + W1 + fused
 * activation), GEMM2 (x W2) and finalize (weighted sum of each token's K rows).
 *
 * Call order: create a runner -> list the valid configs of a problem -> pick one -> its cluster
 * size -> size the workspace -> moe_routing_prepare() with that config -> moe_runner_run() with
 * the same config and the plan descriptor prepare filled. moe_forward() does all of it with the
 * default config.
 *
 * Conventions (see docs/api.md):
 *  - every fallible call returns a moe_status_t (0 = success) and, on failure, sets a
 *    thread-local message (moe_get_last_error()) naming the argument, the expected and the given
 *    value. The library never aborts, exits, prints or throws.
 *  - memory is the caller's: tensors are borrowed DLPack DLTensors that must stay valid until
 *    the stream work that uses them completes; the library allocates only small host state.
 *  - GPU calls take the CUDA stream last, only enqueue work, never synchronise (except the calls
 *    documented as synchronising: moe_plan_read(), moe_runner_autotune()), and are CUDA-graph
 *    capturable. On the CPU backend the stream must be NULL and the work is done on return.
 *  - option-like structs start with a uint32_t version, are append-only and have an
 *    *_init(ptr, version) function (bindings cannot see the *_INIT macros).
 *  - a runner is immutable after creation and may be shared by threads; concurrent calls need
 *    separate workspaces and plan descriptors.
 *
 * This header is C99 and needs no CUDA header.
 */
#ifndef MOE_TRTLLM_H_
#define MOE_TRTLLM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Export macro and version                                                                    */
/* ------------------------------------------------------------------------------------------ */

#if defined(_WIN32)
#if defined(MOE_TRTLLM_BUILDING)
#define MOE_API __declspec(dllexport)
#else
#define MOE_API __declspec(dllimport)
#endif
#else
#define MOE_API __attribute__((visibility("default")))
#endif

#define MOE_VERSION_MAJOR 0
#define MOE_VERSION_MINOR 1
#define MOE_VERSION_PATCH 0

/* ------------------------------------------------------------------------------------------ */
/* DLPack 1.x declarations (ABI-identical, written from the DLPack specification).            */
/* A real <dlpack/dlpack.h> included first takes over; the FP8/FP4 codes below are ours.      */
/* ------------------------------------------------------------------------------------------ */
#ifndef DLPACK_DLPACK_H_
#define DLPACK_DLPACK_H_
#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 1

/** Device type of a tensor (DLPack DLDeviceType). */
typedef enum {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLOpenCL = 4,
  kDLVulkan = 7,
  kDLMetal = 8,
  kDLVPI = 9,
  kDLROCM = 10,
  kDLROCMHost = 11,
  kDLExtDev = 12,
  kDLCUDAManaged = 13,
  kDLOneAPI = 14,
  kDLWebGPU = 15,
  kDLHexagon = 16,
  kDLMAIA = 17
} DLDeviceType;

/** A device: type and ordinal. */
typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;

/** Type code of a tensor element (DLPack DLDataTypeCode). */
typedef enum {
  kDLInt = 0U,
  kDLUInt = 1U,
  kDLFloat = 2U,
  kDLOpaqueHandle = 3U,
  kDLBfloat = 4U,
  kDLComplex = 5U,
  kDLBool = 6U,
  kDLFloat8_e3m4 = 7U,
  kDLFloat8_e4m3 = 8U,
  kDLFloat8_e4m3b11fnuz = 9U,
  kDLFloat8_e4m3fn = 10U,
  kDLFloat8_e4m3fnuz = 11U,
  kDLFloat8_e5m2 = 12U,
  kDLFloat8_e5m2fnuz = 13U,
  kDLFloat8_e8m0fnu = 14U,
  kDLFloat6_e2m3fn = 15U,
  kDLFloat6_e3m2fn = 16U,
  kDLFloat4_e2m1fn = 17U
} DLDataTypeCode;

/** Element type: code, bits per lane, lanes. */
typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;

/** A borrowed, non-owning tensor view. strides == NULL means compact row-major. */
typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;
#endif /* DLPACK_DLPACK_H_ */

/** The CUDA stream type: identical to cudaStream_t / CUstream, without including CUDA. */
struct CUstream_st;
typedef struct CUstream_st *moe_cuda_stream_t;

/* ------------------------------------------------------------------------------------------ */
/* Status codes (fixed values, never renumbered)                                               */
/* ------------------------------------------------------------------------------------------ */

/** Status of every fallible call. 0 is success. */
typedef int32_t moe_status_t;

#define MOE_STATUS_SUCCESS 0                /**< the call did what it says */
#define MOE_STATUS_INVALID_ARGUMENT 1       /**< an argument is NULL, out of range or mismatched */
#define MOE_STATUS_NOT_SUPPORTED 2          /**< valid but beyond this build's limits */
#define MOE_STATUS_OUT_OF_MEMORY 3          /**< host allocation failed */
#define MOE_STATUS_CUDA_ERROR 4             /**< a CUDA call failed; the message has its text */
#define MOE_STATUS_NO_DEVICE 5              /**< no CUDA device or driver is available */
#define MOE_STATUS_INSUFFICIENT_WORKSPACE 6 /**< the workspace is smaller than required */
#define MOE_STATUS_VERSION_MISMATCH 7       /**< a struct version this library does not know */
#define MOE_STATUS_INVALID_CONFIG                                                    \
  8                            /**< config index unknown, not valid for the problem, \
                                    or not the one the plan was prepared with */
#define MOE_STATUS_INTERNAL 99 /**< a bug in the library */

/* ------------------------------------------------------------------------------------------ */
/* Enum-like values (int32_t fields; fixed values)                                             */
/* ------------------------------------------------------------------------------------------ */

/** Backend of a runner. */
#define MOE_BACKEND_AUTO (-1) /**< CUDA when a device is usable, else CPU */
#define MOE_BACKEND_CPU 0     /**< the reference backend; tensors on kDLCPU, stream NULL */
#define MOE_BACKEND_CUDA 1    /**< the CUDA backend; tensors on kDLCUDA / kDLCUDAManaged */

/** Routing methods (reference numbering). */
#define MOE_ROUTING_DEFAULT 0           /**< softmax over E -> top-K, no renormalisation */
#define MOE_ROUTING_RENORMALIZE 1       /**< top-K of logits -> softmax over the K */
#define MOE_ROUTING_DEEPSEEK_V3 2       /**< sigmoid + bias, grouped top-K, renorm x scale */
#define MOE_ROUTING_LLAMA4 3            /**< top-1 -> sigmoid */
#define MOE_ROUTING_RENORMALIZE_NAIVE 4 /**< softmax over E -> top-K -> renormalise */
#define MOE_ROUTING_TOPK 5              /**< top-K, raw logits as weights */

/** Activations (reference numbering). */
#define MOE_ACTIVATION_SWIGLU 3   /**< gated: up * silu(gate) (with optional alpha/beta/clamp) */
#define MOE_ACTIVATION_GEGLU 4    /**< gated: up * gelu(gate) (erf form) */
#define MOE_ACTIVATION_RELU2 6    /**< non-gated: relu(x)^2 */
#define MOE_ACTIVATION_IDENTITY 7 /**< non-gated: x */

/** Element types of activations and weights. */
#define MOE_DTYPE_BF16 0
/** e4m3fn (DLPack kDLFloat8_e4m3fn, 8 bits); needs a scaling mode */
#define MOE_DTYPE_FP8_E4M3 1
/** MXFP4 weights (OCP MX): FP4 e2m1 values (DLPack kDLFloat4_e2m1fn, packed two per byte, low
 * nibble first) with one ue8m0 scale (DLPack kDLFloat8_e8m0fnu, 2^(s-127)) per 32 values along
 * K; weight_dtype only, with scaling_mode MOE_SCALING_MX (docs/formats.md, "MXFP4") */
#define MOE_DTYPE_MXFP4 2

/** Scaling modes of FP8 (docs/formats.md, "FP8"). */
/** BF16 activations and weights: no scales */
#define MOE_SCALING_NONE 0
/** FP8: fp32 scale per expert for W1 and for W2; static activation scales per call (run args
 * gemm1_input_scale, gemm2_input_scale) */
#define MOE_SCALING_PER_TENSOR 1
/** FP8: fp32 scale per 128x128 weight block; activations: fp32 per token per 128 columns,
 * computed by the library (or given with e4m3 hidden states) */
#define MOE_SCALING_BLOCK 2
/** MXFP4 weights: one ue8m0 scale per 32 weights along K (given with the weights). BF16
 * activations (W4A16) take no scales; FP8_E4M3 activations (W4A8) take the static per-tensor
 * scales of MOE_SCALING_PER_TENSOR (run args gemm1_input_scale, gemm2_input_scale) */
#define MOE_SCALING_MX 3

/** Which weight tensor (moe_weights_prepared_size / moe_weights_prepare). */
#define MOE_WEIGHTS_GEMM1 1 /**< canonical W1 [E_l, f*I, H]: up rows [0,I), then gate rows */
#define MOE_WEIGHTS_GEMM2 2 /**< canonical W2 [E_l, H, I] */
/** MXFP4 runners, gated activations: W1 [E_l, 2I, H] with gate and up rows interleaved as the
 * gpt-oss checkpoints store them (row 2f = gate feature f, row 2f+1 = up ("linear") feature
 * f); prepared exactly as MOE_WEIGHTS_GEMM1 of the de-interleaved rows (docs/formats.md) */
#define MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED 3

/** Plan tables (moe_plan_read). All int32 except EXPERT_WEIGHTS (bf16 bit patterns, uint16). */
#define MOE_PLAN_TOPK_IDS 0             /**< [T*K] expert id per slot (global ids) */
#define MOE_PLAN_EXPERT_WEIGHTS 1       /**< [T*K] bf16 routing weight per slot */
#define MOE_PLAN_EXPANDED_TO_PERMUTED 2 /**< [T*K] permuted row of each slot, -1 if not local */
#define MOE_PLAN_PERMUTED_TO_TOKEN 3    /**< [permuted_size] token of each row, -1 = padding */
#define MOE_PLAN_PERMUTED_TO_EXPANDED 4 /**< [permuted_size] slot of each row, -1 = padding */
#define MOE_PLAN_CTA_TO_BATCH 5         /**< [num_ctas] local expert of each CTA */
#define MOE_PLAN_CTA_TO_MN_LIMIT 6      /**< [num_ctas] exclusive row limit of each CTA */
#define MOE_PLAN_NUM_CTAS 7             /**< [1] number of non-exiting CTAs */
#define MOE_PLAN_PERMUTED_SIZE 8        /**< [1] padded permuted rows */
#define MOE_PLAN_EXPERT_COUNTS 9        /**< [E] slots routed to each expert (0 if not local) */

/* ------------------------------------------------------------------------------------------ */
/* Options and problem                                                                         */
/* ------------------------------------------------------------------------------------------ */

#define MOE_RUNNER_OPTIONS_VERSION 3
/**
 * Runner options. Initialise with moe_runner_options_init(). Version 2 appended scaling_mode,
 * version 3 sm_budget; older structs are still accepted (a version-1 struct means
 * MOE_SCALING_NONE, a version-1 or -2 struct sm_budget 0).
 */
typedef struct moe_runner_options {
  uint32_t version;         /**< MOE_RUNNER_OPTIONS_VERSION */
  int32_t backend;          /**< MOE_BACKEND_*; default MOE_BACKEND_AUTO */
  int32_t device_id;        /**< CUDA device ordinal; default 0 */
  int32_t sm_version;       /**< 0 = ask the device; e.g. 90 lets config queries and workspace
                                 sizing of the CUDA catalogue run without a GPU */
  int32_t activation_dtype; /**< MOE_DTYPE_BF16 (default) or MOE_DTYPE_FP8_E4M3 (which
                                 needs weight_dtype FP8_E4M3 or MXFP4 and a scaling mode) */
  int32_t weight_dtype;     /**< MOE_DTYPE_BF16 (default), MOE_DTYPE_FP8_E4M3 (needs
                                 activation_dtype FP8_E4M3 for now: no W8A16) or
                                 MOE_DTYPE_MXFP4 (scaling_mode MX; BF16 or FP8_E4M3
                                 activations) */
  int32_t activation;       /**< MOE_ACTIVATION_*; default SWIGLU. Fixes the weight layout */
  int32_t num_threads;      /**< CPU backend worker threads; 0 = one per core */
  int32_t reserved[8];      /**< must be zero */
  /* version 2 */
  int32_t scaling_mode; /**< MOE_SCALING_*: NONE for BF16 (default), PER_TENSOR or BLOCK for
                             FP8_E4M3, MX for MXFP4 weights */
  /* version 3 */
  int32_t sm_budget; /**< CUDA: most SMs the GEMM kernels of moe_runner_run and
                          moe_runner_run_grouped may occupy at once, so that communication
                          kernels (expert-parallel dispatch / combine) can run beside them on
                          the others; 0 (default) = all SMs, values above the device's SM count
                          mean all. 0..65535. Never changes results. It caps the persistent
                          GEMM2 (which every config with cluster size 1 then runs) at one
                          CTA per budgeted SM; the one-tile GEMM kernels (GEMM1;
                          GEMM2 of clusters > 1) still launch one CTA per tile and take any
                          free SM, and the short copy kernels size their grids from it
                          (docs/ep.md). No effect on the CPU backend. */
} moe_runner_options;
#define MOE_RUNNER_OPTIONS_INIT                                                         \
  {                                                                                     \
    MOE_RUNNER_OPTIONS_VERSION, MOE_BACKEND_AUTO, 0, 0, MOE_DTYPE_BF16, MOE_DTYPE_BF16, \
        MOE_ACTIVATION_SWIGLU, 0, {0, 0, 0, 0, 0, 0, 0, 0}, MOE_SCALING_NONE, 0         \
  }

#define MOE_PROBLEM_VERSION 1
/**
 * The shape of one MoE layer call. For workspace sizing num_tokens is the maximum T the
 * workspace must serve (a workspace sized for T_max serves every T <= T_max).
 */
typedef struct moe_problem {
  uint32_t version;            /**< MOE_PROBLEM_VERSION */
  int32_t num_experts;         /**< E, global expert count, 1..65535 (limits per method) */
  int64_t num_tokens;          /**< T >= 0 */
  int32_t top_k;               /**< K, 1..E */
  int32_t local_expert_offset; /**< o: this rank serves experts [o, o+E_l) */
  int32_t local_num_experts;   /**< E_l, 1..E; default (0 after init) means E */
  int32_t reserved0;           /**< must be zero */
  int64_t hidden_size;         /**< H */
  int64_t intermediate_size;   /**< I (per expert, not doubled for gated activations) */
  int64_t reserved[4];         /**< must be zero */
} moe_problem;
#define MOE_PROBLEM_INIT                           \
  {                                                \
    MOE_PROBLEM_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, { \
      0, 0, 0, 0                                   \
    }                                              \
  }

#define MOE_ROUTING_ARGS_VERSION 1
/**
 * Routing inputs. Exactly one of: logits; topk_ids + topk_weights; topk_packed.
 * With pre-routed input the math of the method is skipped, but its limits still apply.
 */
typedef struct moe_routing_args {
  uint32_t version;             /**< MOE_ROUTING_ARGS_VERSION */
  int32_t method;               /**< MOE_ROUTING_* */
  const DLTensor *logits;       /**< [T, E]; fp32 or bf16 (DeepSeekV3: fp32 or bf16;
                                     see docs/routing.md for the dtypes per method) */
  const DLTensor *bias;         /**< [E] fp32 or bf16, optional (DeepSeekV3 only; NULL = 0) */
  const DLTensor *topk_ids;     /**< [T, K] int32 global expert ids (pre-routed) */
  const DLTensor *topk_weights; /**< [T, K] bf16 or fp32 weights (pre-routed; fp32 is
                                     rounded to bf16 to nearest even) */
  const DLTensor *topk_packed;  /**< [T, K] int32 (id << 16) | bf16 bits (pre-routed) */
  int32_t n_group;              /**< DeepSeekV3 groups (>= 1; 0 is taken as 1) */
  int32_t topk_group;           /**< DeepSeekV3 groups kept (>= 1; 0 is taken as n_group) */
  float routed_scaling_factor;  /**< DeepSeekV3 output scale; default 1.0 */
  int32_t enable_pdl;           /**< 1 = programmatic dependent launch between kernels; never
                                     changes results; default 1 */
  int32_t reserved[6];          /**< must be zero */
} moe_routing_args;

#define MOE_RUN_ARGS_VERSION 2
/**
 * Inputs and outputs of the GEMM stages. Version 2 appended the FP8 scales; a version-1
 * struct is still accepted (it has none: BF16 runners only). Every tensor: data + byte_offset
 * aligned to the element size; the prepared weights 16-byte aligned; on the CUDA backend also
 * hidden_states, output and permuted_output (TMA / 16-byte vector access).
 */
typedef struct moe_run_args {
  uint32_t version;                  /**< MOE_RUN_ARGS_VERSION */
  int32_t do_finalize;               /**< 1: write output [T, H]; 0: write permuted_output and
                                          leave weights and maps in the plan (default 1) */
  const DLTensor *hidden_states;     /**< [T, H] bf16; on an FP8 runner bf16 (quantized by the
                                          library) or e4m3 (already quantized, see the scales
                                          below) */
  const DLTensor *gemm1_weights;     /**< prepared W1 (moe_weights_prepare), uint8 [bytes] */
  const DLTensor *gemm2_weights;     /**< prepared W2 (moe_weights_prepare), uint8 [bytes] */
  const DLTensor *gemm1_bias;        /**< [E_l, f*I] fp32 or bf16 (bf16: CPU backend only for
                                          now) in canonical row order, optional */
  const DLTensor *gemm2_bias;        /**< [E_l, H] fp32 or bf16 (likewise), optional */
  const DLTensor *gemm1_alpha;       /**< [E_l] fp32 SwiGLU alpha, optional (default 1) */
  const DLTensor *gemm1_beta;        /**< [E_l] fp32 SwiGLU beta, optional (default 0) */
  const DLTensor *gemm1_clamp_limit; /**< [E_l] fp32 SwiGLU clamp limit, optional (none) */
  const DLTensor *output;            /**< [T, H] bf16, written when do_finalize = 1 */
  const DLTensor *permuted_output;   /**< [>= max_padded_rows, H] bf16, written when
                                          do_finalize = 0 (rows past permuted_size and padding
                                          rows are unspecified) */
  int32_t enable_pdl;                /**< 1 = programmatic dependent launch (default 1) */
  int32_t reserved[7];               /**< must be zero */
  /* version 2: FP8 scales (NULL on a BF16 runner) */
  const DLTensor *hidden_states_scale; /**< BLOCK with e4m3 hidden_states: [T, H/128] fp32,
                                            hidden[t, c] = q[t, c] * scale[t, c/128]; else NULL */
  const DLTensor *gemm1_input_scale;   /**< PER_TENSOR and MX with FP8 activations (W4A8): [1]
                                            fp32 s1 (required): bf16 hidden is quantized as
                                            e4m3(x / s1), and e4m3 hidden is read as q * s1.
                                            BLOCK, W4A16: NULL */
  const DLTensor *gemm2_input_scale;   /**< PER_TENSOR and W4A8: [1] fp32 s2 (required): GEMM1's
                                            activation output y becomes e4m3(y / s2). BLOCK,
                                            W4A16: NULL. Scale values must be positive and
                                            finite (not checked: they may live on the device) */
} moe_run_args;

#define MOE_PLAN_VERSION 1
/**
 * Host-side descriptor of a prepared routing plan. Filled by moe_routing_prepare(), read by
 * moe_runner_run(), which checks on the host that the config, problem and workspace match.
 * Caller-owned plain data; treat the fields as read-only: every field is validated, and a
 * descriptor that differs from the one prepare returned is refused (INVALID_ARGUMENT).
 * A workspace holds one plan: a later prepare into it (or into memory overlapping it, by any
 * runner) makes this descriptor stale, and run and the plan readers refuse it (docs/api.md).
 */
typedef struct moe_plan {
  uint32_t version;            /**< MOE_PLAN_VERSION (set by prepare) */
  int32_t config;              /**< config index routing was prepared with */
  int32_t tile;                /**< cluster (CGA) tile in tokens */
  int32_t cluster_size;        /**< C */
  int64_t num_tokens;          /**< T */
  int32_t num_experts;         /**< E */
  int32_t top_k;               /**< K */
  int32_t local_expert_offset; /**< o */
  int32_t local_num_experts;   /**< E_l */
  int64_t hidden_size;         /**< H */
  int64_t intermediate_size;   /**< I */
  int64_t max_padded_rows;     /**< capacity of permuted-space buffers */
  int64_t max_ctas;            /**< capacity of the CTA tables = GEMM launch size */
  uint64_t workspace;          /**< address of the workspace routing wrote */
  uint64_t workspace_bytes;    /**< its size */
  uint64_t runner;             /**< identity of the runner that prepared it */
  uint32_t state;              /**< internal: nonzero once prepared (a unique stamp) */
  int32_t backend;             /**< MOE_BACKEND_CPU or MOE_BACKEND_CUDA */
} moe_plan;

#define MOE_CONFIG_INFO_VERSION 1
/** Backend-independent description of a kernel config. */
typedef struct moe_config_info {
  uint32_t version;      /**< MOE_CONFIG_INFO_VERSION (set by the call) */
  int32_t index;         /**< config index */
  int32_t tile;          /**< cluster (CGA) tile in tokens: the plan's padding unit */
  int32_t cta_tile;      /**< tokens per CTA = tile / cluster_size (wgmma N) */
  int32_t cluster_size;  /**< C: CTAs of a cluster along tokens sharing weight tiles */
  int32_t gemm1_block_m; /**< weight rows per CTA tile in GEMM1 */
  int32_t gemm2_block_m; /**< weight rows per CTA tile in GEMM2 */
  int32_t block_k;       /**< K elements per pipeline stage */
  int32_t stages;        /**< pipeline stages */
  int32_t sm_version;    /**< architecture of the catalogue (90 = sm_90a) */
  char name[64];         /**< e.g. "sm90_bf16_t64_c2_m128_s6" */
} moe_config_info;

/** Read-only view of a plan inside a workspace: device pointers on the CUDA backend. */
typedef struct moe_plan_view {
  int32_t device_type;           /**< kDLCPU or kDLCUDA */
  int32_t device_id;             /**< device of the pointers */
  int64_t num_tokens;            /**< T */
  int32_t top_k;                 /**< K */
  int32_t num_experts;           /**< E */
  int32_t tile;                  /**< cluster tile */
  int32_t cluster_size;          /**< C */
  int64_t max_padded_rows;       /**< capacity of the permuted maps */
  int64_t max_ctas;              /**< capacity of the CTA tables */
  int32_t *topk_ids;             /**< [T*K] */
  uint16_t *expert_weights;      /**< [T*K] bf16 bit patterns */
  int32_t *expanded_to_permuted; /**< [T*K] */
  int32_t *permuted_to_token;    /**< [max_padded_rows] */
  int32_t *permuted_to_expanded; /**< [max_padded_rows] */
  int32_t *cta_to_batch;         /**< [max_ctas] */
  int32_t *cta_to_mn_limit;      /**< [max_ctas] */
  int32_t *num_ctas;             /**< [1] */
  int32_t *permuted_size;        /**< [1] */
  int32_t *expert_counts;        /**< [E] */
} moe_plan_view;

/** Opaque runner handle. */
typedef struct moe_runner moe_runner;

/* ------------------------------------------------------------------------------------------ */
/* Library, errors, option initialisers                                                        */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Library version. Bindings compare the major version at load.
 * @param[out] major,minor,patch may each be NULL.
 * @retval MOE_STATUS_SUCCESS always.
 */
MOE_API moe_status_t moe_get_version(int32_t *major, int32_t *minor, int32_t *patch);

/** @brief Static text of a status code; never NULL; thread-safe. */
MOE_API const char *moe_status_string(moe_status_t status);

/**
 * @brief Message of the last failure on the calling thread. Never NULL ("" if none). Valid
 * until the next moe_* call on this thread; do not free. Not a success indicator: check the
 * returned status.
 */
MOE_API const char *moe_get_last_error(void);

/**
 * @brief Number of usable CUDA devices (0 with no driver or no GPU, or a CPU-only build).
 * @param[out] count
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (count NULL).
 */
MOE_API moe_status_t moe_cuda_device_count(int32_t *count);

/**
 * @brief Fill @p opts with defaults for struct @p version (1..MOE_RUNNER_OPTIONS_VERSION).
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (NULL), MOE_STATUS_VERSION_MISMATCH.
 */
MOE_API moe_status_t moe_runner_options_init(moe_runner_options *opts, uint32_t version);
/** @brief Fill @p problem with zeros and @p version. Same statuses as above. */
MOE_API moe_status_t moe_problem_init(moe_problem *problem, uint32_t version);
/** @brief Defaults: method RENORMALIZE, n_group 1, topk_group 1, scale 1.0, enable_pdl 1. */
MOE_API moe_status_t moe_routing_args_init(moe_routing_args *args, uint32_t version);
/** @brief Defaults: do_finalize 1, enable_pdl 1, every tensor NULL. */
MOE_API moe_status_t moe_run_args_init(moe_run_args *args, uint32_t version);
/** @brief Zero a plan descriptor (prepare fills it). */
MOE_API moe_status_t moe_plan_init(moe_plan *plan, uint32_t version);

/* ------------------------------------------------------------------------------------------ */
/* Runner                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Create a runner.
 * @param[in] opts options (NULL = defaults). Borrowed for the call only.
 * @param[out] out the new runner, owned by the caller (moe_runner_destroy); NULL on failure.
 * @retval MOE_STATUS_SUCCESS
 * @retval MOE_STATUS_INVALID_ARGUMENT out NULL, or an option out of range
 * @retval MOE_STATUS_VERSION_MISMATCH unknown opts->version
 * @retval MOE_STATUS_NOT_SUPPORTED CUDA requested from a CPU-only build, or an sm_version
 *         without a catalogue
 * @retval MOE_STATUS_NO_DEVICE CUDA backend requested (sm_version 0) but no usable device
 * @retval MOE_STATUS_OUT_OF_MEMORY
 */
MOE_API moe_status_t moe_runner_create(const moe_runner_options *opts, moe_runner **out);

/** @brief Destroy a runner. NULL is a no-op. Does not synchronise any stream. */
MOE_API void moe_runner_destroy(moe_runner *runner);

/**
 * @brief The backend the runner executes on (MOE_BACKEND_CPU or MOE_BACKEND_CUDA).
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (NULL).
 */
MOE_API moe_status_t moe_runner_get_backend(const moe_runner *runner, int32_t *backend);

/**
 * @brief Configs valid for @p problem, best first (index 0 is the default).
 * @param[out] configs caller array of @p capacity entries (may be NULL when capacity is 0).
 * @param[out] count number of valid configs (all of them, even if more than capacity).
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (bad problem, NULL count, capacity
 *         < 0), MOE_STATUS_NOT_SUPPORTED (no config supports the problem).
 */
MOE_API moe_status_t moe_runner_get_valid_configs(const moe_runner *runner,
                                                  const moe_problem *problem, int32_t *configs,
                                                  int32_t capacity, int32_t *count);

/** @brief The default (best-first) config of @p problem. Statuses as get_valid_configs. */
MOE_API moe_status_t moe_runner_get_default_config(const moe_runner *runner,
                                                   const moe_problem *problem, int32_t *config);

/** @brief Number of configs in the runner's catalogue (valid indices are 0..n-1). */
MOE_API moe_status_t moe_runner_get_num_configs(const moe_runner *runner, int32_t *count);

/**
 * @brief Describe a config of the catalogue.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (NULL), MOE_STATUS_INVALID_CONFIG.
 */
MOE_API moe_status_t moe_runner_describe_config(const moe_runner *runner, int32_t config,
                                                moe_config_info *info);

/** @brief Cluster size C of a config (the plan's CTA-table granularity). */
MOE_API moe_status_t moe_runner_get_cluster_size(const moe_runner *runner, int32_t config,
                                                 int32_t *cluster_size);

/**
 * @brief Workspace bytes needed to prepare and run @p problem (num_tokens = T_max) with
 * @p config. Works without a GPU when the runner has an sm_version.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_INVALID_CONFIG,
 *         MOE_STATUS_NOT_SUPPORTED (a table or row count would exceed int32).
 */
MOE_API moe_status_t moe_runner_get_workspace_size(const moe_runner *runner,
                                                   const moe_problem *problem, int32_t config,
                                                   size_t *bytes);

/* ------------------------------------------------------------------------------------------ */
/* Weights                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Bytes of a prepared weight tensor (the layout depends on the runner options only:
 * BF16 2 bytes per weight; FP8 1 byte per weight, then at a 256-byte aligned offset the fp32
 * scales; MXFP4 per expert the packed values and the ue8m0 scales, each section 128-byte
 * aligned; docs/formats.md). FP8 needs hidden_size and intermediate_size multiples of 128,
 * MXFP4 multiples of 32.
 * @param[in] which MOE_WEIGHTS_GEMM1, MOE_WEIGHTS_GEMM2 or (MXFP4)
 *            MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED (the size of GEMM1).
 */
MOE_API moe_status_t moe_weights_prepared_size(const moe_runner *runner, const moe_problem *problem,
                                               int32_t which, size_t *bytes);

/**
 * @brief Convert canonical weights into the kernels' layout (once, at load time). On an FP8
 * runner this is moe_weights_prepare_scaled() with canonical_scales NULL (bf16 quantized); an
 * MXFP4 runner needs the scales (moe_weights_prepare_scaled), so this is INVALID_ARGUMENT.
 * @param[in] canonical bf16 W1 [E_l, f*I, H] (up rows, then gate rows) or W2 [E_l, H, I],
 *            on the runner's device. Borrowed until the stream work completes.
 * @param[in] prepared uint8 1-D tensor of at least moe_weights_prepared_size() bytes on the
 *            same device, 16-byte aligned, not overlapping @p canonical (no in-place
 *            preparation: INVALID_ARGUMENT); written by the call.
 * @param stream CUDA stream (NULL = legacy default) or NULL on the CPU backend.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_CUDA_ERROR.
 */
MOE_API moe_status_t moe_weights_prepare(const moe_runner *runner, const moe_problem *problem,
                                         int32_t which, const DLTensor *canonical,
                                         const DLTensor *prepared, moe_cuda_stream_t stream);

/**
 * @brief Prepare weights with their scales (FP8 checkpoints), or quantize bf16 weights.
 * With R x C the canonical rows x cols of @p which (W1: f*I x H, W2: H x I):
 *  - BF16 runner: @p canonical bf16 [E_l, R, C], @p canonical_scales NULL (= moe_weights_prepare).
 *  - FP8 runner, canonical_scales given: @p canonical e4m3 [E_l, R, C] and fp32 scales
 *    [E_l, R/128, C/128] (BLOCK; W1's row blocks: up, then gate) or [E_l] (PER_TENSOR);
 *    weight = q * scale. Copied as they are (no requantization).
 *  - FP8 runner, canonical_scales NULL: @p canonical bf16 [E_l, R, C], quantized by the
 *    library (scale = amax / 448 per expert or per 128x128 block; docs/formats.md).
 *  - MXFP4 runner (the checkpoint layout): @p canonical the packed e2m1 blocks, uint8
 *    [E_l, R, C/2] (or float4_e2m1fn with 4 bits x 2 lanes, same shape), low nibble = even
 *    column; @p canonical_scales (required) ue8m0, uint8 or float8_e8m0fnu [E_l, R, C/32];
 *    weight = e2m1 * 2^(s - 127). C % 32 == 0. Scale code 0xFF (NaN in OCP MX) is refused on
 *    the CPU backend (the GPU copies it; it decodes as NaN). @p which
 *    MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED takes gpt-oss's interleaved gate/up rows. The
 *    prepared bytes do not depend on the backend.
 * @param[in] prepared uint8 1-D tensor of at least moe_weights_prepared_size() bytes, 16-byte
 *            aligned, on the runner's device; written by the call (nothing on failure).
 * @param stream CUDA stream (NULL = legacy default) or NULL on the CPU backend.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_NOT_SUPPORTED,
 *         MOE_STATUS_CUDA_ERROR.
 */
MOE_API moe_status_t moe_weights_prepare_scaled(const moe_runner *runner,
                                                const moe_problem *problem, int32_t which,
                                                const DLTensor *canonical,
                                                const DLTensor *canonical_scales,
                                                const DLTensor *prepared, moe_cuda_stream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Routing and run                                                                             */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Route: compute top-K ids and weights and the routing plan for @p config into the
 * workspace, and fill @p plan.
 * @param[in] problem the call's shape (num_tokens = this call's T <= the workspace's T_max).
 * @param[in] args routing inputs (see moe_routing_args).
 * @param[in] config a config valid for @p problem; its tile and cluster size shape the plan.
 * @param[in] workspace caller memory of @p workspace_bytes on the runner's device, at least
 *            moe_runner_get_workspace_size(); 256-byte aligned.
 * @param[out] plan host descriptor filled for moe_runner_run().
 * @param stream CUDA stream; NULL on the CPU backend. Enqueue only; capturable.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_INVALID_CONFIG,
 *         MOE_STATUS_NOT_SUPPORTED, MOE_STATUS_INSUFFICIENT_WORKSPACE, MOE_STATUS_CUDA_ERROR.
 */
MOE_API moe_status_t moe_routing_prepare(moe_runner *runner, const moe_problem *problem,
                                         const moe_routing_args *args, int32_t config,
                                         void *workspace, size_t workspace_bytes, moe_plan *plan,
                                         moe_cuda_stream_t stream);

/**
 * @brief Run GEMM1, GEMM2 and (if do_finalize) finalize on a prepared plan.
 * @param[in] config must equal plan->config (checked on the host, no synchronisation).
 * @param[in] plan the descriptor moe_routing_prepare() filled for this problem and workspace,
 *            unedited and still current (no prepare into the workspace since); else
 *            INVALID_ARGUMENT.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_INVALID_CONFIG,
 *         MOE_STATUS_INSUFFICIENT_WORKSPACE, MOE_STATUS_CUDA_ERROR.
 */
MOE_API moe_status_t moe_runner_run(moe_runner *runner, const moe_problem *problem,
                                    const moe_run_args *args, int32_t config, const moe_plan *plan,
                                    void *workspace, size_t workspace_bytes,
                                    moe_cuda_stream_t stream);

/**
 * @brief One-shot forward with the default config: routing then run.
 * The workspace must be sized for the default config (moe_runner_get_default_config +
 * moe_runner_get_workspace_size). Statuses: those of prepare and run.
 */
MOE_API moe_status_t moe_forward(moe_runner *runner, const moe_problem *problem,
                                 const moe_routing_args *routing, const moe_run_args *run,
                                 void *workspace, size_t workspace_bytes, moe_cuda_stream_t stream);

/**
 * @brief Time every valid config on @p stream (prepare + run, median of @p iterations) and
 * return them fastest first. Synchronises the stream. Outputs are overwritten.
 * @param[out] configs caller array of @p capacity; @param[out] times_us matching times
 * (may be NULL); @param[out] count number of configs timed.
 * The workspace must be large enough for every valid config (the maximum of their sizes).
 */
MOE_API moe_status_t moe_runner_autotune(moe_runner *runner, const moe_problem *problem,
                                         const moe_routing_args *routing, const moe_run_args *run,
                                         void *workspace, size_t workspace_bytes,
                                         int32_t iterations, int32_t *configs, float *times_us,
                                         int32_t capacity, int32_t *count,
                                         moe_cuda_stream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Grouped run: external token layouts for expert parallelism (docs/ep.md)                     */
/* ------------------------------------------------------------------------------------------ */

/** Token layouts of moe_runner_run_grouped (moe_grouped_args.layout). */
#define MOE_LAYOUT_CONTIGUOUS 0 /**< hidden [N, H], rows grouped by local expert in order */
#define MOE_LAYOUT_MASKED 1     /**< hidden [E_l, capacity, H], count[e] valid rows each */

/** Bits of moe_grouped_args.count_status: the counts a CUDA grouped run found invalid (each
 * clamped on the device, never followed past the buffers). Fixed values. */
#define MOE_GROUPED_COUNTS_NEGATIVE 1      /**< a count < 0: taken as 0 */
#define MOE_GROUPED_COUNTS_OVER_CAPACITY 2 /**< MASKED: a count > capacity: taken as capacity */
#define MOE_GROUPED_COUNTS_SUM_OVER_ROWS 4 /**< CONTIGUOUS: sum > N: cut to end at row N */

#define MOE_GROUPED_ARGS_VERSION 3
/**
 * Inputs and outputs of moe_runner_run_grouped: tokens a dispatcher already grouped by local
 * expert. No routing, no finalize: the output rows are FFN_e(x) unweighted, and the dispatcher
 * combines them. With N = problem->num_tokens:
 *  - CONTIGUOUS: hidden [N, H]; rows [s_e, s_e + count[e]) belong to local expert e, with
 *    s_e = sum of the counts before e; sum(count) <= N; output [N, H]: rows past the sum are
 *    not written.
 *  - MASKED: hidden [E_l, capacity, H] and N = E_l * capacity; rows [0, count[e]) of expert e
 *    are valid, count[e] <= capacity; output [E_l, capacity, H]: the other rows are not written.
 * expert_counts is int32 [E_l] on the runner's device (CUDA: device memory, read on the
 * device only; CPU: host memory). Tensors as moe_run_args (bf16 output; hidden bf16, or on an
 * FP8 runner bf16 or e4m3 with the version-3 scales; 16-byte aligned on CUDA). Version 2
 * appended count_status, version 3 the FP8 scales (same meaning and checks as moe_run_args',
 * with T = N rows: BLOCK e4m3 hidden takes hidden_states_scale [N, H/128], for MASKED
 * [E_l * capacity, H/128], row e * capacity + i for hidden[e, i]); versions 1 and 2 are still
 * accepted (no scales: BF16 runners, or BLOCK with bf16 hidden). FP8 grouped runs (PER_TENSOR,
 * BLOCK) on the CPU and CUDA backends.
 */
typedef struct moe_grouped_args {
  uint32_t version;                  /**< MOE_GROUPED_ARGS_VERSION */
  int32_t layout;                    /**< MOE_LAYOUT_*; default CONTIGUOUS */
  int64_t capacity;                  /**< MASKED: rows per expert (>= 0); CONTIGUOUS: 0 */
  const DLTensor *hidden_states;     /**< see the layouts above; bf16, or on an FP8 runner bf16
                                          (quantized by the library) or e4m3 (see the scales) */
  const DLTensor *expert_counts;     /**< [E_l] int32 */
  const DLTensor *gemm1_weights;     /**< prepared W1 (moe_weights_prepare), uint8 [bytes] */
  const DLTensor *gemm2_weights;     /**< prepared W2 (moe_weights_prepare), uint8 [bytes] */
  const DLTensor *gemm1_bias;        /**< [E_l, f*I] fp32 or bf16 (CPU), optional */
  const DLTensor *gemm2_bias;        /**< [E_l, H] fp32 or bf16 (CPU), optional */
  const DLTensor *gemm1_alpha;       /**< [E_l] fp32 SwiGLU alpha, optional */
  const DLTensor *gemm1_beta;        /**< [E_l] fp32 SwiGLU beta, optional */
  const DLTensor *gemm1_clamp_limit; /**< [E_l] fp32 SwiGLU clamp limit, optional */
  const DLTensor *output;            /**< same shape as hidden_states; bf16 */
  int32_t enable_pdl;                /**< 1 = programmatic dependent launch (default 1) */
  int32_t reserved[7];               /**< must be zero */
  /* version 2 */
  const DLTensor *count_status; /**< optional int32 [1] on the runner's device: the call writes
                                     0, or (CUDA, where the counts are checked on the device)
                                     the MOE_GROUPED_COUNTS_* bits of the invalid counts it
                                     clamped; read it after the stream work completes. NULL =
                                     no report (the clamping still happens) */
  /* version 3: FP8 scales (NULL on a BF16 runner), as in moe_run_args version 2 */
  const DLTensor *hidden_states_scale; /**< BLOCK with e4m3 hidden_states: [N, H/128] fp32 (one
                                            row per hidden row; MASKED: [E_l * capacity, H/128]);
                                            else NULL */
  const DLTensor *gemm1_input_scale;   /**< PER_TENSOR: [1] fp32 s1 (required): bf16 hidden is
                                            quantized as e4m3(x / s1), e4m3 hidden is read as
                                            q * s1. BLOCK: NULL */
  const DLTensor *gemm2_input_scale;   /**< PER_TENSOR: [1] fp32 s2 (required): GEMM1's
                                            activation output y becomes e4m3(y / s2). BLOCK:
                                            NULL. Positive and finite (not checked) */
} moe_grouped_args;

/** @brief Defaults: layout CONTIGUOUS, capacity 0, enable_pdl 1, every tensor NULL. */
MOE_API moe_status_t moe_grouped_args_init(moe_grouped_args *args, uint32_t version);

/**
 * @brief Workspace bytes of moe_runner_run_grouped for @p problem (num_tokens = the largest N,
 * for MASKED E_l * capacity) and @p config. top_k is not used by the grouped path (any valid
 * value). The plan tables are built in the workspace from the counts of each call.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_INVALID_CONFIG,
 *         MOE_STATUS_NOT_SUPPORTED.
 */
MOE_API moe_status_t moe_runner_get_grouped_workspace_size(const moe_runner *runner,
                                                           const moe_problem *problem,
                                                           int32_t config, size_t *bytes);

/**
 * @brief GEMM1 (+activation) and GEMM2 on tokens already grouped by local expert (layouts
 * above). Each output row equals, bit for bit, the unweighted row moe_runner_run computes for
 * the same token and expert on the same backend (FP8 runners: with the same config, hidden input
 * and scales; the quantization points are those of moe_runner_run). The GEMM plan (CTA tables) is
 * built from the counts: on the CPU from the host counts; on CUDA by a device kernel from the
 * device counts, with no host synchronisation (CUDA-graph capturable; the launch grids depend on N,
 * never on the counts). On failure nothing is written. Invalid counts: the CPU backend checks them
 * on the host (INVALID_ARGUMENT). The CUDA backend cannot read them on the host: it clamps them on
 * the device (see MOE_GROUPED_COUNTS_*), never reads or writes past the buffers, computes the rows
 * of the clamped counts and reports the violation in args->count_status when given.
 * @param[in] problem E, o, E_l, H, I of the layer; num_tokens = N of this call (<= the
 *            workspace's). CUDA: E_l <= 2048.
 * @param[in] config a config valid for @p problem.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (shapes, dtypes; CPU: counts negative,
 *         past capacity or summing past N), MOE_STATUS_INVALID_CONFIG,
 *         MOE_STATUS_INSUFFICIENT_WORKSPACE, MOE_STATUS_NOT_SUPPORTED (MXFP4 runners; CUDA:
 *         E_l > 2048), MOE_STATUS_VERSION_MISMATCH, MOE_STATUS_CUDA_ERROR.
 */
MOE_API moe_status_t moe_runner_run_grouped(moe_runner *runner, const moe_problem *problem,
                                            const moe_grouped_args *args, int32_t config,
                                            void *workspace, size_t workspace_bytes,
                                            moe_cuda_stream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Plan inspection                                                                             */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Pointers to the plan tables inside the workspace (device pointers on CUDA).
 * Contents are valid once the prepare's stream work completed.
 */
MOE_API moe_status_t moe_plan_get_view(const moe_runner *runner, const moe_plan *plan,
                                       const void *workspace, size_t workspace_bytes,
                                       moe_plan_view *view);

/**
 * @brief Copy one plan table (MOE_PLAN_*) to host memory. Synchronises @p stream (debugging,
 * tests, bindings). @p dst_bytes must hold the table: element counts are given in the
 * moe_plan_read_count() query; int32 tables take 4 bytes per element, weights 2.
 */
MOE_API moe_status_t moe_plan_read(const moe_runner *runner, const moe_plan *plan,
                                   const void *workspace, size_t workspace_bytes, int32_t table,
                                   void *dst, size_t dst_bytes, moe_cuda_stream_t stream);

/**
 * @brief Element count of a plan table for this plan (synchronises @p stream to read the
 * device-side sizes for the permuted and CTA tables).
 */
MOE_API moe_status_t moe_plan_read_count(const moe_runner *runner, const moe_plan *plan,
                                         const void *workspace, size_t workspace_bytes,
                                         int32_t table, int64_t *count, moe_cuda_stream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* MOE_TRTLLM_H_ */
