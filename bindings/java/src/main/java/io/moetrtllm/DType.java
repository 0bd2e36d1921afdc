package io.moetrtllm;

/** Element types of tensors (DLPack code, from the header, and bits). */
public enum DType {
  BF16(MoeNativeConstants.DL_BFLOAT, 16),
  F32(MoeNativeConstants.DL_FLOAT, 32),
  I32(MoeNativeConstants.DL_INT, 32),
  U8(MoeNativeConstants.DL_UINT, 8),
  /** float8 e4m3fn (FP8 hidden states and weights): one code per byte. */
  FP8_E4M3(MoeNativeConstants.DL_FLOAT8_E4M3FN, 8);

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
