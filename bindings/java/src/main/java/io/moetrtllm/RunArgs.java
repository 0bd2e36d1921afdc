package io.moetrtllm;

/** Inputs and outputs of the GEMM stages (moe_run_args). */
public final class RunArgs {
  Tensor hiddenStates;
  Tensor gemm1Weights;
  Tensor gemm2Weights;
  Tensor gemm1Bias;
  Tensor gemm2Bias;
  Tensor gemm1Alpha;
  Tensor gemm1Beta;
  Tensor gemm1ClampLimit;
  Tensor output;
  Tensor permutedOutput;
  Tensor hiddenStatesScale;
  Tensor gemm1InputScale;
  Tensor gemm2InputScale;
  Boolean doFinalize;
  boolean enablePdl = true;

  /**
   * [T, H] hidden states (bf16; on an FP8 runner bf16 or e4m3) and the prepared weights
   * (uint8).
   */
  public RunArgs inputs(Tensor hidden, Tensor gemm1Weights, Tensor gemm2Weights) {
    this.hiddenStates = hidden;
    this.gemm1Weights = gemm1Weights;
    this.gemm2Weights = gemm2Weights;
    return this;
  }

  /** fp32 GEMM biases [E_l, f*I] and [E_l, H] (either may be null). */
  public RunArgs gemmBias(Tensor b1, Tensor b2) {
    gemm1Bias = b1;
    gemm2Bias = b2;
    return this;
  }

  /** SwiGLU alpha / beta / clamp limit, fp32 [E_l] (each may be null). */
  public RunArgs swiglu(Tensor alpha, Tensor beta, Tensor clampLimit) {
    gemm1Alpha = alpha;
    gemm1Beta = beta;
    gemm1ClampLimit = clampLimit;
    return this;
  }

  /**
   * FP8 scales (docs/formats.md "FP8"): hiddenStatesScale fp32 [T, H/128] with e4m3 hidden
   * states in BLOCK mode; gemm1InputScale and gemm2InputScale fp32 [1], the static activation
   * scales of PER_TENSOR mode (required there). Null where the mode or input takes none.
   */
  public RunArgs fp8Scales(Tensor hiddenStatesScale, Tensor gemm1InputScale,
      Tensor gemm2InputScale) {
    this.hiddenStatesScale = hiddenStatesScale;
    this.gemm1InputScale = gemm1InputScale;
    this.gemm2InputScale = gemm2InputScale;
    return this;
  }

  /** [T, H] bf16 output (finalize). */
  public RunArgs output(Tensor t) {
    output = t;
    return this;
  }

  /** [>= plan.maxPaddedRows(), H] bf16 permuted output (no finalize). */
  public RunArgs permutedOutput(Tensor t) {
    permutedOutput = t;
    return this;
  }

  /** Defaults to (output != null). */
  public RunArgs doFinalize(boolean b) {
    doFinalize = b;
    return this;
  }

  public RunArgs enablePdl(boolean b) {
    enablePdl = b;
    return this;
  }

  int finalizeFlag() {
    return (doFinalize != null ? doFinalize : output != null) ? 1 : 0;
  }
}
