package io.moetrtllm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import org.junit.jupiter.api.Test;

/** API and error-path tests of the Java binding (CPU backend). */
class ApiTest {
  static final Problem P = new Problem(8, 5, 2, 64, 32);

  static final class Setup {
    final Tensor logits = Conformance.genF32(7, 1, 21, 5, 8);
    final Tensor hidden = Conformance.genBf16(7, 3, 6, 5, 64);
    final Tensor w1;
    final Tensor w2;

    Setup(Runner r) {
      w1 = r.prepareWeightsHost(P, Moe.WEIGHTS_GEMM1, Conformance.genBf16(7, 4, 8, 8, 64, 64));
      w2 = r.prepareWeightsHost(P, Moe.WEIGHTS_GEMM2, Conformance.genBf16(7, 5, 8, 8, 64, 32));
    }
  }

  @Test
  void versionAndStatus() {
    assertTrue(Moe.version().startsWith("0."));
    assertFalse(Moe.statusString(Moe.STATUS_INVALID_ARGUMENT).isEmpty());
    assertTrue(Moe.cudaDeviceCount() >= 0);
  }

  @Test
  void queries() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      assertEquals(Moe.BACKEND_CPU, r.backend());
      assertTrue(r.numConfigs() > 0);
      List<Integer> cfgs = r.validConfigs(P);
      assertFalse(cfgs.isEmpty());
      assertEquals((int) cfgs.get(0), r.defaultConfig(P));
      for (int c : cfgs) {
        ConfigInfo info = r.describeConfig(c);
        assertEquals(c, info.index());
        assertEquals(info.clusterSize(), r.clusterSize(c));
        assertEquals(info.tile(), info.ctaTile() * info.clusterSize());
        assertFalse(info.name().isEmpty());
        assertTrue(r.workspaceSize(P, c) > 0);
      }
      assertEquals(8L * 64 * 64 * 2, r.weightsPreparedSize(P, Moe.WEIGHTS_GEMM1));
    }
  }

  @Test
  void prepareRunMatchesForward() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Setup s = new Setup(r);
      int cfg = r.defaultConfig(P);
      Tensor ws = r.allocateHostWorkspace(P, cfg);
      Plan plan = r.prepareRouting(P, cfg, ws, new RoutingArgs().logits(s.logits), 0);
      assertEquals(cfg, plan.config());
      int[] ids = plan.readInts(Moe.PLAN_TOPK_IDS);
      assertEquals(10, ids.length);
      for (int id : ids) {
        assertTrue(id >= 0 && id < 8);
      }
      Tensor out = Tensor.allocateHost(DType.BF16, 5, 64);
      r.run(P, cfg, plan, ws, new RunArgs().inputs(s.hidden, s.w1, s.w2).output(out), 0);
      Tensor out2 = r.forward(P, new RoutingArgs().logits(s.logits),
          new RunArgs().inputs(s.hidden, s.w1, s.w2), null, 0);
      byte[] a = new byte[5 * 64 * 2];
      byte[] b = new byte[5 * 64 * 2];
      out.buffer().get(0, a);
      out2.buffer().get(0, b);
      assertArrayEquals(a, b);
      boolean nonzero = false;
      for (byte x : a) {
        nonzero |= x != 0;
      }
      assertTrue(nonzero);
    }
  }

  @Test
  void badShape() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Setup s = new Setup(r);
      Tensor bad = Tensor.allocateHost(DType.BF16, 5, 32);
      MoeException e = assertThrows(MoeException.class, () -> r.forward(P,
          new RoutingArgs().logits(s.logits), new RunArgs().inputs(bad, s.w1, s.w2), null, 0));
      assertEquals(Moe.STATUS_INVALID_ARGUMENT, e.status());
      assertFalse(e.libraryMessage().isEmpty());
    }
  }

  @Test
  void badEnumValue() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Setup s = new Setup(r);
      MoeException e = assertThrows(MoeException.class, () -> r.forward(P,
          new RoutingArgs().logits(s.logits).method(42),
          new RunArgs().inputs(s.hidden, s.w1, s.w2), null, 0));
      assertEquals(Moe.STATUS_INVALID_ARGUMENT, e.status());
      assertFalse(e.libraryMessage().isEmpty());
    }
    MoeException e = assertThrows(MoeException.class, () -> new Runner(Moe.BACKEND_CPU, 5));
    assertEquals(Moe.STATUS_INVALID_ARGUMENT, e.status());
  }

  @Test
  void tooSmallWorkspace() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Setup s = new Setup(r);
      int cfg = r.defaultConfig(P);
      Tensor ws = Tensor.allocateHost(DType.U8, r.workspaceSize(P, cfg) - 256);
      MoeException e = assertThrows(MoeException.class,
          () -> r.prepareRouting(P, cfg, ws, new RoutingArgs().logits(s.logits), 0));
      assertEquals(Moe.STATUS_INSUFFICIENT_WORKSPACE, e.status());
      assertFalse(e.libraryMessage().isEmpty());
    }
  }

  @Test
  void useAfterClose() {
    Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU);
    r.close();
    r.close();
    assertTrue(r.isClosed());
    MoeException e = assertThrows(MoeException.class, () -> r.validConfigs(P));
    assertEquals(Moe.STATUS_INVALID_ARGUMENT, e.status());
    assertFalse(e.libraryMessage().isEmpty());
  }

  @Test
  void heapBufferRejected() {
    assertThrows(IllegalArgumentException.class,
        () -> Tensor.host(ByteBuffer.allocate(16), DType.U8, 16));
  }
  @Test
  void autotune() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Setup s = new Setup(r);
      List<AutotuneResult> res = r.autotune(P, new RoutingArgs().logits(s.logits),
          new RunArgs().inputs(s.hidden, s.w1, s.w2), null, 2, 0);
      assertEquals(r.validConfigs(P).size(), res.size());
      for (int i = 1; i < res.size(); i++) {
        assertTrue(res.get(i - 1).timeUs() <= res.get(i).timeUs());
      }
    }
  }

  // ---- grouped run (moe_runner_run_grouped) ----------------------------------------------
  static final Problem GP = new Problem(8, 12, 1, 64, 32, 4, 4);

  static final class Grouped {
    final Tensor hidden = Conformance.genBf16(11, 3, 6, 12, 64);
    final Tensor w1;
    final Tensor w2;
    final int cfg;

    Grouped(Runner r) {
      w1 = r.prepareWeightsHost(GP, Moe.WEIGHTS_GEMM1, Conformance.genBf16(11, 4, 8, 4, 64, 64));
      w2 = r.prepareWeightsHost(GP, Moe.WEIGHTS_GEMM2, Conformance.genBf16(11, 5, 8, 4, 64, 32));
      cfg = r.defaultConfig(GP);
    }

    Tensor counts(DType d, int... v) {
      Tensor t = Tensor.allocateHost(d, v.length);
      for (int i = 0; i < v.length; i++) {
        if (d == DType.I32) {
          t.buffer().putInt(4 * i, v[i]);
        } else {
          t.buffer().put(i, (byte) v[i]);
        }
      }
      return t;
    }
  }

  @Test
  void runGroupedBothLayouts() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Grouped g = new Grouped(r);
      assertTrue(r.groupedWorkspaceSize(GP, g.cfg) > 0);
      Tensor out = r.runGrouped(GP, g.cfg, new GroupedArgs()
          .inputs(g.hidden, g.counts(DType.I32, 3, 0, 5, 2), g.w1, g.w2), null, 0);
      assertArrayEquals(new long[] {12, 64}, out.shape());
      for (int i = 10 * 64; i < 12 * 64; i++) {
        assertEquals(0, out.buffer().getShort(2 * i), "rows past the sum are not written");
      }
      Tensor masked = r.runGrouped(GP, g.cfg, new GroupedArgs().layout(Moe.LAYOUT_MASKED, 3)
          .inputs(Tensor.host(g.hidden.buffer(), DType.BF16, 4, 3, 64),
              g.counts(DType.I32, 3, 0, 1, 2), g.w1, g.w2), null, 0);
      for (int i = 0; i < 3 * 64; i++) {
        assertEquals(out.buffer().getShort(2 * i), masked.buffer().getShort(2 * i));
      }
    }
  }

  @Test
  void runGroupedMisuseThrowsTheLibraryError() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      Grouped g = new Grouped(r);
      Tensor masked = Tensor.host(g.hidden.buffer(), DType.BF16, 4, 3, 64);
      Object[][] bad = {
          {new GroupedArgs().layout(7, 0)
              .inputs(g.hidden, g.counts(DType.I32, 3, 0, 5, 2), g.w1, g.w2), "args->layout"},
          {new GroupedArgs().inputs(g.hidden, g.counts(DType.U8, 3, 0, 5, 2), g.w1, g.w2),
              "args->expert_counts"},
          {new GroupedArgs().inputs(g.hidden, g.counts(DType.I32, 3, 0, 5), g.w1, g.w2),
              "args->expert_counts"},
          {new GroupedArgs().layout(Moe.LAYOUT_MASKED, 4)
              .inputs(masked, g.counts(DType.I32, 3, 0, 1, 2), g.w1, g.w2), "args->capacity"},
          {new GroupedArgs().layout(Moe.LAYOUT_CONTIGUOUS, 3)
              .inputs(g.hidden, g.counts(DType.I32, 3, 0, 5, 2), g.w1, g.w2), "args->capacity"},
          {new GroupedArgs().inputs(g.hidden, g.counts(DType.I32, 13, 0, 0, 0), g.w1, g.w2),
              "args->expert_counts"},
      };
      for (Object[] b : bad) {
        MoeException e = assertThrows(MoeException.class,
            () -> r.runGrouped(GP, g.cfg, (GroupedArgs) b[0], null, 0));
        assertEquals(Moe.STATUS_INVALID_ARGUMENT, e.status());
        assertTrue(e.libraryMessage().contains((String) b[1]), e.libraryMessage());
      }
    }
  }
}
