package io.moetrtllm;

/** Routing inputs (moe_routing_args): logits, or topkIds + topkWeights, or topkPacked. */
public final class RoutingArgs {
  int method = Moe.ROUTING_RENORMALIZE;
  Tensor logits;
  Tensor bias;
  Tensor topkIds;
  Tensor topkWeights;
  Tensor topkPacked;
  int nGroup = 1;
  int topkGroup = 0;
  float routedScalingFactor = 1.0f;
  boolean enablePdl = true;

  public RoutingArgs method(int m) {
    method = m;
    return this;
  }

  /** [T, E] fp32 or bf16. */
  public RoutingArgs logits(Tensor t) {
    logits = t;
    return this;
  }

  /** [E] routing bias (DeepSeekV3). */
  public RoutingArgs bias(Tensor t) {
    bias = t;
    return this;
  }

  /** Pre-routed [T, K] int32 ids and [T, K] bf16/fp32 weights. */
  public RoutingArgs topk(Tensor ids, Tensor weights) {
    topkIds = ids;
    topkWeights = weights;
    return this;
  }

  /** Pre-routed [T, K] int32 (id << 16) | bf16 bits. */
  public RoutingArgs topkPacked(Tensor t) {
    topkPacked = t;
    return this;
  }

  /** DeepSeekV3 group arguments. */
  public RoutingArgs groups(int nGroup, int topkGroup) {
    this.nGroup = nGroup;
    this.topkGroup = topkGroup;
    return this;
  }

  public RoutingArgs routedScalingFactor(float s) {
    routedScalingFactor = s;
    return this;
  }

  public RoutingArgs enablePdl(boolean b) {
    enablePdl = b;
    return this;
  }
}
