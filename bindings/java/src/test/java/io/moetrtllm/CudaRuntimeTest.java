package io.moetrtllm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/**
 * The device-memory path of the binding (CudaRuntime). Without a GPU every failure is a clean
 * MoeException (no runtime, or no driver); with one, a round trip through device memory.
 */
class CudaRuntimeTest {
  @Test
  void argumentsCheckedBeforeTheRuntime() {
    assertThrows(IllegalArgumentException.class,
        () -> CudaRuntime.copyToDevice(0, ByteBuffer.allocate(16), 16)); // not direct
    assertThrows(IllegalArgumentException.class,
        () -> CudaRuntime.copyToHost(ByteBuffer.allocateDirect(16), 0, 17)); // too many bytes
    assertThrows(IllegalArgumentException.class,
        () -> CudaRuntime.copyToHost(ByteBuffer.allocateDirect(16), 0, -1));
  }

  @Test
  void roundTripOrCleanError() {
    try {
      CudaRuntime.load();
    } catch (MoeException e) {
      assertEquals(Moe.STATUS_CUDA_ERROR, e.status());
      assertFalse(e.libraryMessage().isEmpty());
      System.out.println("CudaRuntime: no runtime here: " + e.libraryMessage());
      return;
    }
    CudaRuntime.load(); // idempotent
    if (Moe.cudaDeviceCount() == 0) {
      MoeException e = assertThrows(MoeException.class, () -> CudaRuntime.malloc(256));
      assertEquals(Moe.STATUS_CUDA_ERROR, e.status());
      assertFalse(e.libraryMessage().isEmpty());
      System.out.println("CudaRuntime: loaded, no device: " + e.libraryMessage());
      return;
    }
    int n = 1000;
    Tensor src = Conformance.genBf16(5, 1, 4, n);
    Tensor dst = Tensor.allocateHost(DType.BF16, n);
    long p = CudaRuntime.malloc(2L * n);
    try {
      CudaRuntime.memset(p, 0, 2L * n);
      CudaRuntime.copyToDevice(p, src.buffer(), 2L * n);
      CudaRuntime.copyToHost(dst.buffer(), p, 2L * n);
    } finally {
      CudaRuntime.free(p);
    }
    byte[] a = new byte[2 * n];
    byte[] b = new byte[2 * n];
    src.buffer().get(0, a);
    dst.buffer().get(0, b);
    assertArrayEquals(a, b);
  }
}
