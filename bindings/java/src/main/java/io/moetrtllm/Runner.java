package io.moetrtllm;

import java.lang.ref.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A moe_runner: the config catalogue and backend for one activation and dtype. Close it (or use
 * try-with-resources); after close every call throws MoeException with the library's message.
 * Device pointers and streams are longs (0 = NULL; the CPU backend needs stream 0).
 *
 * <p>Thread-safe: threads may share a runner (each call with its own workspace and plan).
 * Every call holds a read lock for its duration and close() takes the write lock, so close()
 * waits for the calls in flight, and calls after it fail.
 */
public final class Runner implements AutoCloseable {
  private long handle; // guarded by lock
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private final int activation;

  /** Runner options (moe_runner_options). */
  public static final class Options {
    int backend = Moe.BACKEND_AUTO;
    int deviceId = 0;
    int smVersion = 0;
    int activation = Moe.ACTIVATION_SWIGLU;
    int numThreads = 0;
    int activationDtype = Moe.DTYPE_BF16;
    int weightDtype = Moe.DTYPE_BF16;
    int scalingMode = Moe.SCALING_NONE;

    public Options backend(int b) {
      backend = b;
      return this;
    }

    public Options deviceId(int d) {
      deviceId = d;
      return this;
    }

    public Options smVersion(int s) {
      smVersion = s;
      return this;
    }

    public Options activation(int a) {
      activation = a;
      return this;
    }

    public Options numThreads(int n) {
      numThreads = n;
      return this;
    }

    /**
     * Activation and weight dtype at once: Moe.DTYPE_BF16 (default) or Moe.DTYPE_FP8_E4M3 (the
     * convenience for runners whose two dtypes agree).
     */
    public Options dtype(int d) {
      activationDtype = d;
      weightDtype = d;
      return this;
    }

    /** Activation dtype: Moe.DTYPE_BF16 (default) or DTYPE_FP8_E4M3 (W4A8 with MXFP4). */
    public Options activationDtype(int d) {
      activationDtype = d;
      return this;
    }

    /** Weight dtype: Moe.DTYPE_BF16 (default), DTYPE_FP8_E4M3 or DTYPE_MXFP4 (SCALING_MX). */
    public Options weightDtype(int d) {
      weightDtype = d;
      return this;
    }

    /**
     * Moe.SCALING_NONE (BF16, default), SCALING_PER_TENSOR or SCALING_BLOCK (FP8; see
     * docs/formats.md "FP8"), SCALING_MX (MXFP4 weights; docs/formats.md "MXFP4").
     */
    public Options scalingMode(int m) {
      scalingMode = m;
      return this;
    }
  }

  public Runner(Options o) {
    handle = MoeNative.moe_b_runner_create(o.backend, o.deviceId, o.smVersion, o.activation,
        o.numThreads, o.activationDtype, o.weightDtype, o.scalingMode);
    activation = o.activation;
  }

  /** A runner with the given backend and activation, other options default. */
  public Runner(int backend, int activation) {
    this(new Options().backend(backend).activation(activation));
  }

  /**
   * Takes the read lock and returns the handle (0 after close: the library then reports the
   * NULL runner). Every acquire() is paired with release() in a finally block.
   */
  long acquire() {
    lock.readLock().lock();
    return handle;
  }

  void release() {
    lock.readLock().unlock();
  }

  /** Destroys the runner once the calls in flight have returned (idempotent, thread-safe). */
  @Override
  public void close() {
    lock.writeLock().lock();
    try {
      long h = handle;
      handle = 0;
      if (h != 0) {
        MoeNative.moe_b_runner_destroy(h);
      }
    } finally {
      lock.writeLock().unlock();
    }
  }

  public boolean isClosed() {
    long h = acquire();
    try {
      return h == 0;
    } finally {
      release();
    }
  }

  public int activation() {
    return activation;
  }

  public int backend() {
    long h = acquire();
    try {
      return MoeNative.moe_b_runner_backend(h);
    } finally {
      release();
    }
  }

  public int numConfigs() {
    long h = acquire();
    try {
      return MoeNative.moe_b_num_configs(h);
    } finally {
      release();
    }
  }

  /** Config indices valid for the problem, best first. */
  public List<Integer> validConfigs(Problem p) {
    long h = acquire();
    try {
      int n = MoeNative.moe_b_valid_config_count(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize());
      List<Integer> out = new ArrayList<>(n);
      for (int i = 0; i < n; i++) {
        out.add(MoeNative.moe_b_valid_config_at(h, p.numExperts(), p.numTokens(), p.topK(),
            p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
            i));
      }
      return out;
    } finally {
      release();
    }
  }

  public int defaultConfig(Problem p) {
    long h = acquire();
    try {
      return MoeNative.moe_b_default_config(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize());
    } finally {
      release();
    }
  }

  public ConfigInfo describeConfig(int config) {
    long h = acquire();
    try {
      int[] f = new int[9];
      for (int i = 0; i < 9; i++) {
        f[i] = MoeNative.moe_b_config_field(h, config, i);
      }
      return new ConfigInfo(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8],
          MoeNative.moe_b_config_name(h, config));
    } finally {
      release();
    }
  }

  public int clusterSize(int config) {
    long h = acquire();
    try {
      return MoeNative.moe_b_cluster_size(h, config);
    } finally {
      release();
    }
  }

  /** Workspace bytes for the problem (numTokens = T_max) with the config. */
  public long workspaceSize(Problem p, int config) {
    long h = acquire();
    try {
      return MoeNative.moe_b_workspace_size(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          config);
    } finally {
      release();
    }
  }

  /**
   * Bytes of a prepared weight tensor (Moe.WEIGHTS_GEMM1 / GEMM2; MXFP4 also
   * WEIGHTS_GEMM1_GATE_UP_INTERLEAVED, the size of GEMM1).
   */
  public long weightsPreparedSize(Problem p, int which) {
    long h = acquire();
    try {
      return MoeNative.moe_b_weights_prepared_size(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          which);
    } finally {
      release();
    }
  }

  /** Converts canonical bf16 weights into the prepared uint8 tensor. */
  public void prepareWeights(Problem p, int which, Tensor canonical, Tensor prepared,
      long stream) {
    long h = acquire();
    try {
      MoeNative.moe_b_weights_prepare(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          which, canonical == null ? null : canonical.desc,
          prepared == null ? null : prepared.desc, stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(canonical);
    Reference.reachabilityFence(prepared);
  }

  /**
   * FP8 runners (moe_weights_prepare_scaled): e4m3 canonical weights [E_l, R, C] with their
   * fp32 scales ([E_l] per tensor, [E_l, R/128, C/128] block), copied as they are; or bf16
   * weights with canonicalScales null, quantized by the library. MXFP4 runners: the packed e2m1
   * blocks (DType.U8 or DType.FP4_E2M1X2 [E_l, R, C/2]) with their ue8m0 scales (DType.U8 or
   * DType.E8M0 [E_l, R, C/32]), required; which = Moe.WEIGHTS_GEMM1,
   * WEIGHTS_GEMM1_GATE_UP_INTERLEAVED (gpt-oss rows) or WEIGHTS_GEMM2.
   */
  public void prepareWeightsScaled(Problem p, int which, Tensor canonical,
      Tensor canonicalScales, Tensor prepared, long stream) {
    long h = acquire();
    try {
      MoeNative.moe_b_weights_prepare_scaled(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          which, d(canonical), d(canonicalScales), d(prepared), stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(canonical);
    Reference.reachabilityFence(canonicalScales);
    Reference.reachabilityFence(prepared);
  }

  /** CPU convenience: prepares host canonical weights into a new host uint8 tensor. */
  public Tensor prepareWeightsHost(Problem p, int which, Tensor canonical) {
    Tensor out = Tensor.allocateHost(DType.U8, weightsPreparedSize(p, which));
    prepareWeights(p, which, canonical, out, 0);
    return out;
  }

  /** A zeroed, 256-byte aligned host workspace for the problem and config. */
  public Tensor allocateHostWorkspace(Problem p, int config) {
    return Tensor.allocateHost(DType.U8, workspaceSize(p, config));
  }

  private static java.nio.ByteBuffer d(Tensor t) {
    return t == null ? null : t.desc;
  }

  /** Routes the problem for the config into the workspace; returns the plan. */
  public Plan prepareRouting(Problem p, int config, Tensor workspace, RoutingArgs a,
      long stream) {
    Plan plan = new Plan(this, workspace, stream);
    long h = acquire();
    try {
      MoeNative.moe_b_routing_prepare(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          config, a.method, d(a.logits), d(a.bias), d(a.topkIds), d(a.topkWeights),
          d(a.topkPacked), a.nGroup, a.topkGroup, a.routedScalingFactor, a.enablePdl ? 1 : 0,
          d(workspace), plan.desc, stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(a);
    Reference.reachabilityFence(workspace);
    return plan;
  }

  /** GEMM1, GEMM2 and finalize on a prepared plan. */
  public void run(Problem p, int config, Plan plan, Tensor workspace, RunArgs a, long stream) {
    long h = acquire();
    try {
      MoeNative.moe_b_run(h, p.numExperts(), p.numTokens(), p.topK(), p.localExpertOffset(),
          p.localNumExperts(), p.hiddenSize(), p.intermediateSize(), config,
          plan == null ? null : plan.desc, a.finalizeFlag(), d(a.hiddenStates),
          d(a.gemm1Weights), d(a.gemm2Weights), d(a.gemm1Bias), d(a.gemm2Bias),
          d(a.gemm1Alpha), d(a.gemm1Beta), d(a.gemm1ClampLimit), d(a.output),
          d(a.permutedOutput), d(a.hiddenStatesScale), d(a.gemm1InputScale),
          d(a.gemm2InputScale), a.enablePdl ? 1 : 0, d(workspace), stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(a);
    Reference.reachabilityFence(plan);
    Reference.reachabilityFence(workspace);
  }

  /**
   * Workspace bytes of the grouped run for the problem (numTokens = the largest N; MASKED:
   * E_l * capacity) with the config (moe_runner_get_grouped_workspace_size).
   */
  public long groupedWorkspaceSize(Problem p, int config) {
    long h = acquire();
    try {
      return MoeNative.moe_b_grouped_workspace_size(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          config);
    } finally {
      release();
    }
  }

  /**
   * GEMM1 (+activation) and GEMM2 on tokens already grouped by local expert
   * (moe_runner_run_grouped; docs/ep.md). With workspace null a host workspace is allocated;
   * with no output in the args a zeroed host bf16 output in the shape of the hidden states is
   * allocated for this call (the args are not modified). Returns the output tensor.
   */
  public Tensor runGrouped(Problem p, int config, GroupedArgs a, Tensor workspace,
      long stream) {
    if (workspace == null) {
      workspace = Tensor.allocateHost(DType.U8, groupedWorkspaceSize(p, config));
    }
    Tensor out = a.output != null || a.hiddenStates == null ? a.output
        : Tensor.allocateHost(DType.BF16, a.hiddenStates.shape());
    long h = acquire();
    try {
      MoeNative.moe_b_run_grouped(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          config, a.layout, a.capacity, d(a.hiddenStates), d(a.expertCounts),
          d(a.gemm1Weights), d(a.gemm2Weights), d(a.gemm1Bias), d(a.gemm2Bias),
          d(a.gemm1Alpha), d(a.gemm1Beta), d(a.gemm1ClampLimit), d(out),
          d(a.hiddenStatesScale), d(a.gemm1InputScale), d(a.gemm2InputScale),
          a.enablePdl ? 1 : 0, d(workspace), stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(a);
    Reference.reachabilityFence(out);
    Reference.reachabilityFence(workspace);
    return out;
  }

  /**
   * One-shot forward with the default config. With workspace null a host workspace is
   * allocated; with no output in the run args a new host bf16 [T, H] output is allocated for
   * this call (the run args are not modified, so one RunArgs may be reused and shared by
   * threads). Returns the output tensor.
   */
  public Tensor forward(Problem p, RoutingArgs r, RunArgs a, Tensor workspace, long stream) {
    if (workspace == null) {
      workspace = allocateHostWorkspace(p, defaultConfig(p));
    }
    Tensor out = a.output != null ? a.output
        : Tensor.allocateHost(DType.BF16, p.numTokens(), p.hiddenSize());
    long h = acquire();
    try {
      MoeNative.moe_b_forward(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          r.method, d(r.logits), d(r.bias), d(r.topkIds), d(r.topkWeights), d(r.topkPacked),
          r.nGroup, r.topkGroup, r.routedScalingFactor, 1, d(a.hiddenStates),
          d(a.gemm1Weights), d(a.gemm2Weights), d(a.gemm1Bias), d(a.gemm2Bias),
          d(a.gemm1Alpha), d(a.gemm1Beta), d(a.gemm1ClampLimit), d(out), null,
          d(a.hiddenStatesScale), d(a.gemm1InputScale), d(a.gemm2InputScale),
          r.enablePdl ? 1 : 0, d(workspace), stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(r);
    Reference.reachabilityFence(a);
    Reference.reachabilityFence(workspace);
    return out;
  }
  /**
   * Times every valid config (moe_runner_autotune: prepare + run, median of iterations) and
   * returns them fastest first. With workspace null a host workspace large enough for every
   * valid config is allocated; with no output in the run args a host output is allocated.
   * Synchronises the stream.
   */
  public List<AutotuneResult> autotune(Problem p, RoutingArgs r, RunArgs a, Tensor workspace,
      int iterations, long stream) {
    List<Integer> cfgs = validConfigs(p);
    if (workspace == null) {
      long n = 0;
      for (int c : cfgs) {
        n = Math.max(n, workspaceSize(p, c));
      }
      workspace = Tensor.allocateHost(DType.U8, n);
    }
    Tensor out = a.output != null ? a.output
        : Tensor.allocateHost(DType.BF16, p.numTokens(), p.hiddenSize());
    Tensor configs = Tensor.allocateHost(DType.I32, Math.max(cfgs.size(), 1));
    Tensor times = Tensor.allocateHost(DType.F32, Math.max(cfgs.size(), 1));
    int n;
    long h = acquire();
    try {
      n = MoeNative.moe_b_autotune(h, p.numExperts(), p.numTokens(), p.topK(),
          p.localExpertOffset(), p.localNumExperts(), p.hiddenSize(), p.intermediateSize(),
          r.method, d(r.logits), d(r.bias), d(r.topkIds), d(r.topkWeights), d(r.topkPacked),
          r.nGroup, r.topkGroup, r.routedScalingFactor, 1, d(a.hiddenStates),
          d(a.gemm1Weights), d(a.gemm2Weights), d(a.gemm1Bias), d(a.gemm2Bias),
          d(a.gemm1Alpha), d(a.gemm1Beta), d(a.gemm1ClampLimit), d(out), null,
          d(a.hiddenStatesScale), d(a.gemm1InputScale), d(a.gemm2InputScale),
          r.enablePdl ? 1 : 0, d(workspace), iterations, configs.desc, times.desc, stream);
    } finally {
      release();
    }
    Reference.reachabilityFence(out);
    Reference.reachabilityFence(r);
    Reference.reachabilityFence(a);
    Reference.reachabilityFence(workspace);
    List<AutotuneResult> res = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      res.add(new AutotuneResult(configs.buffer().getInt(4 * i), times.buffer().getFloat(4 * i)));
    }
    return res;
  }
}
