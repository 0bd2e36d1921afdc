package io.moetrtllm;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A prepared routing plan: the moe_plan descriptor (in a direct buffer owned by this object)
 * tied to the runner and workspace it was prepared with.
 */
public final class Plan {
  final ByteBuffer desc;
  private final Runner runner;
  private final Tensor workspace;
  private final long stream;

  Plan(Runner runner, Tensor workspace, long stream) {
    this.desc = ByteBuffer.allocateDirect(MoeNative.moe_b_plan_bytes())
        .order(ByteOrder.nativeOrder());
    MoeNative.moe_b_plan_reset(desc);
    this.runner = runner;
    this.workspace = workspace;
    this.stream = stream;
  }

  public int config() {
    return (int) MoeNative.moe_b_plan_field(desc, 0);
  }

  public int tile() {
    return (int) MoeNative.moe_b_plan_field(desc, 1);
  }

  public int clusterSize() {
    return (int) MoeNative.moe_b_plan_field(desc, 2);
  }

  public long numTokens() {
    return MoeNative.moe_b_plan_field(desc, 3);
  }

  /** Capacity of permuted-space buffers (rows of permuted_output). */
  public long maxPaddedRows() {
    return MoeNative.moe_b_plan_field(desc, 4);
  }

  public long maxCtas() {
    return MoeNative.moe_b_plan_field(desc, 5);
  }

  /** Element count of a plan table (Moe.PLAN_*); synchronises the stream. */
  public long readCount(int table) {
    long h = runner.acquire();
    try {
      return MoeNative.moe_b_plan_read_count(h, desc, workspace.desc, table, stream);
    } finally {
      runner.release();
      Reference.reachabilityFence(this);
    }
  }

  /** Copies a plan table into a new little-endian direct buffer; synchronises the stream. */
  public ByteBuffer read(int table) {
    long n = readCount(table);
    DType t = table == Moe.PLAN_EXPERT_WEIGHTS ? DType.BF16 : DType.I32;
    Tensor dst = Tensor.allocateHost(t, Math.max(n, 1));
    long h = runner.acquire();
    try {
      MoeNative.moe_b_plan_read(h, desc, workspace.desc, table, dst.desc, stream);
    } finally {
      runner.release();
    }
    Reference.reachabilityFence(this);
    Reference.reachabilityFence(dst);
    ByteBuffer b = dst.buffer();
    b.limit((int) (n * t.bytes()));
    return b.slice().order(ByteOrder.LITTLE_ENDIAN);
  }

  /** An int32 plan table as an array. */
  public int[] readInts(int table) {
    ByteBuffer b = read(table);
    int[] a = new int[b.capacity() / 4];
    b.asIntBuffer().get(a);
    return a;
  }

  /** The expert weights (bf16 bit patterns). */
  public short[] readWeights() {
    ByteBuffer b = read(Moe.PLAN_EXPERT_WEIGHTS);
    short[] a = new short[b.capacity() / 2];
    b.asShortBuffer().get(a);
    return a;
  }
}
