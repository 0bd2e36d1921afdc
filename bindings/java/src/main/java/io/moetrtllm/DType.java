package io.moetrtllm;

/** Element types of tensors (DLPack code and bits). */
public enum DType {
  BF16(4, 16),
  F32(2, 32),
  I32(0, 32),
  U8(1, 8);

  final int code;
  final int bits;

  DType(int code, int bits) {
    this.code = code;
    this.bits = bits;
  }

  /** Bytes per element. */
  public int bytes() {
    return bits / 8;
  }
}
