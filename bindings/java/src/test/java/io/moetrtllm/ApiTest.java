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
}
