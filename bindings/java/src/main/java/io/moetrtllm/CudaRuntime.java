package io.moetrtllm;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Device memory for the CUDA backend from Java: the CUDA runtime (libcudart), opened with
 * dlopen by {@link #load()}. A JVM has no CUDA allocator of its own, and the library links the
 * runtime statically and exports none; this gives callers (and the GPU conformance tests) the
 * pointers that {@link Tensor#device} and the device workspace take. Failures throw
 * MoeException with status CUDA_ERROR and the runtime's text.
 */
public final class CudaRuntime {
  private CudaRuntime() {}

  private static boolean loaded;

  /**
   * Opens the CUDA runtime: $MOE_CUDART if set, else libcudart.so, .so.13, .so.12 and
   * /usr/local/cuda/lib64/libcudart.so (idempotent).
   */
  public static synchronized void load() {
    if (loaded) {
      return;
    }
    List<String> names = new ArrayList<>();
    String env = System.getenv("MOE_CUDART");
    if (env != null && !env.isEmpty()) {
      names.add(env);
    }
    names.add("libcudart.so");
    names.add("libcudart.so.13");
    names.add("libcudart.so.12");
    names.add("/usr/local/cuda/lib64/libcudart.so");
    StringBuilder why = new StringBuilder();
    for (String n : names) {
      try {
        MoeNative.moe_b_cudart_load(n);
        loaded = true;
        return;
      } catch (MoeException e) {
        why.append(why.length() == 0 ? "" : "; ").append(e.libraryMessage());
      }
    }
    throw new MoeException(Moe.STATUS_CUDA_ERROR, why.toString());
  }

  /** cudaMalloc of {@code bytes} (at least 1) on the current device; returns the pointer. */
  public static long malloc(long bytes) {
    return MoeNative.moe_b_cudart_malloc(bytes);
  }

  /** cudaFree. */
  public static void free(long pointer) {
    MoeNative.moe_b_cudart_free(pointer);
  }

  /** cudaMemset of {@code bytes} bytes to {@code value}. */
  public static void memset(long pointer, int value, long bytes) {
    MoeNative.moe_b_cudart_memset(pointer, value, bytes);
  }

  /** Copies the first {@code bytes} bytes of a direct buffer to device memory. */
  public static void copyToDevice(long dst, ByteBuffer src, long bytes) {
    check(src, bytes);
    MoeNative.moe_b_cudart_h2d(dst, src, bytes);
  }

  /** Synchronizes the device, then copies {@code bytes} bytes of device memory into a direct
   * buffer. */
  public static void copyToHost(ByteBuffer dst, long src, long bytes) {
    check(dst, bytes);
    MoeNative.moe_b_cudart_d2h(dst, src, bytes);
  }

  /** cudaDeviceSynchronize. */
  public static void synchronize() {
    MoeNative.moe_b_cudart_synchronize();
  }

  private static void check(ByteBuffer b, long bytes) {
    if (b == null || !b.isDirect()) {
      throw new IllegalArgumentException("CudaRuntime: expected a direct ByteBuffer");
    }
    if (bytes < 0 || bytes > b.capacity()) {
      throw new IllegalArgumentException(
          "CudaRuntime: " + bytes + " bytes do not fit a buffer of " + b.capacity());
    }
  }
}
