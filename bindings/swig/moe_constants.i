/*
 * moe_constants.i - the public header's value macros as module constants, shared by the Python
 * module (run-time constants, through moe_bind_decls.i) and the Java one (compile-time constants
 * of MoeNativeConstants: moe_trtllm_jni.i includes this after %import of the header and
 * %javaconst(1)). The values are the header's macros; none is typed here. The bindings' drift
 * tests (Java ApiTest/ThreadingTest.constantsMatchHeader, Python test_api) fail when the header
 * gains a value this list lacks.
 */
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
%constant int DTYPE_MXFP4 = MOE_DTYPE_MXFP4;
%constant int SCALING_NONE = MOE_SCALING_NONE;
%constant int SCALING_PER_TENSOR = MOE_SCALING_PER_TENSOR;
%constant int SCALING_BLOCK = MOE_SCALING_BLOCK;
%constant int SCALING_MX = MOE_SCALING_MX;
%constant int LAYOUT_CONTIGUOUS = MOE_LAYOUT_CONTIGUOUS;
%constant int LAYOUT_MASKED = MOE_LAYOUT_MASKED;
%constant int WEIGHTS_GEMM1 = MOE_WEIGHTS_GEMM1;
%constant int WEIGHTS_GEMM2 = MOE_WEIGHTS_GEMM2;
%constant int WEIGHTS_GEMM1_GATE_UP_INTERLEAVED = MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED;
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
