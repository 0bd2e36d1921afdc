"""API and error-path tests of the Python binding (CPU backend)."""

import threading

import numpy as np
import pytest

import moe_trtllm as moe
import conformance_lib as cl

P = moe.Problem(num_experts=8, num_tokens=5, top_k=2, hidden_size=64, intermediate_size=32)


def _setup(r, p=P, seed=7):
    return cl.prepared_inputs(r, p, seed)


@pytest.fixture
def runner():
    with moe.Runner(backend=moe.BACKEND_CPU) as r:
        yield r


def test_version_and_status_strings():
    assert moe.__version__.startswith("0.")
    assert moe.status_string(moe.STATUS_SUCCESS)
    assert moe.status_string(moe.STATUS_INVALID_ARGUMENT)
    assert moe.cuda_device_count() >= 0


def test_constants_match_header():
    """Every value macro of the public header's families is exported with its value (the
    SWIG constants come from the header, so a missing one means moe_constants.i lacks it)."""
    import os
    import re
    header = os.path.join(os.path.dirname(__file__), "..", "..", "..", "include", "moe_trtllm.h")
    text = open(header).read().replace("\\\n", " ")
    fams = ("STATUS_", "BACKEND_", "ROUTING_", "ACTIVATION_", "DTYPE_", "SCALING_", "LAYOUT_",
            "WEIGHTS_", "PLAN_")
    n = 0
    for name, val in re.findall(r"(?m)^#define\s+MOE_([A-Z0-9_]+)\s+\(?(-?\d+)\)?", text):
        if name.startswith(fams) and not name.endswith("_VERSION"):
            n += 1
            assert getattr(moe, name, None) == int(val), f"MOE_{name} = {val}"
    assert n > 40


def test_mxfp4_constants_and_pack():
    assert moe.DTYPE_MXFP4 != moe.DTYPE_FP8_E4M3 and moe.SCALING_MX != moe.SCALING_BLOCK
    assert moe.WEIGHTS_GEMM1_GATE_UP_INTERLEAVED not in (moe.WEIGHTS_GEMM1, moe.WEIGHTS_GEMM2)
    codes = np.array([[1, 2, 15, 0]], dtype=np.uint8)
    assert moe.pack_e2m1(codes).tolist() == [[0x21, 0x0F]]
    if moe.float4_e2m1fn is not None:
        v = np.array([[0.5, 1.0, -6.0, 0.0]], dtype=moe.float4_e2m1fn)
        assert moe.pack_e2m1(v).tolist() == [[0x21, 0x0F]]


def test_queries(runner):
    assert runner.backend == moe.BACKEND_CPU
    assert runner.num_configs > 0
    cfgs = runner.valid_configs(P)
    assert cfgs and cfgs[0] == runner.default_config(P)
    for c in cfgs:
        info = runner.describe_config(c)
        assert info.index == c and info.name
        assert info.cluster_size == runner.cluster_size(c)
        assert info.tile == info.cta_tile * info.cluster_size
        assert runner.workspace_size(P, c) > 0
    assert runner.weights_prepared_size(P, moe.WEIGHTS_GEMM1) == 8 * 64 * 64 * 2
    assert runner.weights_prepared_size(P, moe.WEIGHTS_GEMM2) == 8 * 64 * 32 * 2


def test_prepare_run_matches_forward(runner):
    x, w1, w2 = _setup(runner)
    cfg = runner.default_config(P)
    ws = runner.allocate_workspace(P, cfg)
    plan = runner.prepare_routing(P, cfg, ws, logits=x.logits)
    assert plan.config == cfg and plan.num_tokens == P.num_tokens
    ids = plan.read(moe.PLAN_TOPK_IDS)
    assert ids.shape == (P.num_tokens * P.top_k,)
    assert ((ids >= 0) & (ids < P.num_experts)).all()
    assert plan.read(moe.PLAN_EXPERT_WEIGHTS).dtype == moe.bfloat16
    assert plan.read_count(moe.PLAN_NUM_CTAS) == 1
    out = np.zeros((P.num_tokens, P.hidden_size), np.uint16)
    runner.run(P, cfg, plan, ws, hidden_states=moe.bf16(x.hidden), gemm1_weights=w1,
               gemm2_weights=w2, output=moe.bf16(out))
    out2 = runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits)
    assert out2.dtype == moe.bfloat16 and out2.shape == out.shape
    assert np.array_equal(out, out2.view(np.uint16))
    f = moe.bf16_bits_to_float(out)
    assert np.isfinite(f).all() and np.abs(f).sum() > 0


def test_forward_releases_gil(runner):
    x, w1, w2 = _setup(runner)
    results = []

    def work():
        results.append(runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits))

    th = [threading.Thread(target=work) for _ in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert len(results) == 4 and all(np.array_equal(results[0], o) for o in results)


def test_bad_shape_raises_invalid_argument(runner):
    x, w1, w2 = _setup(runner)
    with pytest.raises(moe.InvalidArgumentError) as ei:
        runner.forward(P, moe.bf16(x.hidden[:, :32].copy()), w1, w2, logits=x.logits)
    assert ei.value.status == moe.STATUS_INVALID_ARGUMENT and ei.value.message
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, moe.MoeError)


def test_bad_dtype_raises(runner):
    x, w1, w2 = _setup(runner)
    with pytest.raises(moe.InvalidArgumentError) as ei:  # uint16 not viewed as bf16
        runner.forward(P, x.hidden, w1, w2, logits=x.logits)
    assert ei.value.message


def test_bad_enum_value(runner):
    x, w1, w2 = _setup(runner)
    with pytest.raises(moe.MoeError) as ei:
        runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits, method=42)
    assert ei.value.status == moe.STATUS_INVALID_ARGUMENT and ei.value.message
    with pytest.raises(moe.InvalidArgumentError) as ei:
        moe.Runner(backend=moe.BACKEND_CPU, activation=5)
    assert ei.value.message


def test_too_small_workspace(runner):
    x, w1, w2 = _setup(runner)
    cfg = runner.default_config(P)
    ws = moe._aligned_host_bytes(runner.workspace_size(P, cfg) - 256)
    with pytest.raises(moe.InsufficientWorkspaceError) as ei:
        runner.prepare_routing(P, cfg, ws, logits=x.logits)
    assert ei.value.status == moe.STATUS_INSUFFICIENT_WORKSPACE and ei.value.message


def test_wrong_config_for_plan(runner):
    cfgs = runner.valid_configs(P)
    if len(cfgs) < 2:
        pytest.skip("only one valid config")
    x, w1, w2 = _setup(runner)
    ws = moe._aligned_host_bytes(max(runner.workspace_size(P, c) for c in cfgs))
    plan = runner.prepare_routing(P, cfgs[0], ws, logits=x.logits)
    out = np.zeros((P.num_tokens, P.hidden_size), np.uint16)
    with pytest.raises(moe.InvalidConfigError) as ei:
        runner.run(P, cfgs[1], plan, ws, hidden_states=moe.bf16(x.hidden), gemm1_weights=w1,
                   gemm2_weights=w2, output=moe.bf16(out))
    assert ei.value.message


def test_use_after_close():
    r = moe.Runner(backend=moe.BACKEND_CPU)
    r.close()
    r.close()  # idempotent
    assert r.closed
    with pytest.raises(moe.InvalidArgumentError) as ei:
        r.valid_configs(P)
    assert isinstance(ei.value, moe.RunnerClosedError)
    assert "closed" in ei.value.message


def test_not_a_tensor(runner):
    with pytest.raises(TypeError):
        runner.prepare_routing(P, 0, b"not a tensor", logits=None)


def test_cuda_backend_without_device():
    if moe.cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(moe.MoeError) as ei:
        moe.Runner(backend=moe.BACKEND_CUDA)
    assert ei.value.status in (moe.STATUS_NO_DEVICE, moe.STATUS_NOT_SUPPORTED)
    assert ei.value.message


class _VersionedProducer:
    """Re-exports a numpy array through a DLPack 1.x 'dltensor_versioned' capsule (numpy 1.24
    only makes legacy ones), to exercise the versioned path of the tensor typemap."""

    def __init__(self, arr, strides=None):
        import ctypes as C

        class DLTensor(C.Structure):
            _fields_ = [("data", C.c_void_p), ("device_type", C.c_int32),
                        ("device_id", C.c_int32), ("ndim", C.c_int32), ("code", C.c_uint8),
                        ("bits", C.c_uint8), ("lanes", C.c_uint16),
                        ("shape", C.c_void_p), ("strides", C.c_void_p),
                        ("byte_offset", C.c_uint64)]

        class Versioned(C.Structure):
            _fields_ = [("major", C.c_uint32), ("minor", C.c_uint32),
                        ("manager_ctx", C.c_void_p), ("deleter", C.c_void_p),
                        ("flags", C.c_uint64), ("dl_tensor", DLTensor)]

        self._C = C
        self.arr = arr
        self.legacy = arr.__dlpack__()
        get = C.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = C.c_void_p, [C.py_object, C.c_char_p]
        src = DLTensor.from_address(get(self.legacy, b"dltensor"))
        self.m = Versioned(1, 0, None, None, 0, src)
        if strides is not None:
            self.strides = (C.c_int64 * len(strides))(*strides)
            self.m.dl_tensor.strides = C.addressof(self.strides)
        self.calls = []

    def __dlpack__(self, stream=None, max_version=None):
        self.calls.append(max_version)
        if max_version is None or max_version[0] < 1:
            return self.arr.__dlpack__()
        C = self._C
        new = C.pythonapi.PyCapsule_New
        new.restype, new.argtypes = C.py_object, [C.c_void_p, C.c_char_p, C.c_void_p]
        return new(C.addressof(self.m), b"dltensor_versioned", None)


def test_versioned_dlpack_capsule(runner):
    x, w1, w2 = _setup(runner)
    ref = runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits)
    prod = _VersionedProducer(x.logits)
    out = runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=prod)
    assert prod.calls and prod.calls[0] == (1, 1)
    assert np.array_equal(ref, out)


def test_legacy_producer_without_max_version(runner):
    class Legacy:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, stream=None):  # rejects max_version like numpy 1.24
            return self.a.__dlpack__()

    x, w1, w2 = _setup(runner)
    ref = runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits)
    assert np.array_equal(ref, runner.forward(P, moe.bf16(x.hidden), w1, w2,
                                              logits=Legacy(x.logits)))


def test_streams_are_ints(runner):
    class TorchLike:
        cuda_stream = 7

    class CupyLike:
        ptr = 9

    assert moe._stream(None) is None and moe._stream(5) == 5
    assert moe._stream(TorchLike()) == 7 and moe._stream(CupyLike()) == 9
    x, w1, w2 = _setup(runner)
    cfg = runner.default_config(P)
    ws = runner.allocate_workspace(P, cfg)
    with pytest.raises(moe.InvalidArgumentError) as ei:  # the CPU backend takes no stream
        runner.prepare_routing(P, cfg, ws, logits=x.logits, stream=0x1234)
    assert ei.value.message


def test_autotune(runner):
    x, w1, w2 = _setup(runner)
    res = runner.autotune(P, moe.bf16(x.hidden), w1, w2, logits=x.logits, iterations=2)
    assert sorted(c for c, _ in res) == sorted(runner.valid_configs(P))
    times = [t for _, t in res]
    assert times == sorted(times) and all(t >= 0 for t in times)


def test_empty_and_size1_strides(runner):
    """numpy 2 exports zero-size arrays with zero strides (an empty tensor has no layout), and
    DLPack producers may give any stride to a dimension of size 1."""
    p0 = moe.Problem(num_experts=8, num_tokens=0, top_k=2, hidden_size=64, intermediate_size=32)
    x, w1, w2 = _setup(runner)
    empty = _VersionedProducer(np.zeros((0, 8), np.float32), strides=(0, 0))
    out = runner.forward(p0, moe.bf16(np.zeros((0, 64), np.uint16)), w1, w2, logits=empty)
    assert out.shape == (0, 64)
    p1 = moe.Problem(num_experts=8, num_tokens=1, top_k=2, hidden_size=64, intermediate_size=32)
    one = _VersionedProducer(np.ascontiguousarray(x.logits[:1]), strides=(12345, 1))
    ref = runner.forward(p1, moe.bf16(x.hidden[:1].copy()), w1, w2,
                         logits=np.ascontiguousarray(x.logits[:1]))
    assert np.array_equal(ref, runner.forward(p1, moe.bf16(x.hidden[:1].copy()), w1, w2,
                                              logits=one))
    bad = _VersionedProducer(np.ascontiguousarray(x.logits), strides=(1, 5))  # column-major
    with pytest.raises(moe.InvalidArgumentError) as ei:
        runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=bad)
    assert "strides" in ei.value.message


# -- numpy bfloat16 / float8 through ml_dtypes -------------------------------------------------
def test_bfloat16_numpy_arrays_in_and_out(runner):
    x, w1_bits, w2_bits = _setup(runner)
    ref = runner.forward(P, moe.bf16(x.hidden), w1_bits, w2_bits, logits=x.logits)
    # the same data as ml_dtypes bfloat16 arrays: weights, hidden states
    w1 = runner.prepare_weights_host(P, moe.WEIGHTS_GEMM1, x.w1.view(moe.bfloat16))
    w2 = runner.prepare_weights_host(P, moe.WEIGHTS_GEMM2, x.w2.view(moe.bfloat16))
    assert np.array_equal(w1, w1_bits) and np.array_equal(w2, w2_bits)
    hidden = x.hidden.view(moe.bfloat16)
    assert moe.bf16(hidden) is hidden
    out = runner.forward(P, hidden, w1, w2, logits=x.logits)
    assert out.dtype == moe.bfloat16 and out.shape == (P.num_tokens, P.hidden_size)
    assert np.array_equal(out.view(np.uint16), ref.view(np.uint16))
    assert np.array_equal(moe.bf16_bits_to_float(out), out.astype(np.float32))
    # a caller-given bfloat16 output is written in place and returned
    given = np.zeros((P.num_tokens, P.hidden_size), moe.bfloat16)
    assert runner.forward(P, hidden, w1, w2, logits=x.logits, output=given) is given
    assert np.array_equal(given.view(np.uint16), ref.view(np.uint16))
    # bf16 logits as an ml_dtypes array == the same bits through View
    lb = moe.float_to_bf16_bits(x.logits)
    a = runner.forward(P, hidden, w1, w2, logits=lb.view(moe.bfloat16))
    b = runner.forward(P, hidden, w1, w2, logits=moe.bf16(lb))
    assert np.array_equal(a.view(np.uint16), b.view(np.uint16))
    # a strided (every other row) bfloat16 view reaches the library with its strides
    wide = np.zeros((2 * P.num_tokens, P.hidden_size), moe.bfloat16)
    wide[::2] = hidden
    with pytest.raises(moe.InvalidArgumentError) as ei:
        runner.forward(P, wide[::2], w1, w2, logits=x.logits)
    assert "strides" in ei.value.message


def test_float8_numpy_arrays_get_their_dlpack_codes(runner):
    import ml_dtypes
    x, w1, w2 = _setup(runner)
    for name, code in (("float8_e4m3fn", moe.DL_FLOAT8_E4M3FN), ("float8_e5m2",
                                                                moe.DL_FLOAT8_E5M2)):
        a = np.zeros((P.num_tokens, P.hidden_size), getattr(ml_dtypes, name))
        d = moe._dl_arg(a)
        assert (d[3], d[4]) == (code, 8) and d[5] == a.shape and d[-1] is a
        with pytest.raises(moe.InvalidArgumentError) as ei:  # bf16 is the only dtype today
            runner.forward(P, a, w1, w2, logits=x.logits)
        assert f"given {name}" in ei.value.message, ei.value.message


def test_error_messages_name_dtypes(runner):
    x, w1, w2 = _setup(runner)
    with pytest.raises(moe.InvalidArgumentError) as ei:
        runner.forward(P, moe.bf16(x.hidden).base.astype(np.float32), w1, w2, logits=x.logits)
    msg = ei.value.message
    assert "expected dtype bfloat16, given float32" in msg, msg
    assert "code" not in msg and "lanes" not in msg
    with pytest.raises(moe.InvalidArgumentError) as ei:  # int32 logits
        runner.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits.view(np.int32))
    assert "given int32" in ei.value.message
    assert moe.dtype_name(moe.DL_BFLOAT, 16) == "bfloat16"
    assert moe.dtype_name(moe.DL_UINT, 8) == "uint8"
    assert moe.dtype_name(moe.DL_FLOAT8_E8M0FNU, 8) == "float8_e8m0fnu"
    assert moe.dtype_name(moe.DL_FLOAT, 32, 4) == "float32x4"


def test_status_names_come_from_the_header():
    names = {getattr(moe, n): n[len("STATUS_"):] for n in dir(moe) if n.startswith("STATUS_")
             and n != "STATUS_NAMES"}
    assert moe.STATUS_NAMES == names
    assert moe.STATUS_NAMES[moe.STATUS_INTERNAL] == "INTERNAL"
    for status, name in names.items():
        if status:
            e = moe.error_from_status(status, "m")
            assert e.status_name == name and e.message == "m"


def test_plan_table_views(runner):
    x, w1, w2 = _setup(runner)
    cfg = runner.default_config(P)
    ws = runner.allocate_workspace(P, cfg)
    plan = runner.prepare_routing(P, cfg, ws, logits=x.logits)
    n = P.num_tokens * P.top_k
    for table in (moe.PLAN_TOPK_IDS, moe.PLAN_EXPERT_WEIGHTS, moe.PLAN_EXPANDED_TO_PERMUTED,
                  moe.PLAN_NUM_CTAS, moe.PLAN_PERMUTED_SIZE, moe.PLAN_EXPERT_COUNTS):
        view, copy = plan.table(table), plan.read(table)
        assert np.shares_memory(view, ws)
        assert view.dtype == copy.dtype
        assert np.array_equal(view[:copy.size].view(np.uint8), copy.view(np.uint8))
    assert plan.table(moe.PLAN_TOPK_IDS).size == n
    assert plan.table(moe.PLAN_PERMUTED_TO_TOKEN).size == plan.max_padded_rows
    assert plan.table(moe.PLAN_CTA_TO_BATCH).size == plan.max_ctas
    with pytest.raises(moe.InvalidArgumentError):
        plan.table(42)


# -- grouped run (moe_runner_run_grouped) ---------------------------------------------------------
GP = moe.Problem(num_experts=8, num_tokens=12, top_k=1, hidden_size=64, intermediate_size=32,
                 local_expert_offset=4, local_num_experts=4)


def _grouped_setup(r):
    x, w1, w2 = cl.prepared_inputs(r, GP, 11)
    cfg = r.default_config(GP)
    return x, w1, w2, cfg, r.grouped_workspace_size(GP, cfg)


def test_run_grouped_both_layouts(runner):
    x, w1, w2, cfg, nbytes = _grouped_setup(runner)
    assert nbytes > 0
    hidden = moe.bf16(x.hidden)
    # CONTIGUOUS, counts as a list; workspace and output allocated by the call
    out = runner.run_grouped(GP, cfg, layout=moe.LAYOUT_CONTIGUOUS, hidden_states=hidden,
                             expert_counts=[3, 0, 5, 2], gemm1_weights=w1, gemm2_weights=w2)
    assert out.dtype == moe.bfloat16 and out.shape == (12, 64)
    assert np.all(out[10:].view(np.uint16) == 0)  # rows past the sum are not written
    # MASKED [E_l, capacity, H] over the same rows: expert e's rows at e * 3
    masked = runner.run_grouped(GP, cfg, runner.allocate_workspace(GP, cfg),
                                layout=moe.LAYOUT_MASKED,
                                hidden_states=moe.bf16(x.hidden.reshape(4, 3, 64)),
                                expert_counts=np.array([3, 0, 1, 2], dtype=np.int32),
                                gemm1_weights=w1, gemm2_weights=w2)
    assert masked.shape == (4, 3, 64)
    assert np.array_equal(masked[0].view(np.uint16), out[0:3].view(np.uint16))
    assert np.all(masked[1].view(np.uint16) == 0)


@pytest.mark.parametrize("bad, needle", [
    (dict(layout=7), "args->layout"),
    (dict(expert_counts=np.array([3, 0, 5, 2], dtype=np.int64)), "args->expert_counts"),
    (dict(expert_counts=np.array([3, 0, 5], dtype=np.int32)), "args->expert_counts"),
    (dict(layout=moe.LAYOUT_MASKED, capacity=4), "args->capacity"),
    (dict(capacity=3), "args->capacity"),
    (dict(expert_counts=[13, 0, 0, 0]), "args->expert_counts"),
])
def test_run_grouped_misuse_raises_the_library_error(runner, bad, needle):
    x, w1, w2, cfg, _ = _grouped_setup(runner)
    kw = dict(layout=moe.LAYOUT_CONTIGUOUS, hidden_states=moe.bf16(x.hidden),
              expert_counts=[3, 0, 5, 2], gemm1_weights=w1, gemm2_weights=w2)
    if bad.get("layout") == moe.LAYOUT_MASKED:
        kw["hidden_states"] = moe.bf16(x.hidden.reshape(4, 3, 64))
    kw.update(bad)
    with pytest.raises(moe.InvalidArgumentError) as e:
        runner.run_grouped(GP, cfg, **kw)
    assert e.value.status == moe.STATUS_INVALID_ARGUMENT
    assert needle in e.value.message and needle in str(e.value)
