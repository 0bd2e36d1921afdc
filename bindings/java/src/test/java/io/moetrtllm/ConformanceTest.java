package io.moetrtllm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** The shared conformance cases through the Java binding. */
class ConformanceTest {
  @TestFactory
  List<DynamicTest> cpuCases() throws Exception {
    List<DynamicTest> tests = new ArrayList<>();
    for (Conformance.Case c : Conformance.parse(Conformance.casesPath())) {
      tests.add(DynamicTest.dynamicTest("cpu:" + c.name(), () -> {
        if (!c.status().equals("ok")) {
          MoeException e = assertThrows(MoeException.class, () -> Conformance.run(c),
              c.name() + ": expected " + c.status());
          assertEquals(c.status(), e.statusName(), c.name() + ": " + e.getMessage());
          assertFalse(e.libraryMessage().isEmpty(), "the error has no message");
          return;
        }
        Conformance.Result r = Conformance.run(c);
        assertTrue(r.checks.isEmpty(), c.name() + ": " + r.checks);
        if (!c.grouped()) {
          assertEquals(c.f.get("plan"), r.planDigest, c.name() + ": plan digest");
        }
        assertEquals(c.f.get("output"), r.outputDigest, c.name() + ": output digest");
      }));
    }
    assertFalse(tests.isEmpty(), "no cases in " + Conformance.casesPath());
    return tests;
  }

  /**
   * Every case again on the CUDA backend with device memory (CudaRuntime): the plan digest
   * exactly, the output within ||gpu - cpu|| / ||cpu|| <= 1e-2 of the CPU output, every value
   * finite. Skips with a printed reason without a device or a CUDA runtime, unless
   * -Dmoetrtllm.requireGpu=true (the GPU run), where that is a failure.
   */
  @TestFactory
  List<DynamicTest> gpuCases() throws Exception {
    String reason = null;
    if (Moe.cudaDeviceCount() == 0) {
      reason = "no CUDA device (moe_cuda_device_count() == 0)";
    } else {
      try {
        CudaRuntime.load();
      } catch (MoeException e) {
        reason = "no CUDA runtime to allocate device memory: " + e.libraryMessage();
      }
    }
    if (reason != null) {
      if (Boolean.getBoolean("moetrtllm.requireGpu")) {
        throw new AssertionError("moetrtllm.requireGpu is set, but " + reason);
      }
      System.out.println("SKIP gpuCases: " + reason);
      Assumptions.assumeTrue(false, reason);
    }
    List<DynamicTest> tests = new ArrayList<>();
    for (Conformance.Case c : Conformance.parse(Conformance.casesPath())) {
      tests.add(DynamicTest.dynamicTest("gpu:" + c.name(), () -> {
        if (!c.status().equals("ok")) {
          if (c.grouped() && countsInvalid(c)) {
            // counts live in device memory there: the CUDA backend clamps them on the device
            // and reports MOE_GROUPED_COUNTS_* in count_status (tests/test_grouped.c checks it)
            skipGpu(c, "grouped counts are checked on the device (count_status)");
            return;
          }
          MoeException e = assertThrows(MoeException.class, () -> Conformance.run(c, true),
              c.name() + ": expected " + c.status());
          if (cudaSkipsMxfp4(c) && !c.status().equals("NOT_SUPPORTED")
              && e.status() == Moe.STATUS_NOT_SUPPORTED) {
            // an MXFP4 case the CUDA backend does not run: it answers NOT_SUPPORTED first
            skipGpu(c, "MXFP4 " + c.mxfp4() + " not supported: " + e.libraryMessage());
            return;
          }
          assertEquals(c.status(), e.statusName(), c.name() + ": " + e.getMessage());
          assertFalse(e.libraryMessage().isEmpty(), "the error has no message");
          return;
        }
        Conformance.Result cpu = Conformance.run(c, false);
        Conformance.Result gpu;
        try {
          gpu = Conformance.run(c, true);
        } catch (MoeException e) {
          boolean mx = !c.mxfp4().equals("none");
          boolean routedFp8 = !c.fp8().equals("none") && !c.grouped();
          if (e.status() != Moe.STATUS_NOT_SUPPORTED || !(mx ? cudaSkipsMxfp4(c) : routedFp8)) {
            throw e; // BF16, grouped (BF16 and FP8) and MXFP4 W4A16 inside its rule run on CUDA
          }
          // a routed FP8 run, or MXFP4 W4A8 (or outside the CUDA rule), the CUDA backend does
          // not run (the message says why): the CPU digests stand
          skipGpu(c, (mx ? "MXFP4 " + c.mxfp4() : "FP8 " + c.fp8()) + " not supported: "
              + e.libraryMessage());
          return;
        }
        assertTrue(gpu.checks.isEmpty(), c.name() + ": GPU: " + gpu.checks);
        if (!c.grouped()) {
          assertEquals(c.f.get("plan"), gpu.planDigest, c.name() + ": GPU plan digest");
        }
        assertEquals(cpu.output.length, gpu.output.length, c.name() + ": output size");
        double num = 0;
        double den = 0;
        for (int i = 0; i < cpu.output.length; i++) {
          float y = gpu.output[i];
          assertTrue(Float.isFinite(y), c.name() + ": GPU output not finite at " + i);
          double d = (double) y - cpu.output[i];
          num += d * d;
          den += (double) cpu.output[i] * cpu.output[i];
        }
        double rel = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
        assertTrue(rel <= 1e-2, c.name() + ": ||gpu-cpu||/||cpu|| = " + rel + " > 1e-2");
      }));
    }
    assertFalse(tests.isEmpty(), "no cases in " + Conformance.casesPath());
    return tests;
  }

  /**
   * A grouped case whose counts are negative, past the capacity (masked) or sum past the rows
   * (contiguous).
   */
  private static boolean countsInvalid(Conformance.Case c) {
    int[] n = c.counts();
    long sum = 0;
    for (int x : n) {
      if (x < 0 || (c.layout() == Moe.LAYOUT_MASKED && x > c.num("capacity", 0))) {
        return true;
      }
      sum += x;
    }
    return c.layout() != Moe.LAYOUT_MASKED && sum > c.num("T", 0);
  }

  /**
   * An MXFP4 case the CUDA backend does not run (docs/conformance.md "MXFP4 cases"): W4A8, H or I
   * not a multiple of 64 or above 8192, bf16 gemm biases (CPU backend only, as in BF16 runs).
   * Every other W4A16 case must run there: its NOT_SUPPORTED is a failure.
   */
  private static boolean cudaSkipsMxfp4(Conformance.Case c) {
    if (c.mxfp4().equals("none")) {
      return false;
    }
    long h = c.num("H", 0);
    long i = c.num("I", 0);
    return c.mxfp4().equals("w4a8") || h % 64 != 0 || i % 64 != 0 || h > 8192 || i > 8192
        || (c.num("gemm_bias", 0) != 0 && c.str("gemm_bias_dtype", "f32").equals("bf16"));
  }

  /** Reports a case the CUDA backend does not run (printed, then a JUnit skip). */
  private static void skipGpu(Conformance.Case c, String why) {
    System.out.println("SKIP gpu:" + c.name() + ": CUDA backend: " + why);
    Assumptions.abort("CUDA backend: " + why);
  }
}
