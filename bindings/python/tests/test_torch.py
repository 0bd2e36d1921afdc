"""moe_trtllm.torch: the PyTorch custom ops (eager, opcheck, torch.compile, CUDA graphs) on the
CPU backend, and on the CUDA backend when a GPU is present (the same tests, device "cuda").

torch is optional for the package; where it is meant to be installed (scripts/test.sh sets
MOE_REQUIRE_TORCH=1) a missing torch fails these tests instead of skipping them."""

import os

import numpy as np
import pytest

import moe_trtllm as moe
import conformance_lib as cl

if os.environ.get("MOE_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is not installed")
import moe_trtllm.torch as mt  # noqa: E402  (registers the ops)

# H and I multiples of 64: shapes the CUDA kernels run (MOE_SM90_H_ALIGN / I_ALIGN)
E, K, H, I = 8, 2, 128, 64
COMPILE_BACKEND = os.environ.get("MOE_TORCH_COMPILE_BACKEND", "inductor")


def _cuda_reason():
    if moe.cuda_device_count() == 0:
        return "no CUDA device (moe_cuda_device_count() == 0)"
    if not torch.cuda.is_available():
        return "torch has no CUDA"
    return None


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    _cuda_reason() is not None, reason=str(_cuda_reason())))]


def _t(a, device):
    """numpy -> torch on `device` (uint16 bf16 bit patterns -> torch.bfloat16)."""
    if a.dtype == np.uint16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(
            torch.bfloat16).to(device)
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def _bits(t):
    """torch.bfloat16 -> numpy uint16 bit patterns (host)."""
    return t.detach().to("cpu").contiguous().view(torch.int16).numpy().view(np.uint16)


class Case:
    """Seeded inputs (the conformance generator) as numpy and as torch tensors."""

    def __init__(self, device, T=5, seed=11):
        self.T = T
        self.w1 = cl.gen_bf16(seed, 4, (E, 2 * I, H), 8)
        self.w2 = cl.gen_bf16(seed, 5, (E, H, I), 8)
        self.x = cl.gen_bf16(seed, 3, (T, H), 6)
        self.logits = cl.gen_f32(seed, 1, (T, E), 21)
        self.tw1, self.tw2 = _t(self.w1, device), _t(self.w2, device)
        self.tx, self.tlogits = _t(self.x, device), _t(self.logits, device)

    def reference(self, logits=None, x=None):
        """The numpy path on the CPU backend: bf16 bit patterns [T, H]."""
        x = self.x if x is None else x
        logits = self.logits if logits is None else logits
        p = moe.Problem(num_experts=E, num_tokens=x.shape[0], top_k=K, hidden_size=H,
                        intermediate_size=I)
        with moe.Runner(backend=moe.BACKEND_CPU) as r:
            w1 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM1, self.w1)
            w2 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM2, self.w2)
            out = r.forward(p, moe.bf16(x), w1, w2, logits=logits)
        return out.view(np.uint16)


def _check(got_bits, ref_bits, device):
    if device == "cpu":  # the same backend: bit for bit
        assert np.array_equal(got_bits, ref_bits)
        return
    g = moe.bf16_bits_to_float(got_bits).astype(np.float64)
    c = moe.bf16_bits_to_float(ref_bits).astype(np.float64)
    assert np.isfinite(g).all()
    rel = np.linalg.norm(g - c) / max(np.linalg.norm(c), 1e-30)
    assert rel <= 1e-2, f"||gpu-cpu||/||cpu|| = {rel}"


@pytest.fixture
def layer_case(request):
    device = request.param
    c = Case(device)
    layer = mt.MoE(c.tw1, c.tw2, top_k=K)
    yield layer, c, device
    layer.close()


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("layer_case", DEVICES, indirect=True)
def test_forward_op_matches_numpy_path(layer_case):
    layer, c, device = layer_case
    y = layer(c.tx, c.tlogits)
    _sync(device)
    assert y.dtype == torch.bfloat16 and tuple(y.shape) == (c.T, H)
    assert y.device.type == device
    _check(_bits(y), c.reference(), device)
    # bf16 logits are accepted too
    lb = c.tlogits.to(torch.bfloat16)
    yb = layer(c.tx, lb)
    _sync(device)
    ref = c.reference(logits=moe.bf16(_bits(lb)))
    _check(_bits(yb), ref, device)


@pytest.mark.parametrize("layer_case", DEVICES, indirect=True)
def test_routing_op_then_prerouted_forward(layer_case):
    layer, c, device = layer_case
    ids, w = layer.route(c.tlogits)
    _sync(device)
    assert ids.dtype == torch.int32 and w.dtype == torch.bfloat16
    assert tuple(ids.shape) == (c.T, K) and tuple(w.shape) == (c.T, K)
    p = moe.Problem(num_experts=E, num_tokens=c.T, top_k=K, hidden_size=H, intermediate_size=I)
    with moe.Runner(backend=moe.BACKEND_CPU) as r:  # the plan's tables, read the slow way
        cfg = r.default_config(p)
        plan = r.prepare_routing(p, cfg, r.allocate_workspace(p, cfg), logits=c.logits)
        ref_ids = plan.read(moe.PLAN_TOPK_IDS)
        ref_w = plan.read(moe.PLAN_EXPERT_WEIGHTS)
    assert np.array_equal(ids.cpu().numpy().reshape(-1), ref_ids)  # bit-exact on every backend
    assert np.array_equal(_bits(w).reshape(-1), ref_w.view(np.uint16))
    y_routed = layer(c.tx, topk_ids=ids, topk_weights=w)
    y_logits = layer(c.tx, c.tlogits)
    _sync(device)
    assert np.array_equal(_bits(y_routed), _bits(y_logits))


@pytest.mark.parametrize("layer_case", DEVICES, indirect=True)
def test_opcheck(layer_case):
    """Schema, fake (meta) implementation and AOT dispatch agree with the real kernels."""
    layer, c, device = layer_case
    fwd_args = (c.tx, layer.gemm1_weights, layer.gemm2_weights, c.tlogits, None, None, None,
                layer.runner_id, E, K, I)
    torch.library.opcheck(torch.ops.moe_trtllm.forward.default, fwd_args)
    route_args = (c.tlogits, None, layer.runner_id, K, H, I)
    torch.library.opcheck(torch.ops.moe_trtllm.routing.default, route_args)


@pytest.mark.parametrize("layer_case", DEVICES, indirect=True)
def test_torch_compile_fullgraph(layer_case):
    layer, c, device = layer_case
    torch._dynamo.reset()

    def step(x, logits):
        ids, w = layer.route(logits)
        return layer(x, logits) + layer(x, topk_ids=ids, topk_weights=w)

    compiled = torch.compile(step, fullgraph=True, backend=COMPILE_BACKEND)
    for T in (c.T, 3):  # a second token count: a recompile or a dynamic-shape graph
        x, logits = c.tx[:T].contiguous(), c.tlogits[:T].contiguous()
        got = compiled(x, logits)
        want = step(x, logits)
        _sync(device)
        assert got.dtype == torch.bfloat16 and tuple(got.shape) == (T, H)
        assert np.array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("layer_case", DEVICES, indirect=True)
def test_cuda_graph_capture(layer_case):
    layer, c, device = layer_case
    if device != "cuda":
        pytest.skip("CUDA graphs need the CUDA backend (runs in the cuda variant)")
    x, logits = c.tx.clone(), c.tlogits.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up outside the capture, as torch recommends
        for _ in range(2):
            layer(x, logits)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        ids, w = layer.route(logits)
        y = layer(x, logits)
        y2 = layer(x, topk_ids=ids, topk_weights=w)
    other = Case(device, seed=99)
    x.copy_(other.tx)
    logits.copy_(other.tlogits)
    g.replay()
    torch.cuda.synchronize()
    eager = layer(other.tx, other.tlogits)
    torch.cuda.synchronize()
    assert np.array_equal(_bits(y), _bits(eager))
    assert np.array_equal(_bits(y2), _bits(eager))
    # the layer's weights (c's) on the replayed inputs (other's)
    _check(_bits(y), c.reference(logits=other.logits, x=other.x), device)


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_are_not_copied(device):
    """Torch tensors reach the library as their own memory (data_ptr), outputs included."""
    c = Case(device)
    d = moe._dl_arg(c.tx)
    assert isinstance(d, tuple) and d[0] == c.tx.data_ptr() and d[-1] is c.tx
    assert d[1] == (moe.DL_CUDA if device == "cuda" else moe.DL_CPU)
    assert (d[3], d[4]) == (moe.DL_BFLOAT, 16) and d[5] == (c.T, H)
    p = moe.Problem(num_experts=E, num_tokens=c.T, top_k=K, hidden_size=H, intermediate_size=I)
    backend = moe.BACKEND_CUDA if device == "cuda" else moe.BACKEND_CPU
    with moe.Runner(backend=backend) as r:
        w1 = torch.empty(r.weights_prepared_size(p, moe.WEIGHTS_GEMM1), dtype=torch.uint8,
                         device=device)
        w2 = torch.empty(r.weights_prepared_size(p, moe.WEIGHTS_GEMM2), dtype=torch.uint8,
                         device=device)
        stream = torch.cuda.current_stream() if device == "cuda" else None
        r.prepare_weights(p, moe.WEIGHTS_GEMM1, c.tw1, w1, stream=stream)
        r.prepare_weights(p, moe.WEIGHTS_GEMM2, c.tw2, w2, stream=stream)
        out = torch.full((c.T, H), float("nan"), dtype=torch.bfloat16, device=device)
        ptr = out.data_ptr()
        ret = r.forward(p, c.tx, w1, w2, logits=c.tlogits, output=out, stream=stream)
        _sync(device)
        assert ret is out and out.data_ptr() == ptr
        _check(_bits(out), c.reference(), device)


@pytest.mark.parametrize("device", DEVICES)
def test_run_grouped_takes_torch_tensors(device):
    """Runner.run_grouped with torch tensors (hidden states, int32 counts, prepared weights; the
    workspace and output allocated by torch on their device) equals the numpy call on the CPU
    backend."""
    el, n = 4, 12
    p = moe.Problem(num_experts=E, num_tokens=n, top_k=1, hidden_size=H, intermediate_size=I,
                    local_expert_offset=4, local_num_experts=el)
    x = cl.gen_bf16(11, 3, (n, H), 6)
    w1, w2 = cl.gen_bf16(11, 4, (el, 2 * I, H), 8), cl.gen_bf16(11, 5, (el, H, I), 8)
    counts = np.array([3, 0, 5, 2], dtype=np.int32)
    with moe.Runner(backend=moe.BACKEND_CPU) as r:
        ref = r.run_grouped(p, r.default_config(p), layout=moe.LAYOUT_CONTIGUOUS,
                            hidden_states=moe.bf16(x), expert_counts=counts,
                            gemm1_weights=r.prepare_weights_host(p, moe.WEIGHTS_GEMM1, w1),
                            gemm2_weights=r.prepare_weights_host(p, moe.WEIGHTS_GEMM2, w2))
    backend = moe.BACKEND_CUDA if device == "cuda" else moe.BACKEND_CPU
    with moe.Runner(backend=backend) as r:
        stream = torch.cuda.current_stream() if device == "cuda" else None
        pw = []
        for which, w in ((moe.WEIGHTS_GEMM1, w1), (moe.WEIGHTS_GEMM2, w2)):
            pw.append(torch.empty(r.weights_prepared_size(p, which), dtype=torch.uint8,
                                  device=device))
            r.prepare_weights(p, which, _t(w, device), pw[-1], stream=stream)
        out = r.run_grouped(p, r.default_config(p), layout=moe.LAYOUT_CONTIGUOUS,
                            hidden_states=_t(x, device), expert_counts=_t(counts, device),
                            gemm1_weights=pw[0], gemm2_weights=pw[1], stream=stream)
        _sync(device)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    assert out.device.type == device and tuple(out.shape) == (n, H)
    got = _bits(out)
    assert np.all(got[10:] == 0)  # rows past the counts: untouched (allocated zeroed)
    _check(got[:10], ref.view(np.uint16)[:10], device)


def test_errors_name_dtypes_and_closed_layer():
    c = Case("cpu")
    layer = mt.MoE(c.tw1, c.tw2, top_k=K)
    with pytest.raises(moe.InvalidArgumentError) as ei:
        layer(c.tx.float(), c.tlogits)
    assert "float32" in ei.value.message and "code" not in ei.value.message
    with pytest.raises(moe.InvalidArgumentError) as ei:  # non-contiguous input: rejected
        layer(c.tx.t().contiguous().t(), c.tlogits)
    assert "strides" in ei.value.message
    layer.close()
    layer.close()
    with pytest.raises(moe.RunnerClosedError):
        layer(c.tx, c.tlogits)
    with pytest.raises(TypeError):
        moe._dl_arg(torch.zeros(2, dtype=torch.complex64))


@pytest.mark.skipif(not hasattr(torch, "float4_e2m1fn_x2") or not hasattr(torch, "float8_e8m0fnu"),
                    reason="this torch has no float4_e2m1fn_x2 / float8_e8m0fnu")
@pytest.mark.parametrize("which", ["GEMM1", "GEMM1_GATE_UP_INTERLEAVED", "GEMM2"])
def test_mxfp4_prepare_torch_dtypes_match_uint8(which):
    """MXFP4 weights as torch.float4_e2m1fn_x2 (DLPack float4_e2m1fn x 2 lanes) with
    torch.float8_e8m0fnu scales prepare to the same bytes as the uint8 forms; W4A8 runner."""
    H2, I2, el = 64, 32, 2
    p = moe.Problem(num_experts=el, num_tokens=3, top_k=1, hidden_size=H2, intermediate_size=I2)
    R, C = (H2, I2) if which == "GEMM2" else (2 * I2, H2)
    q = cl.gen_bytes(5, 4, (el, R, C // 2))
    s = cl.gen_ue8m0(5, 12, (el, R, C // 32))
    w = getattr(moe, "WEIGHTS_" + which)
    with moe.Runner(backend=moe.BACKEND_CPU, activation_dtype=moe.DTYPE_FP8_E4M3,
                    weight_dtype=moe.DTYPE_MXFP4, scaling_mode=moe.SCALING_MX) as r:
        assert r.dtype is None and r.weight_dtype == moe.DTYPE_MXFP4
        n = r.weights_prepared_size(p, w)
        a = np.zeros(n, dtype=np.uint8)
        b = torch.zeros(n, dtype=torch.uint8)
        r.prepare_weights_scaled(p, w, q, s, a)
        r.prepare_weights_scaled(p, w, torch.from_numpy(q).view(torch.float4_e2m1fn_x2),
                                 torch.from_numpy(s).view(torch.float8_e8m0fnu), b)
        assert np.array_equal(a, b.numpy())
        with pytest.raises(moe.InvalidArgumentError):  # the scales are required
            r.prepare_weights_scaled(p, w, q, None, a)
