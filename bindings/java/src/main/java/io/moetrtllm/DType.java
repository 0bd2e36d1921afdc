package io.moetrtllm;

/** Element types of tensors (DLPack code, from the header, and bits). */
public enum DType {
  BF16(MoeNativeConstants.DL_BFLOAT, 16),
  F32(MoeNativeConstants.DL_FLOAT, 32),
  I32(MoeNativeConstants.DL_INT, 32),
  U8(MoeNativeConstants.DL_UINT, 8),
  /** float8 e4m3fn (FP8 hidden states and weights): one code per byte. */
  FP8_E4M3(MoeNativeConstants.DL_FLOAT8_E4M3FN, 8),
  /** float8 e8m0fnu (ue8m0 MXFP4 scales, 2^(s-127)): one code per byte. */
  E8M0(MoeNativeConstants.DL_FLOAT8_E8M0FNU, 8),
  /**
   * float4 e2m1fn, 2 lanes: one element = one byte holding two MXFP4 values (low nibble = the
   * even column), so a [E_l, R, C] weight is a [E_l, R, C/2] tensor of this type.
   */
  FP4_E2M1X2(MoeNativeConstants.DL_FLOAT4_E2M1FN, 4, 2);

  final int code;
  final int bits;
  final int lanes;

  DType(int code, int bits) {
    this(code, bits, 1);
  }

  DType(int code, int bits, int lanes) {
    this.code = code;
    this.bits = bits;
    this.lanes = lanes;
  }

  /** Bytes per element. */
  public int bytes() {
    return bits * lanes / 8;
  }
}
