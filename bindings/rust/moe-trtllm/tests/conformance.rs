//! The shared conformance cases through the Rust binding: CPU backend, and the CUDA backend
//! through raw device pointers (cudart loaded with dlopen) when a GPU is present.
mod common;

use common::*;
use moe_trtllm::{Layout, Status};

#[test]
fn conformance_cpu() {
    let cases = parse_cases();
    assert!(!cases.is_empty(), "no cases in {}", cases_path().display());
    let mut failures = Vec::new();
    for c in &cases {
        let res = run_case(c);
        let verdict = if c.status() != "ok" {
            match res {
                Err(e) if e.status_name() == c.status() && !e.message().is_empty() => Ok(()),
                Err(e) => Err(format!("expected {}, got {e}", c.status())),
                Ok(_) => Err(format!("expected {}, the case ran", c.status())),
            }
        } else {
            match res {
                Err(e) => Err(format!("failed: {e}")),
                Ok(o) if !o.checks.is_empty() => Err(o.checks.join("; ")),
                Ok(o) if o.plan_digest != c.s("plan", "") => Err(format!(
                    "plan digest {} != expected {}",
                    o.plan_digest,
                    c.s("plan", "")
                )),
                Ok(o) if o.output_digest != c.s("output", "") => Err(format!(
                    "output digest {} != expected {}",
                    o.output_digest,
                    c.s("output", "")
                )),
                Ok(_) => Ok(()),
            }
        };
        match verdict {
            Ok(()) => println!("PASS cpu:{}", c.name()),
            Err(m) => {
                println!("FAIL cpu:{} (line {}): {m}", c.name(), c.line);
                failures.push(format!("{}: {m}", c.name()));
            }
        }
    }
    println!(
        "conformance (rust, cpu): {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A grouped case whose counts are negative, past the capacity (masked) or sum past the rows
/// (contiguous).
fn counts_invalid(c: &Case) -> bool {
    let n = c.counts();
    if n.iter().any(|&x| x < 0) {
        return true;
    }
    if c.layout() == Layout::Masked {
        n.iter().any(|&x| i64::from(x) > c.n("capacity", 0))
    } else {
        n.iter().map(|&x| i64::from(x)).sum::<i64>() > c.n("T", 0)
    }
}

/// An MXFP4 case the CUDA backend does not run (docs/conformance.md "MXFP4 cases"): W4A8, H or I
/// not a multiple of 64 or above 8192, bf16 gemm biases (CPU backend only, as in BF16 runs).
/// Every other W4A16 case must run there: its NOT_SUPPORTED is a failure.
fn cuda_skips_mxfp4(c: &Case) -> bool {
    let mx = c.mxfp4();
    if mx == "none" {
        return false;
    }
    let (h, i) = (c.n("H", 0), c.n("I", 0));
    mx == "w4a8"
        || h % 64 != 0
        || i % 64 != 0
        || h > 8192
        || i > 8192
        || (c.n("gemm_bias", 0) != 0 && c.s("gemm_bias_dtype", "f32") == "bf16")
}

#[test]
fn conformance_gpu() {
    let n = moe_trtllm::cuda_device_count().unwrap_or(0);
    if n == 0 {
        println!("SKIP conformance_gpu: no CUDA device (moe_cuda_device_count() == 0)");
        return;
    }
    let cuda = match Cuda::load() {
        Ok(c) => c,
        Err(e) => {
            println!("SKIP conformance_gpu: {e}");
            return;
        }
    };
    let cases = parse_cases();
    let mut failures = Vec::new();
    let mut skipped = 0;
    for c in &cases {
        let verdict = if c.status() != "ok" {
            if c.grouped() && counts_invalid(c) {
                // counts live in device memory there: the CUDA backend clamps them on the device
                // and reports MOE_GROUPED_COUNTS_* in count_status (tests/test_grouped.c checks it)
                println!(
                    "SKIP gpu:{}: CUDA backend: grouped counts are checked on the device \
                     (count_status)",
                    c.name()
                );
                skipped += 1;
                continue;
            }
            match run_case_on(c, Some(&cuda)) {
                // an MXFP4 case the CUDA backend does not run: it answers NOT_SUPPORTED first
                Err(e)
                    if cuda_skips_mxfp4(c)
                        && c.status() != "NOT_SUPPORTED"
                        && e.status() == Some(Status::NotSupported) =>
                {
                    println!(
                        "SKIP gpu:{}: CUDA backend: MXFP4 {} not supported: {e}",
                        c.name(),
                        c.mxfp4()
                    );
                    skipped += 1;
                    continue;
                }
                Err(e) if e.status_name() == c.status() && !e.message().is_empty() => Ok(()),
                Err(e) => Err(format!("expected {}, got {e}", c.status())),
                Ok(_) => Err(format!("expected {}, the case ran", c.status())),
            }
        } else {
            match (run_case(c), run_case_on(c, Some(&cuda))) {
                (Err(e), _) => Err(format!("cpu failed: {e}")),
                // a routed FP8 run, or MXFP4 the CUDA backend does not run (W4A8, a shape
                // outside its rule, bf16 biases), answers NOT_SUPPORTED (the message says why):
                // the CPU digests stand, the GPU skips; BF16, grouped (BF16 and FP8) and any
                // other MXFP4 W4A16 case run on CUDA
                (_, Err(e))
                    if ((c.fp8() != "none" && !c.grouped()) || cuda_skips_mxfp4(c))
                        && e.status() == Some(Status::NotSupported) =>
                {
                    let what = if c.fp8() != "none" {
                        format!("FP8 {}", c.fp8())
                    } else {
                        format!("MXFP4 {}", c.mxfp4())
                    };
                    println!(
                        "SKIP gpu:{}: CUDA backend: {what} not supported: {e}",
                        c.name()
                    );
                    skipped += 1;
                    continue;
                }
                (_, Err(e)) => Err(format!("gpu failed: {e}")),
                (Ok(cpu), Ok(gpu)) => {
                    let f = |b: u16| f32::from_bits((b as u32) << 16) as f64;
                    let (mut num, mut den, mut finite) = (0.0f64, 0.0f64, true);
                    for (&a, &b) in cpu.output.iter().zip(&gpu.output) {
                        let (x, y) = (f(a), f(b));
                        finite &= y.is_finite();
                        num += (y - x) * (y - x);
                        den += x * x;
                    }
                    let rel = if den > 0.0 {
                        (num / den).sqrt()
                    } else {
                        num.sqrt()
                    };
                    if !gpu.checks.is_empty() {
                        Err(format!("GPU: {}", gpu.checks.join("; ")))
                    } else if gpu.plan_digest != c.s("plan", "") {
                        Err(format!(
                            "GPU plan digest {} != {}",
                            gpu.plan_digest,
                            c.s("plan", "")
                        ))
                    } else if gpu.output.len() != cpu.output.len() || !finite || rel > 1e-2 {
                        Err(format!("GPU output: rel err {rel:e}, finite {finite}"))
                    } else {
                        Ok(())
                    }
                }
            }
        };
        match verdict {
            Ok(()) => println!("PASS gpu:{}", c.name()),
            Err(m) => {
                println!("FAIL gpu:{}: {m}", c.name());
                failures.push(format!("{}: {m}", c.name()));
            }
        }
    }
    println!(
        "conformance (rust, gpu): {} passed, {} failed, {skipped} skipped",
        cases.len() - failures.len() - skipped,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} GPU case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
