package io.moetrtllm;

/** Constants of the C header and library-level functions. */
public final class Moe {
  private Moe() {}

  public static final int STATUS_SUCCESS = 0;
  public static final int STATUS_INVALID_ARGUMENT = 1;
  public static final int STATUS_NOT_SUPPORTED = 2;
  public static final int STATUS_OUT_OF_MEMORY = 3;
  public static final int STATUS_CUDA_ERROR = 4;
  public static final int STATUS_NO_DEVICE = 5;
  public static final int STATUS_INSUFFICIENT_WORKSPACE = 6;
  public static final int STATUS_VERSION_MISMATCH = 7;
  public static final int STATUS_INVALID_CONFIG = 8;
  public static final int STATUS_INTERNAL = 99;

  public static final int BACKEND_AUTO = -1;
  public static final int BACKEND_CPU = 0;
  public static final int BACKEND_CUDA = 1;

  public static final int ROUTING_DEFAULT = 0;
  public static final int ROUTING_RENORMALIZE = 1;
  public static final int ROUTING_DEEPSEEK_V3 = 2;
  public static final int ROUTING_LLAMA4 = 3;
  public static final int ROUTING_RENORMALIZE_NAIVE = 4;
  public static final int ROUTING_TOPK = 5;

  public static final int ACTIVATION_SWIGLU = 3;
  public static final int ACTIVATION_GEGLU = 4;
  public static final int ACTIVATION_RELU2 = 6;
  public static final int ACTIVATION_IDENTITY = 7;

  public static final int WEIGHTS_GEMM1 = 1;
  public static final int WEIGHTS_GEMM2 = 2;

  public static final int PLAN_TOPK_IDS = 0;
  public static final int PLAN_EXPERT_WEIGHTS = 1;
  public static final int PLAN_EXPANDED_TO_PERMUTED = 2;
  public static final int PLAN_PERMUTED_TO_TOKEN = 3;
  public static final int PLAN_PERMUTED_TO_EXPANDED = 4;
  public static final int PLAN_CTA_TO_BATCH = 5;
  public static final int PLAN_CTA_TO_MN_LIMIT = 6;
  public static final int PLAN_NUM_CTAS = 7;
  public static final int PLAN_PERMUTED_SIZE = 8;
  public static final int PLAN_EXPERT_COUNTS = 9;

  /** DLPack device types. */
  public static final int DEVICE_CPU = 1;
  public static final int DEVICE_CUDA = 2;

  static {
    if (MoeNative.moe_b_version_major() != 0) {
      throw new UnsatisfiedLinkError("moe_trtllm: library major version "
          + MoeNative.moe_b_version_major() + " is not the 0.x this binding was built for");
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

  /** Name of a status code ("INVALID_ARGUMENT"). */
  public static String statusName(int status) {
    switch (status) {
      case 0: return "SUCCESS";
      case 1: return "INVALID_ARGUMENT";
      case 2: return "NOT_SUPPORTED";
      case 3: return "OUT_OF_MEMORY";
      case 4: return "CUDA_ERROR";
      case 5: return "NO_DEVICE";
      case 6: return "INSUFFICIENT_WORKSPACE";
      case 7: return "VERSION_MISMATCH";
      case 8: return "INVALID_CONFIG";
      case 99: return "INTERNAL";
      default: return "UNKNOWN";
    }
  }

  /** Number of usable CUDA devices (0 without a GPU or in a CPU-only build). */
  public static int cudaDeviceCount() {
    return MoeNative.moe_b_cuda_device_count();
  }
}
