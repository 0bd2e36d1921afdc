package io.moetrtllm;

/**
 * Shape of one MoE layer call (moe_problem). localNumExperts 0 means numExperts.
 *
 * @param numExperts E
 * @param numTokens T (for workspace sizing: T_max)
 * @param topK K
 * @param hiddenSize H
 * @param intermediateSize I
 * @param localExpertOffset first local expert
 * @param localNumExperts E_l (0 = E)
 */
public record Problem(int numExperts, long numTokens, int topK, long hiddenSize,
    long intermediateSize, int localExpertOffset, int localNumExperts) {
  /** A problem without expert parallelism. */
  public Problem(int numExperts, long numTokens, int topK, long hiddenSize, long intermediateSize) {
    this(numExperts, numTokens, topK, hiddenSize, intermediateSize, 0, 0);
  }

  /** The same problem with another token count. */
  public Problem withTokens(long t) {
    return new Problem(numExperts, t, topK, hiddenSize, intermediateSize, localExpertOffset,
        localNumExperts);
  }
}
