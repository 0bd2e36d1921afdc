package io.moetrtllm;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The shared conformance suite (docs/conformance.md) through the Java binding. */
final class Conformance {
  private Conformance() {}

  static final Set<String> KEYS = Set.of("name", "method", "input", "logits_dtype", "T", "E",
      "K", "H", "I", "offset", "local", "act", "tile", "cluster", "n_group", "topk_group",
      "scale", "bias", "gemm_bias", "swiglu_params", "finalize", "seed", "plan", "output",
      "status", "fp8", "hidden", "weights", "s1", "s2", "layout", "counts", "capacity", "mxfp4",
      "w1_order", "gemm_bias_dtype", "mx_scales");
  /** Keys of MXFP4 cases only (docs/conformance.md "MXFP4 cases"). */
  static final Set<String> MX_ONLY = Set.of("w1_order", "gemm_bias_dtype", "mx_scales");
  static final Set<String> REQUIRED = Set.of("name", "T", "E", "H", "I", "offset", "local", "act",
      "tile", "cluster", "seed");
  static final Set<String> ROUTED_ONLY = Set.of("method", "input", "logits_dtype", "K", "plan",
      "mxfp4");
  /** bf16 bits pre-filled into a grouped case's output: rows past the counts keep them. */
  static final short GROUPED_SENTINEL = (short) 0xFFFF;

  /** One case: its fields as strings. */
  static final class Case {
    final Map<String, String> f;
    final int line;

    Case(Map<String, String> f, int line) {
      this.f = f;
      this.line = line;
    }

    String name() {
      return f.get("name");
    }

    String str(String k, String def) {
      return f.getOrDefault(k, def);
    }

    long num(String k, long def) {
      String v = f.get(k);
      return v == null ? def : Long.parseLong(v);
    }

    int i(String k) {
      return (int) num(k, 0);
    }

    String status() {
      return str("status", "ok");
    }

    /** "none" (BF16), "tensor" or "block". */
    String fp8() {
      return str("fp8", "none");
    }

    /** "none" (no MXFP4), "w4a16" or "w4a8". */
    String mxfp4() {
      return str("mxfp4", "none");
    }

    /** A grouped case (layout=): moe_runner_run_grouped instead of routing + run. */
    boolean grouped() {
      return f.containsKey("layout");
    }

    int layout() {
      return str("layout", "").equals("masked") ? Moe.LAYOUT_MASKED : Moe.LAYOUT_CONTIGUOUS;
    }

    int[] counts() {
      String[] v = f.get("counts").split(",");
      int[] out = new int[v.length];
      for (int i = 0; i < v.length; i++) {
        out[i] = Integer.parseInt(v[i]);
      }
      return out;
    }

    /** Output rows of the valid rows, local experts ascending. */
    int[] groupedRows() {
      int[] cnt = counts();
      List<Integer> rows = new ArrayList<>();
      int start = 0;
      for (int e = 0; e < cnt.length; e++) {
        int first = layout() == Moe.LAYOUT_MASKED ? e * (int) num("capacity", 0) : start;
        for (int i = 0; i < cnt[e]; i++) {
          rows.add(first + i);
        }
        start += cnt[e];
      }
      return rows.stream().mapToInt(Integer::intValue).toArray();
    }

    /** A static scale s1 / s2: an fp32 value written exactly as a decimal. */
    float exactF32(String k) {
      String v = f.get(k);
      float x = Float.parseFloat(v);
      if ((double) x != Double.parseDouble(v) || !(x > 0)) {
        throw new IllegalArgumentException(name() + ": " + k + "=" + v + " is not an exact fp32");
      }
      return x;
    }

    @Override
    public String toString() {
      return name();
    }
  }

  static Path casesPath() {
    String env = System.getenv("MOE_CONFORMANCE_CASES");
    if (env != null && !env.isEmpty()) {
      return Paths.get(env);
    }
    String prop = System.getProperty("moetrtllm.cases");
    if (prop != null) {
      return Paths.get(prop);
    }
    return Paths.get("tests", "conformance", "cases.txt");
  }

  static List<Case> parse(Path p) throws IOException {
    List<Case> out = new ArrayList<>();
    int lineno = 0;
    for (String raw : Files.readAllLines(p, StandardCharsets.UTF_8)) {
      lineno++;
      int hash = raw.indexOf('#');
      String line = (hash >= 0 ? raw.substring(0, hash) : raw).trim();
      if (line.isEmpty()) {
        continue;
      }
      Map<String, String> f = new HashMap<>();
      for (String field : line.split(" ")) {
        if (field.isEmpty()) {
          continue;
        }
        int eq = field.indexOf('=');
        if (eq < 0 || !KEYS.contains(field.substring(0, eq))) {
          throw new IOException(p + ":" + lineno + ": bad field '" + field + "'");
        }
        f.put(field.substring(0, eq), field.substring(eq + 1));
      }
      Case c = new Case(f, lineno);
      Set<String> need = new java.util.HashSet<>(REQUIRED);
      need.addAll(c.grouped() ? Set.of("counts") : Set.of("method", "input", "K"));
      need.removeAll(f.keySet());
      if (!need.isEmpty()) {
        throw new IOException(p + ":" + lineno + ": missing keys " + need);
      }
      if (c.grouped()) {
        checkGrouped(c, p + ":" + lineno);
      } else if (f.containsKey("counts") || f.containsKey("capacity")) {
        throw new IOException(p + ":" + lineno + ": counts= and capacity= need layout=");
      }
      String fp8 = c.fp8(), hid = c.str("hidden", "bf16"), wts = c.str("weights", "bf16");
      boolean bad = !Set.of("none", "tensor", "block").contains(fp8)
          || !Set.of("bf16", "e4m3").contains(hid) || !Set.of("bf16", "e4m3").contains(wts)
          || (fp8.equals("none") && !(hid.equals("bf16") && wts.equals("bf16")))
          || (fp8.equals("tensor") || c.mxfp4().equals("w4a8")) != f.containsKey("s1")
          || f.containsKey("s1") != f.containsKey("s2");
      String mx = c.mxfp4();
      bad |= !Set.of("none", "w4a16", "w4a8").contains(mx)
          || (!mx.equals("none") && !fp8.equals("none"))
          || (mx.equals("none") && MX_ONLY.stream().anyMatch(f::containsKey))
          || !Set.of("canonical", "interleaved").contains(c.str("w1_order", "canonical"))
          || (c.str("w1_order", "canonical").equals("interleaved") && gatedFactor(c) != 2)
          || !Set.of("f32", "bf16").contains(c.str("gemm_bias_dtype", "f32"))
          || !Set.of("given", "missing", "misshaped").contains(c.str("mx_scales", "given"))
          || c.num("swiglu_params", 0) < 0 || c.num("swiglu_params", 0) > 2;
      if (bad) {
        throw new IOException(p + ":" + lineno
            + ": bad fp8 / hidden / weights / s1 / s2 / mxfp4 / w1_order / gemm_bias_dtype / "
            + "mx_scales / swiglu_params");
      }
      out.add(c);
    }
    return out;
  }

  /** docs/conformance.md "Grouped cases". */
  private static void checkGrouped(Case c, String where) throws IOException {
    String layout = c.f.get("layout");
    if (!layout.equals("contiguous") && !layout.equals("masked")) {
      throw new IOException(where + ": bad layout " + layout);
    }
    int[] cnt;
    try {
      cnt = c.counts();
    } catch (NumberFormatException e) {
      throw new IOException(where + ": counts= takes comma-separated integers");
    }
    if (cnt.length != c.i("local") || java.util.Arrays.stream(cnt).anyMatch(x -> x < 0)) {
      throw new IOException(where + ": counts= needs one value >= 0 per local expert");
    }
    for (String k : ROUTED_ONLY) {
      if (c.f.containsKey(k)) {
        throw new IOException(where + ": a grouped case takes no " + k + "=");
      }
    }
    boolean masked = layout.equals("masked");
    if (masked ? !c.f.containsKey("capacity") || c.num("T", 0) != c.i("local") * c.num(
            "capacity", 0) : c.num("capacity", 0) != 0) {
      throw new IOException(where
          + ": layout=masked needs capacity= with T = local * capacity; contiguous takes none");
    }
  }

  // ---- generator ---------------------------------------------------------------------------
  static final long GAMMA = 0x9E3779B97F4A7C15L;

  static final class SplitMix {
    long s;

    SplitMix(long seed, long stream) {
      s = seed ^ (stream * GAMMA);
    }

    long next() {
      s += GAMMA;
      long z = s;
      z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
      z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
      return z ^ (z >>> 31);
    }
  }

  static long count(long... shape) {
    long n = 1;
    for (long s : shape) {
      n *= s;
    }
    return n;
  }

  static short bf16Bits(float v) {
    return (short) (Float.floatToRawIntBits(v) >>> 16);
  }

  static Tensor genBf16(long seed, int stream, int scale, long... shape) {
    Tensor t = Tensor.allocateHost(DType.BF16, shape);
    SplitMix g = new SplitMix(seed, stream);
    ByteBuffer b = t.buffer();
    float sc = (float) Math.pow(2, -scale);
    for (long i = 0, n = count(shape); i < n; i++) {
      long m = (g.next() >>> 56) - 128;
      b.putShort((int) (2 * i), bf16Bits((float) m * sc));
    }
    return t;
  }

  static Tensor genF32(long seed, int stream, int scale, long... shape) {
    Tensor t = Tensor.allocateHost(DType.F32, shape);
    SplitMix g = new SplitMix(seed, stream);
    ByteBuffer b = t.buffer();
    double sc = Math.pow(2, -scale);
    for (long i = 0, n = count(shape); i < n; i++) {
      long m = (g.next() >>> 40) - (1L << 23);
      b.putFloat((int) (4 * i), (float) (m * sc));
    }
    return t;
  }

  /** One-byte codes code(next()) of a stream as a tensor of dtype dt. */
  static Tensor genCodes(long seed, int stream, DType dt, java.util.function.LongUnaryOperator code,
      long... shape) {
    Tensor t = Tensor.allocateHost(dt, shape);
    SplitMix g = new SplitMix(seed, stream);
    ByteBuffer b = t.buffer();
    for (long i = 0, n = count(shape); i < n; i++) {
      b.put((int) i, (byte) code.applyAsLong(g.next()));
    }
    return t;
  }

  /** e4m3 codes (next() >>> 56) & 0xBF (never NaN) as a float8_e4m3fn tensor. */
  static Tensor genE4m3(long seed, int stream, long... shape) {
    return genCodes(seed, stream, DType.FP8_E4M3, v -> (v >>> 56) & 0xBF, shape);
  }

  /** MXFP4 packed e2m1 pairs: bytes next() >>> 56, as a float4_e2m1fn x2 tensor. */
  static Tensor genE2m1x2(long seed, int stream, long... shape) {
    return genCodes(seed, stream, DType.FP4_E2M1X2, v -> v >>> 56, shape);
  }

  /** MXFP4 ue8m0 scale codes 118 + (next() >>> 61), as a float8_e8m0fnu tensor. */
  static Tensor genUe8m0(long seed, int stream, long... shape) {
    return genCodes(seed, stream, DType.E8M0, v -> 118 + (v >>> 61), shape);
  }

  /** fp32 FP8 scales (1 + (next() >>> 60)) * 2^-scale. */
  static Tensor genFp8Scale(long seed, int stream, int scale, long... shape) {
    Tensor t = Tensor.allocateHost(DType.F32, shape);
    SplitMix g = new SplitMix(seed, stream);
    ByteBuffer b = t.buffer();
    float sc = (float) Math.pow(2, -scale);
    for (long i = 0, n = count(shape); i < n; i++) {
      b.putFloat((int) (4 * i), (float) (1 + (g.next() >>> 60)) * sc);
    }
    return t;
  }

  static Tensor scalar(float v) {
    Tensor t = Tensor.allocateHost(DType.F32, 1);
    t.buffer().putFloat(0, v);
    return t;
  }

  // ---- digests ---------------------------------------------------------------------------
  static final class Fnv {
    long h = 0xcbf29ce484222325L;

    void bytes(ByteBuffer b, int from, int to) {
      for (int i = from; i < to; i++) {
        h = (h ^ (b.get(i) & 0xFF)) * 0x100000001b3L;
      }
    }

    void ints(int[] a, int n) {
      for (int i = 0; i < n; i++) {
        int v = a[i];
        for (int k = 0; k < 4; k++) {
          h = (h ^ ((v >>> (8 * k)) & 0xFF)) * 0x100000001b3L;
        }
      }
    }

    String hex() {
      return String.format("%016x", h);
    }
  }

  /** The results of a case: plan tables, digests and the digested output as floats. */
  static final class Result {
    String planDigest; // null for a grouped case
    String outputDigest;
    float[] output;
    final List<String> checks = new ArrayList<>(); // failed in-case checks (grouped cases)
  }

  static float bf16ToFloat(short s) {
    return Float.intBitsToFloat((s & 0xFFFF) << 16);
  }

  static int chooseConfig(Runner r, Problem p, int tile, int cluster) {
    for (int c : r.validConfigs(p)) {
      ConfigInfo info = r.describeConfig(c);
      if (info.tile() == tile && info.clusterSize() == cluster) {
        return c;
      }
    }
    throw new MoeException(Moe.STATUS_INVALID_CONFIG,
        "no valid config with tile=" + tile + " cluster=" + cluster);
  }

  /**
   * Where a case's tensors live: host buffers for the CPU backend, device memory from
   * CudaRuntime for the CUDA backend (freed on close).
   */
  static final class Placer implements AutoCloseable {
    final boolean gpu;
    final List<Long> pointers = new ArrayList<>();

    Placer(boolean gpu) {
      this.gpu = gpu;
    }

    /** The host tensor itself, or a device copy of it. */
    Tensor place(Tensor host) {
      if (!gpu || host == null) {
        return host;
      }
      long p = alloc(host.bytes());
      CudaRuntime.copyToDevice(p, host.buffer(), host.bytes());
      return Tensor.device(p, 0, host.dtype(), host.shape());
    }

    /** A bf16 tensor filled with GROUPED_SENTINEL where the backend writes it. */
    Tensor sentinel(long... shape) {
      Tensor h = Tensor.allocateHost(DType.BF16, shape);
      for (long i = 0, n = count(shape); i < n; i++) {
        h.buffer().putShort((int) (2 * i), GROUPED_SENTINEL);
      }
      return place(h);
    }

    /** A zeroed tensor where the backend writes it. */
    Tensor zeros(DType d, long... shape) {
      if (!gpu) {
        return Tensor.allocateHost(d, shape);
      }
      long n = d.bytes() * count(shape);
      long p = alloc(n);
      CudaRuntime.memset(p, 0, n);
      return Tensor.device(p, 0, d, shape);
    }

    /** The tensor's bytes on the host (little-endian). */
    ByteBuffer download(Tensor t) {
      if (!t.isDevice()) {
        return t.buffer();
      }
      Tensor h = Tensor.allocateHost(t.dtype(), t.shape());
      CudaRuntime.copyToHost(h.buffer(), t.address(), h.bytes());
      return h.buffer();
    }

    private long alloc(long bytes) {
      long p = CudaRuntime.malloc(Math.max(bytes, 256));
      pointers.add(p);
      return p;
    }

    @Override
    public void close() {
      for (long p : pointers) {
        CudaRuntime.free(p);
      }
      pointers.clear();
    }
  }

  /** Runs a case on the CPU backend. Throws MoeException on a library failure. */
  static Result run(Case c) {
    return run(c, false);
  }

  /**
   * Runs a case on the CPU backend with host tensors, or (gpu) on the CUDA backend with every
   * tensor and the workspace in device memory. Throws MoeException on a library failure.
   */
  static Result run(Case c, boolean gpu) {
    try (Placer pl = new Placer(gpu)) {
      return run(c, pl);
    }
  }

  private static Result run(Case c, Placer pl) {
    if (c.grouped()) {
      return runGrouped(c, pl);
    }
    int T = c.i("T"), E = c.i("E"), K = c.i("K"), H = c.i("H"), I = c.i("I");
    int el = c.i("local") == 0 ? E : c.i("local");
    int act = c.i("act");
    long f = gatedFactor(c);
    long seed = Long.parseLong(c.f.get("seed"));
    Problem p = new Problem(E, T, K, H, I, c.i("offset"), c.i("local"));
    RoutingArgs ra = new RoutingArgs().method(c.i("method"));
    String input = c.str("input", "logits");
    if (input.equals("logits")) {
      ra.logits(pl.place(c.str("logits_dtype", "f32").equals("bf16")
          ? genBf16(seed, 1, 5, T, E) : genF32(seed, 1, 21, T, E)));
    } else {
      Tensor ids = Tensor.allocateHost(DType.I32, T, K);
      SplitMix g = new SplitMix(seed, 6);
      int[] idv = new int[T * K];
      for (int t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) {
          int e;
          boolean dup;
          do {
            e = (int) Long.remainderUnsigned(g.next(), E);
            dup = false;
            for (int j = 0; j < k; j++) {
              dup |= idv[t * K + j] == e;
            }
          } while (dup);
          idv[t * K + k] = e;
        }
      }
      Tensor w = genBf16(seed, 7, 7, T, K);
      if (input.equals("ids")) {
        for (int i = 0; i < T * K; i++) {
          ids.buffer().putInt(4 * i, idv[i]);
        }
        ra.topk(pl.place(ids), pl.place(w));
      } else if (input.equals("packed")) {
        for (int i = 0; i < T * K; i++) {
          ids.buffer().putInt(4 * i, (idv[i] << 16) | (w.buffer().getShort(2 * i) & 0xFFFF));
        }
        ra.topkPacked(pl.place(ids));
      } else {
        throw new IllegalArgumentException("unknown input " + input);
      }
    }
    if (c.num("bias", 0) != 0) {
      ra.bias(pl.place(genBf16(seed, 2, 7, E)));
    }
    ra.groups((int) c.num("n_group", 1), (int) c.num("topk_group", 0));
    ra.routedScalingFactor(Float.parseFloat(c.str("scale", "1")));
    Experts x = new Experts(c, pl);
    RunArgs a = new RunArgs().gemmBias(x.b1, x.b2).swiglu(x.alpha, x.beta, x.clamp);
    boolean fin = c.num("finalize", 1) != 0;
    int backend = pl.gpu ? Moe.BACKEND_CUDA : Moe.BACKEND_CPU;
    // FP8 (docs/conformance.md "FP8 cases")
    String fp8 = c.fp8();
    boolean block = fp8.equals("block");
    boolean hidE4m3 = c.str("hidden", "bf16").equals("e4m3");
    boolean wE4m3 = c.str("weights", "bf16").equals("e4m3");
    Runner.Options opts = new Runner.Options().backend(backend).activation(act);
    if (!fp8.equals("none")) {
      opts.dtype(Moe.DTYPE_FP8_E4M3)
          .scalingMode(block ? Moe.SCALING_BLOCK : Moe.SCALING_PER_TENSOR);
    }
    String mx = c.mxfp4(); // MXFP4 (docs/conformance.md "MXFP4 cases")
    if (!mx.equals("none")) {
      opts.activationDtype(mx.equals("w4a8") ? Moe.DTYPE_FP8_E4M3 : Moe.DTYPE_BF16)
          .weightDtype(Moe.DTYPE_MXFP4)
          .scalingMode(Moe.SCALING_MX);
    }
    boolean staticScales = c.f.containsKey("s1");
    Tensor hidden = hidE4m3 ? genE4m3(seed, 3, T, H) : genBf16(seed, 3, 6, T, H);
    a.fp8Scales(hidE4m3 && block ? pl.place(genFp8Scale(seed, 11, 4, T, H / 128)) : null,
        staticScales ? pl.place(scalar(c.exactF32("s1"))) : null,
        staticScales ? pl.place(scalar(c.exactF32("s2"))) : null);
    try (Runner r = new Runner(opts)) {
      int cfg = chooseConfig(r, p, c.i("tile"), c.i("cluster"));
      Tensor ws = pl.zeros(DType.U8, r.workspaceSize(p, cfg));
      Tensor w1 = pl.zeros(DType.U8, r.weightsPreparedSize(p, Moe.WEIGHTS_GEMM1));
      Tensor w2 = pl.zeros(DType.U8, r.weightsPreparedSize(p, Moe.WEIGHTS_GEMM2));
      if (!mx.equals("none")) {
        x.prepareMxfp4(r, p, w1, w2);
      } else if (!wE4m3) {
        x.prepareBf16(r, p, w1, w2);
      } else { // e4m3 weights with their scales
        x.prepareE4m3(r, p, w1, w2, block);
      }
      Plan plan = r.prepareRouting(p, cfg, ws, ra, 0);
      if (plan.config() != cfg || plan.tile() != c.i("tile")
          || plan.clusterSize() != c.i("cluster")) {
        throw new AssertionError("plan descriptor does not match the config");
      }
      Tensor out = fin ? pl.zeros(DType.BF16, T, H)
                       : pl.zeros(DType.BF16, plan.maxPaddedRows(), H);
      a.inputs(pl.place(hidden), w1, w2);
      if (fin) {
        a.output(out);
      } else {
        a.permutedOutput(out);
      }
      a.doFinalize(fin);
      r.run(p, cfg, plan, ws, a, 0);

      int n = plan.readInts(Moe.PLAN_NUM_CTAS)[0];
      int pp = plan.readInts(Moe.PLAN_PERMUTED_SIZE)[0];
      Fnv d = new Fnv();
      d.ints(plan.readInts(Moe.PLAN_TOPK_IDS), T * K);
      ByteBuffer w = plan.read(Moe.PLAN_EXPERT_WEIGHTS);
      d.bytes(w, 0, 2 * T * K);
      d.ints(plan.readInts(Moe.PLAN_EXPANDED_TO_PERMUTED), T * K);
      int[] p2t = plan.readInts(Moe.PLAN_PERMUTED_TO_TOKEN);
      d.ints(p2t, pp);
      d.ints(plan.readInts(Moe.PLAN_PERMUTED_TO_EXPANDED), pp);
      d.ints(plan.readInts(Moe.PLAN_CTA_TO_BATCH), n);
      d.ints(plan.readInts(Moe.PLAN_CTA_TO_MN_LIMIT), n);
      d.ints(new int[] {n, pp}, 2);
      Result res = new Result();
      res.planDigest = d.hex();
      Fnv o = new Fnv();
      ByteBuffer ob = pl.download(out).order(ByteOrder.LITTLE_ENDIAN);
      List<Float> vals = new ArrayList<>();
      if (fin) {
        o.bytes(ob, 0, 2 * T * H);
        for (int i = 0; i < T * H; i++) {
          vals.add(bf16ToFloat(ob.getShort(2 * i)));
        }
      } else {
        for (int row = 0; row < pp; row++) {
          if (p2t[row] >= 0) {
            o.bytes(ob, 2 * row * H, 2 * (row + 1) * H);
            for (int h = 0; h < H; h++) {
              vals.add(bf16ToFloat(ob.getShort(2 * (row * H + h))));
            }
          }
        }
      }
      res.outputDigest = o.hex();
      res.output = new float[vals.size()];
      for (int i = 0; i < vals.size(); i++) {
        res.output[i] = vals.get(i);
      }
      return res;
    }
  }

  /** The expert tensors of a case: GEMM biases (streams 8, 9), SwiGLU parameters (10). */
  static final class Experts {
    final Case c;
    final Placer pl;
    Tensor b1;
    Tensor b2;
    Tensor alpha;
    Tensor beta;
    Tensor clamp;

    Experts(Case c, Placer pl) {
      this.c = c;
      this.pl = pl;
      int el = c.i("local") == 0 ? c.i("E") : c.i("local"), H = c.i("H"), I = c.i("I");
      long f = gatedFactor(c);
      long seed = Long.parseLong(c.f.get("seed"));
      if (c.num("gemm_bias", 0) != 0 && c.str("gemm_bias_dtype", "f32").equals("bf16")) {
        b1 = pl.place(genBf16(seed, 8, 10, el, f * I));
        b2 = pl.place(genBf16(seed, 9, 10, el, H));
      } else if (c.num("gemm_bias", 0) != 0) {
        b1 = pl.place(genF32(seed, 8, 26, el, f * I));
        b2 = pl.place(genF32(seed, 9, 26, el, H));
      }
      if (c.num("swiglu_params", 0) == 2) { // gpt-oss's constants
        Tensor al = Tensor.allocateHost(DType.F32, el);
        Tensor be = Tensor.allocateHost(DType.F32, el);
        Tensor cl = Tensor.allocateHost(DType.F32, el);
        for (int e = 0; e < el; e++) {
          al.buffer().putFloat(4 * e, 1.702f);
          be.buffer().putFloat(4 * e, 1.0f);
          cl.buffer().putFloat(4 * e, 7.0f);
        }
        alpha = pl.place(al);
        beta = pl.place(be);
        clamp = pl.place(cl);
      } else if (c.num("swiglu_params", 0) != 0) {
        Tensor al = Tensor.allocateHost(DType.F32, el);
        Tensor be = Tensor.allocateHost(DType.F32, el);
        Tensor cl = Tensor.allocateHost(DType.F32, el);
        SplitMix g = new SplitMix(seed, 10);
        for (int e = 0; e < el; e++) {
          al.buffer().putFloat(4 * e, 1 + (g.next() >>> 60) / 16.0f);
          be.buffer().putFloat(4 * e, (g.next() >>> 60) / 16.0f);
          cl.buffer().putFloat(4 * e, 4 + (g.next() >>> 60) / 4.0f);
        }
        alpha = pl.place(al);
        beta = pl.place(be);
        clamp = pl.place(cl);
      }
    }

    void prepareMxfp4(Runner r, Problem p, Tensor w1, Tensor w2) {
      prepareMxfp4Weights(c, pl, r, p, w1, w2);
    }

    /** Prepares the case's bf16 canonical W1, W2 (streams 4, 5) into w1, w2. */
    void prepareBf16(Runner r, Problem p, Tensor w1, Tensor w2) {
      int el = c.i("local") == 0 ? c.i("E") : c.i("local"), H = c.i("H"), I = c.i("I");
      long seed = Long.parseLong(c.f.get("seed"));
      r.prepareWeights(p, Moe.WEIGHTS_GEMM1,
          pl.place(genBf16(seed, 4, 8, el, gatedFactor(c) * I, H)), w1, 0);
      r.prepareWeights(p, Moe.WEIGHTS_GEMM2, pl.place(genBf16(seed, 5, 8, el, H, I)), w2, 0);
    }

    /**
     * Prepares the case's e4m3 W1, W2 (streams 4, 5) with their fp32 scales (streams 12, 13:
     * one per expert, or with block one per 128 x 128 block) into w1, w2.
     */
    void prepareE4m3(Runner r, Problem p, Tensor w1, Tensor w2, boolean block) {
      int el = c.i("local") == 0 ? c.i("E") : c.i("local"), H = c.i("H"), I = c.i("I");
      long seed = Long.parseLong(c.f.get("seed"));
      long r1 = gatedFactor(c) * I;
      r.prepareWeightsScaled(p, Moe.WEIGHTS_GEMM1, pl.place(genE4m3(seed, 4, el, r1, H)),
          pl.place(block ? genFp8Scale(seed, 12, 6, el, r1 / 128, H / 128)
                         : genFp8Scale(seed, 12, 6, el)), w1, 0);
      r.prepareWeightsScaled(p, Moe.WEIGHTS_GEMM2, pl.place(genE4m3(seed, 5, el, H, I)),
          pl.place(block ? genFp8Scale(seed, 13, 6, el, H / 128, I / 128)
                         : genFp8Scale(seed, 13, 6, el)), w2, 0);
    }
  }

  /**
   * Prepares the case's MXFP4 W1, W2 into w1, w2: packed e2m1 pairs (streams 4, 5) as
   * DType.FP4_E2M1X2 with their ue8m0 scales (streams 12, 13) as DType.E8M0; W1 as
   * WEIGHTS_GEMM1_GATE_UP_INTERLEAVED with w1_order=interleaved; no scales, or 2-D ones, in
   * the mx_scales error cases.
   */
  static void prepareMxfp4Weights(Case c, Placer pl, Runner r, Problem p, Tensor w1, Tensor w2) {
    int el = c.i("local") == 0 ? c.i("E") : c.i("local"), H = c.i("H"), I = c.i("I");
    long seed = Long.parseLong(c.f.get("seed"));
    long[][] dims = {{el, gatedFactor(c) * I, H}, {el, H, I}};
    int[] which = {c.str("w1_order", "canonical").equals("interleaved")
            ? Moe.WEIGHTS_GEMM1_GATE_UP_INTERLEAVED : Moe.WEIGHTS_GEMM1, Moe.WEIGHTS_GEMM2};
    Tensor[] out = {w1, w2};
    String scales = c.str("mx_scales", "given");
    for (int k = 0; k < 2; k++) {
      long rows = dims[k][1], cols = dims[k][2];
      Tensor q = genE2m1x2(seed, 4 + k, el, rows, cols / 2);
      Tensor s = scales.equals("missing") ? null
          : scales.equals("misshaped") ? genUe8m0(seed, 12 + k, el, rows * (cols / 32))
                                       : genUe8m0(seed, 12 + k, el, rows, cols / 32);
      r.prepareWeightsScaled(p, which[k], pl.place(q), s == null ? null : pl.place(s), out[k], 0);
    }
  }

  /** f: 2 for the gated activations (W1 is [E_l, 2I, H]), else 1. */
  static long gatedFactor(Case c) {
    int act = c.i("act");
    return (act == Moe.ACTIVATION_SWIGLU || act == Moe.ACTIVATION_GEGLU) ? 2 : 1;
  }

  /**
   * A grouped case: moe_runner_run_grouped on the case's layout and counts, the output
   * pre-filled with GROUPED_SENTINEL and digested whole. Checks that rows past the counts keep
   * the sentinel and that each valid row equals, bit for bit, the unweighted row moe_runner_run
   * (pre-routed ids, K = 1, do_finalize = 0) computes for it.
   */
  private static Result runGrouped(Case c, Placer pl) {
    int T = c.i("T"), E = c.i("E"), H = c.i("H"), I = c.i("I"), el = c.i("local");
    long cap = c.num("capacity", 0);
    long seed = Long.parseLong(c.f.get("seed"));
    boolean masked = c.layout() == Moe.LAYOUT_MASKED;
    long[] shape = masked ? new long[] {el, cap, H} : new long[] {T, H};
    Problem p = new Problem(E, T, 1, H, I, c.i("offset"), el);
    int backend = pl.gpu ? Moe.BACKEND_CUDA : Moe.BACKEND_CPU;
    int[] cnt = c.counts();
    Tensor counts = Tensor.allocateHost(DType.I32, el);
    for (int e = 0; e < el; e++) {
      counts.buffer().putInt(4 * e, cnt[e]);
    }
    // FP8 (docs/conformance.md "Grouped FP8 cases"): bf16 or e4m3 [T, H] hidden states, BLOCK
    // e4m3 with [T, H/128] scales (MASKED: row e * capacity + i), s1 / s2 in PER_TENSOR
    String fp8 = c.fp8();
    boolean block = fp8.equals("block");
    boolean hidE4m3 = c.str("hidden", "bf16").equals("e4m3");
    boolean wE4m3 = c.str("weights", "bf16").equals("e4m3");
    DType hdt = hidE4m3 ? DType.FP8_E4M3 : DType.BF16;
    int hb = hidE4m3 ? 1 : 2; // bytes per hidden element
    Tensor hidden = hidE4m3 ? genE4m3(seed, 3, T, H) : genBf16(seed, 3, 6, T, H);
    Tensor hscale = hidE4m3 && block ? genFp8Scale(seed, 11, 4, T, H / 128) : null;
    boolean staticScales = c.f.containsKey("s1");
    Tensor s1 = staticScales ? pl.place(scalar(c.exactF32("s1"))) : null;
    Tensor s2 = staticScales ? pl.place(scalar(c.exactF32("s2"))) : null;
    Runner.Options opts = new Runner.Options().backend(backend).activation(c.i("act"));
    if (!fp8.equals("none")) {
      opts.dtype(Moe.DTYPE_FP8_E4M3)
          .scalingMode(block ? Moe.SCALING_BLOCK : Moe.SCALING_PER_TENSOR);
    }
    try (Runner r = new Runner(opts)) {
      int cfg = chooseConfig(r, p, c.i("tile"), c.i("cluster"));
      Experts x = new Experts(c, pl);
      Tensor w1 = pl.zeros(DType.U8, r.weightsPreparedSize(p, Moe.WEIGHTS_GEMM1));
      Tensor w2 = pl.zeros(DType.U8, r.weightsPreparedSize(p, Moe.WEIGHTS_GEMM2));
      if (!wE4m3) {
        x.prepareBf16(r, p, w1, w2);
      } else { // e4m3 weights with their scales
        x.prepareE4m3(r, p, w1, w2, block);
      }
      Tensor out = pl.sentinel(shape);
      Tensor hid = Tensor.host(hidden.buffer(), hdt, shape);
      r.runGrouped(p, cfg, new GroupedArgs().layout(c.layout(), cap)
          .inputs(pl.place(hid), pl.place(counts), w1, w2).gemmBias(x.b1, x.b2)
          .swiglu(x.alpha, x.beta, x.clamp)
          .fp8Scales(hscale == null ? null : pl.place(hscale), s1, s2).output(out),
          pl.zeros(DType.U8, r.groupedWorkspaceSize(p, cfg)), 0);
      ByteBuffer ob = pl.download(out).order(ByteOrder.LITTLE_ENDIAN);
      Result res = new Result();
      Fnv o = new Fnv();
      o.bytes(ob, 0, 2 * T * H);
      res.outputDigest = o.hex();
      int[] rows = c.groupedRows();
      boolean[] valid = new boolean[T];
      for (int row : rows) {
        valid[row] = true;
      }
      for (int row = 0; row < T && res.checks.isEmpty(); row++) {
        for (int h = 0; h < H && !valid[row]; h++) {
          if (ob.getShort(2 * (row * H + h)) != GROUPED_SENTINEL) {
            res.checks.add("output row " + row + " (past the counts) was written");
            break;
          }
        }
      }
      res.output = new float[rows.length * H];
      for (int t = 0; t < rows.length; t++) {
        for (int h = 0; h < H; h++) {
          res.output[t * H + h] = bf16ToFloat(ob.getShort(2 * (rows[t] * H + h)));
        }
      }
      // the cross-check: the same rows through routing (ids = their experts) + run
      int n = rows.length;
      Problem pr = new Problem(E, n, 1, H, I, c.i("offset"), el);
      Tensor ids = Tensor.allocateHost(DType.I32, n, 1);
      Tensor ones = Tensor.allocateHost(DType.BF16, n, 1);
      Tensor rowsIn = Tensor.allocateHost(hdt, n, H);
      Tensor rowsScale = hscale == null ? null : Tensor.allocateHost(DType.F32, n, H / 128);
      for (int e = 0, t = 0; e < el; e++) {
        for (int i = 0; i < cnt[e]; i++, t++) {
          ids.buffer().putInt(4 * t, c.i("offset") + e);
          ones.buffer().putShort(2 * t, (short) 0x3F80);
          for (int b = 0; b < hb * H; b++) {
            rowsIn.buffer().put(hb * t * H + b, hidden.buffer().get(hb * rows[t] * H + b));
          }
          for (int b = 0; rowsScale != null && b < 4 * (H / 128); b++) {
            rowsScale.buffer().put(4 * t * (H / 128) + b,
                hscale.buffer().get(4 * rows[t] * (H / 128) + b));
          }
        }
      }
      int cfg2 = chooseConfig(r, pr, c.i("tile"), c.i("cluster"));
      Tensor ws2 = pl.zeros(DType.U8, r.workspaceSize(pr, cfg2));
      Plan plan = r.prepareRouting(pr, cfg2, ws2, new RoutingArgs().method(Moe.ROUTING_TOPK)
          .topk(pl.place(ids), pl.place(ones)), 0);
      Tensor perm = pl.zeros(DType.BF16, plan.maxPaddedRows(), H);
      r.run(pr, cfg2, plan, ws2, new RunArgs().inputs(pl.place(rowsIn), w1, w2)
          .gemmBias(x.b1, x.b2).swiglu(x.alpha, x.beta, x.clamp)
          .fp8Scales(rowsScale == null ? null : pl.place(rowsScale), s1, s2)
          .permutedOutput(perm).doFinalize(false), 0);
      int[] e2p = plan.readInts(Moe.PLAN_EXPANDED_TO_PERMUTED);
      ByteBuffer pb = pl.download(perm).order(ByteOrder.LITTLE_ENDIAN);
      for (int t = 0; t < n; t++) {
        boolean same = e2p[t] >= 0;
        for (int h = 0; h < H && same; h++) {
          same = pb.getShort(2 * (e2p[t] * H + h)) == ob.getShort(2 * (rows[t] * H + h));
        }
        if (!same) {
          res.checks.add("output row " + rows[t]
              + " differs from moe_runner_run's unweighted row (slot " + t + ")");
          break;
        }
      }
      return res;
    }
  }
}
