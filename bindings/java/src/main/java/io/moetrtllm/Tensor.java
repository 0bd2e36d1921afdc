package io.moetrtllm;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A borrowed tensor for the library: a host direct ByteBuffer or a raw device pointer, with an
 * element type and a compact row-major shape (up to 4 dimensions). Its DLTensor descriptor
 * lives in a direct buffer owned by this object (freed by the GC; no close needed). A host
 * tensor keeps its ByteBuffer reachable.
 */
public final class Tensor {
  final ByteBuffer desc;
  private final ByteBuffer data; // host data, kept reachable; null for device tensors
  private final long address;
  private final DType dtype;
  private final long[] shape;

  private Tensor(ByteBuffer data, long address, int deviceType, int deviceId, DType dtype,
      long[] shape) {
    if (shape.length > 4) {
      throw new IllegalArgumentException("tensor: at most 4 dimensions, got " + shape.length);
    }
    this.data = data;
    this.address = address;
    this.dtype = dtype;
    this.shape = shape.clone();
    this.desc = ByteBuffer.allocateDirect(MoeNative.moe_b_tensor_desc_bytes(shape.length))
        .order(ByteOrder.nativeOrder());
    long[] d = new long[4];
    System.arraycopy(shape, 0, d, 0, shape.length);
    MoeNative.moe_b_tensor_fill(desc, address, deviceType, deviceId, dtype.code, dtype.bits,
        dtype.lanes, shape.length, d[0], d[1], d[2], d[3]);
  }

  /** A host tensor over a direct ByteBuffer (from its start; slice() for an offset). */
  public static Tensor host(ByteBuffer buffer, DType dtype, long... shape) {
    if (buffer == null || !buffer.isDirect()) {
      throw new IllegalArgumentException("tensor: expected a direct ByteBuffer");
    }
    long need = dtype.bytes();
    for (long s : shape) {
      need *= s;
    }
    if (buffer.capacity() < need) {
      throw new IllegalArgumentException(
          "tensor: buffer holds " + buffer.capacity() + " bytes, shape needs " + need);
    }
    return new Tensor(buffer, MoeNative.moe_b_buffer_address(buffer), Moe.DEVICE_CPU, 0, dtype,
        shape);
  }

  /** A new zeroed host tensor (little-endian direct buffer, 256-byte aligned). */
  public static Tensor allocateHost(DType dtype, long... shape) {
    long n = dtype.bytes();
    for (long s : shape) {
      n *= s;
    }
    if (n > Integer.MAX_VALUE - 256) {
      throw new IllegalArgumentException("tensor: " + n + " bytes is too large for a ByteBuffer");
    }
    ByteBuffer raw = ByteBuffer.allocateDirect((int) n + 256);
    int off = (int) ((256 - (MoeNative.moe_b_buffer_address(raw) & 255)) & 255);
    raw.position(off).limit(off + (int) n);
    ByteBuffer b = raw.slice().order(ByteOrder.LITTLE_ENDIAN);
    return host(b, dtype, shape);
  }

  /**
   * A device tensor over a raw pointer (e.g. CUDA memory from another library). The caller
   * keeps the memory valid while the library uses it.
   */
  public static Tensor device(long pointer, int deviceId, DType dtype, long... shape) {
    return new Tensor(null, pointer, Moe.DEVICE_CUDA, deviceId, dtype, shape);
  }

  /** The host buffer (little-endian for allocateHost), or null for a device tensor. */
  public ByteBuffer buffer() {
    return data;
  }

  /** The data address: the device pointer of a device tensor, the buffer's of a host one. */
  public long address() {
    return address;
  }

  /** True for a device tensor (Tensor.device). */
  public boolean isDevice() {
    return data == null;
  }

  public DType dtype() {
    return dtype;
  }

  public long[] shape() {
    return shape.clone();
  }

  /** Number of bytes (product of the shape x element size). */
  public long bytes() {
    long n = dtype.bytes();
    for (long s : shape) {
      n *= s;
    }
    return n;
  }
}
