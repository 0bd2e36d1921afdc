package io.moetrtllm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Threads sharing runners and run arguments (issue 23, items 8 and 10), and the constants
 * against the C header (issue 22). CPU backend.
 */
class ThreadingTest {
  static final Problem P = ApiTest.P;

  static byte[] bytes(Tensor t) {
    byte[] b = new byte[(int) t.bytes()];
    t.buffer().get(0, b);
    return b;
  }

  static byte[] reference(ApiTest.Setup s) {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      return bytes(r.forward(P, new RoutingArgs().logits(s.logits),
          new RunArgs().inputs(s.hidden, s.w1, s.w2), null, 0));
    }
  }

  /**
   * close() from one thread while another is inside a long forward waits for the forward. Up
   * to three attempts, so that a loaded machine (the forward thread not yet inside the call
   * when close() comes, or descheduled right after it) cannot fail it; without the wait every
   * attempt shows close() returning most of a forward too early.
   */
  @Test
  void closeWaitsForCallInFlight() throws Exception {
    Problem big = new Problem(8, 1024, 2, 512, 512);
    Tensor w1c = Conformance.genBf16(21, 4, 8, 8, 1024, 512);
    Tensor w2c = Conformance.genBf16(21, 5, 8, 8, 512, 512);
    RoutingArgs ra = new RoutingArgs().logits(Conformance.genF32(21, 1, 21, 1024, 8));
    Tensor hidden = Conformance.genBf16(21, 3, 6, 1024, 512);
    String last = null;
    for (int attempt = 0; attempt < 3; attempt++) {
      Runner r = new Runner(new Runner.Options().backend(Moe.BACKEND_CPU).numThreads(1));
      RunArgs args = new RunArgs().inputs(hidden,
          r.prepareWeightsHost(big, Moe.WEIGHTS_GEMM1, w1c),
          r.prepareWeightsHost(big, Moe.WEIGHTS_GEMM2, w2c));
      Tensor ws = r.allocateHostWorkspace(big, r.defaultConfig(big));
      long t0 = System.nanoTime();
      byte[] want = bytes(r.forward(big, ra, args, ws, 0));
      long duration = System.nanoTime() - t0;
      CountDownLatch entering = new CountDownLatch(1);
      AtomicLong callStarted = new AtomicLong();
      AtomicLong callEnded = new AtomicLong();
      AtomicReference<Throwable> err = new AtomicReference<>();
      AtomicReference<Tensor> out = new AtomicReference<>();
      Thread t = new Thread(() -> {
        try {
          entering.countDown();
          callStarted.set(System.nanoTime());
          out.set(r.forward(big, ra, args, ws, 0));
        } catch (Throwable e) {
          err.set(e);
        } finally {
          callEnded.set(System.nanoTime());
        }
      });
      t.start();
      entering.await();
      Thread.sleep(duration / 8_000_000); // an eighth of the forward: it is under way
      r.close();
      long closed = System.nanoTime();
      t.join();
      MoeException after = assertThrows(MoeException.class,
          () -> r.forward(big, ra, args, ws, 0));
      assertEquals(Moe.STATUS_INVALID_ARGUMENT, after.status());
      assertTrue(r.isClosed());
      if (err.get() instanceof MoeException) {
        last = "close() came before the forward started: " + err.get();
        continue; // inconclusive: try again
      }
      assertNull(err.get(), () -> "the call in flight failed: " + err.get());
      assertArrayEquals(want, bytes(out.get()), "the call in flight gave a wrong output");
      // callEnded is taken just after the call releases the runner, so it may trail close()'s
      // return a little; without the wait it trails by most of the call (close() comes an
      // eighth of a forward after the call starts).
      long call = callEnded.get() - callStarted.get();
      long slack = callEnded.get() - closed;
      if (slack < call / 2) {
        return;
      }
      last = "close() returned " + slack / 1000 + " us before the call in flight ended (the call "
          + "took " + call / 1000 + " us)";
      System.out.println("closeWaitsForCallInFlight: attempt " + attempt + ": " + last);
    }
    throw new AssertionError(last);
  }

  /** Threads loop on a shared runner while three others close it at once. */
  @Test
  void concurrentCloseDuringCalls() throws Exception {
    for (int round = 0; round < 3; round++) {
      Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU);
      ApiTest.Setup s = new ApiTest.Setup(r);
      byte[] want = reference(s);
      AtomicInteger ok = new AtomicInteger();
      AtomicInteger failed = new AtomicInteger();
      AtomicReference<String> bad = new AtomicReference<>();
      CountDownLatch started = new CountDownLatch(4);
      List<Thread> threads = new ArrayList<>();
      for (int g = 0; g < 4; g++) {
        threads.add(new Thread(() -> {
          for (int i = 0; i < 40; i++) {
            if (i == 2) {
              started.countDown();
            }
            try {
              Tensor o = r.forward(P, new RoutingArgs().logits(s.logits),
                  new RunArgs().inputs(s.hidden, s.w1, s.w2), null, 0);
              if (!java.util.Arrays.equals(want, bytes(o))) {
                bad.set("wrong output during close");
              }
              ok.incrementAndGet();
            } catch (MoeException e) {
              if (e.status() != Moe.STATUS_INVALID_ARGUMENT || e.libraryMessage().isEmpty()) {
                bad.set("unexpected error: " + e);
              }
              failed.incrementAndGet();
            }
          }
        }));
      }
      threads.forEach(Thread::start);
      started.await();
      List<Thread> closers = new ArrayList<>();
      for (int c = 0; c < 3; c++) {
        closers.add(new Thread(r::close));
      }
      closers.forEach(Thread::start);
      for (Thread t : closers) {
        t.join();
      }
      for (Thread t : threads) {
        t.join();
      }
      assertNull(bad.get(), bad.get());
      assertTrue(ok.get() > 0);
      assertThrows(MoeException.class, () -> r.numConfigs());
    }
  }

  /** A reused RunArgs: the second forward does not overwrite the first one's output. */
  @Test
  void reusedRunArgsGiveIndependentOutputs() {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      ApiTest.Setup s = new ApiTest.Setup(r);
      RoutingArgs ra = new RoutingArgs().logits(s.logits);
      RunArgs args = new RunArgs().inputs(s.hidden, s.w1, s.w2);
      Tensor first = r.forward(P, ra, args, null, 0);
      byte[] firstBytes = bytes(first);
      assertNull(args.output, "forward stored its output in the caller's RunArgs");
      args.inputs(Conformance.genBf16(8, 3, 4, 5, 64), s.w1, s.w2);
      Tensor second = r.forward(P, ra, args, null, 0);
      assertNotSame(first, second);
      assertArrayEquals(firstBytes, bytes(first), "the second forward overwrote the first");
      assertFalse(java.util.Arrays.equals(firstBytes, bytes(second)),
          "different inputs gave the same output");
    }
  }

  /** Eight threads share one runner and one RunArgs: each gets its own, correct output. */
  @Test
  void threadsShareRunnerAndRunArgs() throws Exception {
    try (Runner r = new Runner(Moe.BACKEND_CPU, Moe.ACTIVATION_SWIGLU)) {
      ApiTest.Setup s = new ApiTest.Setup(r);
      byte[] want = reference(s);
      RoutingArgs ra = new RoutingArgs().logits(s.logits);
      RunArgs args = new RunArgs().inputs(s.hidden, s.w1, s.w2);
      Tensor[] outs = new Tensor[8];
      AtomicReference<Throwable> err = new AtomicReference<>();
      List<Thread> threads = new ArrayList<>();
      for (int g = 0; g < outs.length; g++) {
        final int gi = g;
        threads.add(new Thread(() -> {
          try {
            for (int i = 0; i < 20; i++) {
              outs[gi] = r.forward(P, ra, args, null, 0);
              if (!java.util.Arrays.equals(want, bytes(outs[gi]))) {
                err.set(new AssertionError("thread " + gi + ": wrong output"));
              }
            }
          } catch (Throwable e) {
            err.set(e);
          }
        }));
      }
      threads.forEach(Thread::start);
      for (Thread t : threads) {
        t.join();
      }
      assertNull(err.get(), () -> String.valueOf(err.get()));
      for (int g = 0; g < outs.length; g++) {
        assertArrayEquals(want, bytes(outs[g]), "thread " + g);
        for (int h = 0; h < g; h++) {
          assertNotSame(outs[g], outs[h]);
        }
      }
      assertNull(args.output);
    }
  }

  static Path headerPath() {
    Path cases = Conformance.casesPath().toAbsolutePath();
    return cases.getParent().getParent().getParent().resolve("include").resolve("moe_trtllm.h");
  }

  /**
   * Every integer macro of a binding family in the header is a Moe constant with the same
   * value, and every status has its name: a value added to the header fails here.
   */
  @Test
  void constantsMatchHeader() throws IOException, ReflectiveOperationException {
    String text = Files.readString(headerPath()).replace("\\\n", " ");
    Matcher m = Pattern.compile("(?m)^#define\\s+MOE_([A-Z0-9_]+)\\s+\\(?(-?\\d+)\\)?")
        .matcher(text);
    Map<String, Integer> defs = new HashMap<>();
    while (m.find()) {
      defs.put(m.group(1), Integer.parseInt(m.group(2)));
    }
    int statuses = 0;
    String[] families = {"STATUS_", "BACKEND_", "ROUTING_", "ACTIVATION_", "DTYPE_", "SCALING_",
        "LAYOUT_", "WEIGHTS_", "PLAN_"};
    for (Map.Entry<String, Integer> d : defs.entrySet()) {
      String name = d.getKey();
      if (name.endsWith("_VERSION")) {
        continue;
      }
      for (String fam : families) {
        if (name.startsWith(fam)) {
          Field f;
          try {
            f = Moe.class.getField(name);
          } catch (NoSuchFieldException e) {
            fail("MOE_" + name + " (= " + d.getValue() + ") is not exported by io.moetrtllm.Moe");
            return;
          }
          assertEquals((int) d.getValue(), f.getInt(null), "MOE_" + name);
        }
      }
      if (name.startsWith("STATUS_")) {
        statuses++;
        assertEquals(name.substring("STATUS_".length()), Moe.statusName(d.getValue()));
      }
    }
    assertTrue(statuses >= 10, "header has " + statuses + " statuses");
    assertEquals("UNKNOWN", Moe.statusName(12345));
    assertEquals(1, Moe.DEVICE_CPU);
    assertEquals(2, Moe.DEVICE_CUDA);
  }
}
