package io.moetrtllm;

/**
 * Inputs and outputs of the grouped run (moe_grouped_args; docs/ep.md): tokens a dispatcher
 * already grouped by local expert, in layout Moe.LAYOUT_CONTIGUOUS (hidden [N, H], the rows of
 * local expert e after those of e - 1) or Moe.LAYOUT_MASKED (hidden [E_l, capacity, H],
 * count[e] valid rows per expert). The output rows are unweighted (no routing, no finalize);
 * rows past the counts are not written.
 */
public final class GroupedArgs {
  int layout = Moe.LAYOUT_CONTIGUOUS;
  long capacity;
  Tensor hiddenStates;
  Tensor expertCounts;
  Tensor gemm1Weights;
  Tensor gemm2Weights;
  Tensor gemm1Bias;
  Tensor gemm2Bias;
  Tensor gemm1Alpha;
  Tensor gemm1Beta;
  Tensor gemm1ClampLimit;
  Tensor output;
  Tensor hiddenStatesScale;
  Tensor gemm1InputScale;
  Tensor gemm2InputScale;
  boolean enablePdl = true;

  /** Moe.LAYOUT_CONTIGUOUS (default, capacity 0) or Moe.LAYOUT_MASKED with its capacity. */
  public GroupedArgs layout(int layout, long capacity) {
    this.layout = layout;
    this.capacity = capacity;
    return this;
  }

  /**
   * bf16 (FP8 runners: bf16 or e4m3) hidden states in the layout's shape, int32 [E_l] expert counts (on the runner's
   * device) and the prepared weights (uint8).
   */
  public GroupedArgs inputs(Tensor hidden, Tensor expertCounts, Tensor gemm1Weights,
      Tensor gemm2Weights) {
    this.hiddenStates = hidden;
    this.expertCounts = expertCounts;
    this.gemm1Weights = gemm1Weights;
    this.gemm2Weights = gemm2Weights;
    return this;
  }

  /** fp32 GEMM biases [E_l, f*I] and [E_l, H] (either may be null). */
  public GroupedArgs gemmBias(Tensor b1, Tensor b2) {
    gemm1Bias = b1;
    gemm2Bias = b2;
    return this;
  }

  /** SwiGLU alpha / beta / clamp limit, fp32 [E_l] (each may be null). */
  public GroupedArgs swiglu(Tensor alpha, Tensor beta, Tensor clampLimit) {
    gemm1Alpha = alpha;
    gemm1Beta = beta;
    gemm1ClampLimit = clampLimit;
    return this;
  }

  /**
   * FP8 scales (moe_grouped_args version 3; docs/formats.md "FP8"), as RunArgs.fp8Scales:
   * hiddenStatesScale fp32 [N, H/128] (MASKED: [E_l * capacity, H/128]) with e4m3 hidden states
   * in BLOCK mode; gemm1InputScale and gemm2InputScale fp32 [1], the static activation scales of
   * PER_TENSOR mode (required there). Null where the mode or input takes none. FP8 grouped runs:
   * CPU and CUDA backends.
   */
  public GroupedArgs fp8Scales(Tensor hiddenStatesScale, Tensor gemm1InputScale,
      Tensor gemm2InputScale) {
    this.hiddenStatesScale = hiddenStatesScale;
    this.gemm1InputScale = gemm1InputScale;
    this.gemm2InputScale = gemm2InputScale;
    return this;
  }

  /** bf16 output in the shape of the hidden states. */
  public GroupedArgs output(Tensor t) {
    output = t;
    return this;
  }

  public GroupedArgs enablePdl(boolean b) {
    enablePdl = b;
    return this;
  }
}
