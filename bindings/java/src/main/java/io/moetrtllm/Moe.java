package io.moetrtllm;

import java.lang.reflect.Field;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;

/** Constants of the C header and library-level functions. */
public final class Moe {
  private Moe() {}

  public static final int STATUS_SUCCESS = MoeNativeConstants.STATUS_SUCCESS;
  public static final int STATUS_INVALID_ARGUMENT = MoeNativeConstants.STATUS_INVALID_ARGUMENT;
  public static final int STATUS_NOT_SUPPORTED = MoeNativeConstants.STATUS_NOT_SUPPORTED;
  public static final int STATUS_OUT_OF_MEMORY = MoeNativeConstants.STATUS_OUT_OF_MEMORY;
  public static final int STATUS_CUDA_ERROR = MoeNativeConstants.STATUS_CUDA_ERROR;
  public static final int STATUS_NO_DEVICE = MoeNativeConstants.STATUS_NO_DEVICE;
  public static final int STATUS_INSUFFICIENT_WORKSPACE =
      MoeNativeConstants.STATUS_INSUFFICIENT_WORKSPACE;
  public static final int STATUS_VERSION_MISMATCH = MoeNativeConstants.STATUS_VERSION_MISMATCH;
  public static final int STATUS_INVALID_CONFIG = MoeNativeConstants.STATUS_INVALID_CONFIG;
  public static final int STATUS_INTERNAL = MoeNativeConstants.STATUS_INTERNAL;

  public static final int BACKEND_AUTO = MoeNativeConstants.BACKEND_AUTO;
  public static final int BACKEND_CPU = MoeNativeConstants.BACKEND_CPU;
  public static final int BACKEND_CUDA = MoeNativeConstants.BACKEND_CUDA;

  public static final int ROUTING_DEFAULT = MoeNativeConstants.ROUTING_DEFAULT;
  public static final int ROUTING_RENORMALIZE = MoeNativeConstants.ROUTING_RENORMALIZE;
  public static final int ROUTING_DEEPSEEK_V3 = MoeNativeConstants.ROUTING_DEEPSEEK_V3;
  public static final int ROUTING_LLAMA4 = MoeNativeConstants.ROUTING_LLAMA4;
  public static final int ROUTING_RENORMALIZE_NAIVE = MoeNativeConstants.ROUTING_RENORMALIZE_NAIVE;
  public static final int ROUTING_TOPK = MoeNativeConstants.ROUTING_TOPK;

  public static final int ACTIVATION_SWIGLU = MoeNativeConstants.ACTIVATION_SWIGLU;
  public static final int ACTIVATION_GEGLU = MoeNativeConstants.ACTIVATION_GEGLU;
  public static final int ACTIVATION_RELU2 = MoeNativeConstants.ACTIVATION_RELU2;
  public static final int ACTIVATION_IDENTITY = MoeNativeConstants.ACTIVATION_IDENTITY;

  /** Runner activation / weight dtypes (Runner.Options activationDtype, weightDtype). */
  public static final int DTYPE_BF16 = MoeNativeConstants.DTYPE_BF16;
  public static final int DTYPE_FP8_E4M3 = MoeNativeConstants.DTYPE_FP8_E4M3;
  /** MXFP4 weights (weight dtype only, with SCALING_MX; docs/formats.md "MXFP4"). */
  public static final int DTYPE_MXFP4 = MoeNativeConstants.DTYPE_MXFP4;

  public static final int SCALING_NONE = MoeNativeConstants.SCALING_NONE;
  public static final int SCALING_PER_TENSOR = MoeNativeConstants.SCALING_PER_TENSOR;
  public static final int SCALING_BLOCK = MoeNativeConstants.SCALING_BLOCK;
  /** MXFP4: ue8m0 scales per 32 weights along K, given with the weights. */
  public static final int SCALING_MX = MoeNativeConstants.SCALING_MX;

  /** Token layouts of the grouped run (C moe_runner_run_grouped; docs/ep.md). */
  public static final int LAYOUT_CONTIGUOUS = MoeNativeConstants.LAYOUT_CONTIGUOUS;
  public static final int LAYOUT_MASKED = MoeNativeConstants.LAYOUT_MASKED;

  public static final int WEIGHTS_GEMM1 = MoeNativeConstants.WEIGHTS_GEMM1;
  public static final int WEIGHTS_GEMM2 = MoeNativeConstants.WEIGHTS_GEMM2;
  /** MXFP4 W1 with gpt-oss's interleaved gate/up rows (row 2f gate, 2f+1 up). */
  public static final int WEIGHTS_GEMM1_GATE_UP_INTERLEAVED =
      MoeNativeConstants.WEIGHTS_GEMM1_GATE_UP_INTERLEAVED;

  public static final int PLAN_TOPK_IDS = MoeNativeConstants.PLAN_TOPK_IDS;
  public static final int PLAN_EXPERT_WEIGHTS = MoeNativeConstants.PLAN_EXPERT_WEIGHTS;
  public static final int PLAN_EXPANDED_TO_PERMUTED = MoeNativeConstants.PLAN_EXPANDED_TO_PERMUTED;
  public static final int PLAN_PERMUTED_TO_TOKEN = MoeNativeConstants.PLAN_PERMUTED_TO_TOKEN;
  public static final int PLAN_PERMUTED_TO_EXPANDED = MoeNativeConstants.PLAN_PERMUTED_TO_EXPANDED;
  public static final int PLAN_CTA_TO_BATCH = MoeNativeConstants.PLAN_CTA_TO_BATCH;
  public static final int PLAN_CTA_TO_MN_LIMIT = MoeNativeConstants.PLAN_CTA_TO_MN_LIMIT;
  public static final int PLAN_NUM_CTAS = MoeNativeConstants.PLAN_NUM_CTAS;
  public static final int PLAN_PERMUTED_SIZE = MoeNativeConstants.PLAN_PERMUTED_SIZE;
  public static final int PLAN_EXPERT_COUNTS = MoeNativeConstants.PLAN_EXPERT_COUNTS;

  /** DLPack device types. */
  public static final int DEVICE_CPU = MoeNativeConstants.DL_CPU;
  public static final int DEVICE_CUDA = MoeNativeConstants.DL_CUDA;

  static {
    if (MoeNative.moe_b_version_major() != MoeNativeConstants.VERSION_MAJOR) {
      throw new UnsatisfiedLinkError("moe_trtllm: library major version "
          + MoeNative.moe_b_version_major() + " is not the " + MoeNativeConstants.VERSION_MAJOR
          + ".x this binding was built for");
    }
  }

  /** Library version "major.minor.patch". */
  public static String version() {
    return MoeNative.moe_b_version_major() + "." + MoeNative.moe_b_version_minor() + "."
        + MoeNative.moe_b_version_patch();
  }

  /** Static text of a status code. */
  public static String statusString(int status) {
    return MoeNative.moe_b_status_string(status);
  }

  /**
   * The binding's one status-name table: every STATUS_* constant of the header (through the
   * SWIG-generated MoeNativeConstants) by value, named by its macro without MOE_STATUS_.
   */
  private static final Map<Integer, String> STATUS_NAMES = statusNames();

  private static Map<Integer, String> statusNames() {
    Map<Integer, String> m = new HashMap<>();
    for (Field f : MoeNativeConstants.class.getFields()) {
      if (f.getName().startsWith("STATUS_")) {
        try {
          m.put(f.getInt(null), f.getName().substring("STATUS_".length()));
        } catch (IllegalAccessException e) {
          throw new AssertionError(e);
        }
      }
    }
    return Collections.unmodifiableMap(m);
  }

  /** Name of a status code ("INVALID_ARGUMENT"), "UNKNOWN" for others. */
  public static String statusName(int status) {
    return STATUS_NAMES.getOrDefault(status, "UNKNOWN");
  }

  /** Number of usable CUDA devices (0 without a GPU or in a CPU-only build). */
  public static int cudaDeviceCount() {
    return MoeNative.moe_b_cuda_device_count();
  }
}
