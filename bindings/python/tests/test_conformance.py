"""The shared conformance cases (tests/conformance/cases.txt) on the CPU backend, and on the
CUDA backend through torch when a GPU is present."""

import os

import numpy as np
import pytest

import moe_trtllm as moe
import conformance_lib as cl

CASES = cl.parse_cases()
IDS = [c["name"] for c in CASES]


def _gpu_reason():
    if moe.cuda_device_count() == 0:
        return "no CUDA device (moe_cuda_device_count() == 0)"
    try:
        import torch
    except ImportError:
        return "torch is not installed (the GPU tensor path of the Python binding)"
    if not torch.cuda.is_available():
        return "torch has no CUDA"
    return None


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_cpu(case):
    if case["status"] != "ok":
        err = cl.run_error_case(case)
        assert err is not None, f"{case['name']}: expected {case['status']}, the case ran"
        assert err.status_name == case["status"], f"{case['name']}: got {err}"
        assert err.message, "the error has no message"
        return
    t, out, checks = cl.run_any(case)
    assert not checks, f"{case['name']}: {checks}"
    if t is not None:
        assert cl.plan_digest(t) == case["plan"], f"{case['name']}: plan digest"
    assert cl.fnv1a([out.astype(np.uint16)]) == case["output"], f"{case['name']}: output digest"


def _counts_invalid(case):
    """A grouped case whose counts are negative, past the capacity (masked) or sum past the
    rows (contiguous)."""
    n = case["counts"]
    if any(x < 0 for x in n):
        return True
    if case["layout"] == moe.LAYOUT_MASKED:
        return any(x > case["capacity"] for x in n)
    return sum(n) > case["T"]


def _cuda_skips_mxfp4(case):
    """An MXFP4 case the CUDA backend does not run (docs/conformance.md "MXFP4 cases"): W4A8, H or
    I not a multiple of 64 or above 8192, bf16 gemm biases (CPU backend only, as in BF16 runs).
    Every other W4A16 case must run there: its NOT_SUPPORTED is a failure."""
    if case.get("mxfp4", "none") == "none":
        return False
    return (case["mxfp4"] == "w4a8" or case["H"] % 64 != 0 or case["I"] % 64 != 0
            or case["H"] > 8192 or case["I"] > 8192
            or (case.get("gemm_bias", 0) != 0 and case.get("gemm_bias_dtype", "f32") == "bf16"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_gpu(case):
    reason = _gpu_reason()
    if reason:
        pytest.skip(reason)
    if case["status"] != "ok":
        if "layout" in case and _counts_invalid(case):
            # counts live in device memory there: the CUDA backend clamps them on the device
            # and reports MOE_GROUPED_COUNTS_* in count_status (tests/test_grouped.c checks it)
            pytest.skip("CUDA backend: grouped counts are checked on the device (count_status)")
        err = cl.run_error_case(case, moe.BACKEND_CUDA)
        if (_cuda_skips_mxfp4(case) and case["status"] != "NOT_SUPPORTED"
                and isinstance(err, moe.NotSupportedError)):
            # an MXFP4 case the CUDA backend does not run: it answers NOT_SUPPORTED first
            pytest.skip(f"CUDA backend: MXFP4 {case['mxfp4']} not supported: {err}")
        assert err is not None and err.status_name == case["status"] and err.message
        return
    tc, outc, _ = cl.run_any(case)
    try:
        tg, outg, checks = cl.run_any(case, moe.BACKEND_CUDA)
    except moe.NotSupportedError as e:
        if _cuda_skips_mxfp4(case):
            # W4A8, a shape outside the CUDA rule or bf16 biases: the CPU digests stand
            pytest.skip(f"CUDA backend: MXFP4 {case['mxfp4']} not supported: {e}")
        if case.get("mxfp4", "none") != "none":
            raise  # W4A16 inside the CUDA shape rule runs on CUDA
        if case.get("fp8", "none") == "none" or "layout" in case:
            raise  # BF16 and grouped runs (BF16 and FP8) run on CUDA: NOT_SUPPORTED fails
        # a routed FP8 run the CUDA backend does not run (the message says why): the CPU
        # digests stand
        pytest.skip(f"CUDA backend: FP8 {case['fp8']} not supported: {e}")
    assert not checks, f"{case['name']}: GPU: {checks}"
    if tg is not None:
        assert cl.plan_digest(tg) == case["plan"], f"{case['name']}: GPU plan digest"
    else:  # grouped: the valid rows (the sentinel rows are NaN and were checked exactly)
        rows = cl.grouped_rows(case)
        outc, outg = outc[rows], outg[rows]
    c = moe.bf16_bits_to_float(outc).astype(np.float64)
    g = moe.bf16_bits_to_float(outg).astype(np.float64)
    assert np.all(np.isfinite(g))
    denom = np.linalg.norm(c)
    rel = np.linalg.norm(g - c) / denom if denom > 0 else np.linalg.norm(g)
    assert rel <= 1e-2, f"{case['name']}: ||gpu-cpu||/||cpu|| = {rel}"


def test_cases_file_is_not_empty():
    assert CASES, f"no cases in {cl.cases_path()}"
