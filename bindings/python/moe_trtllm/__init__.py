"""moe_trtllm: Python binding of the moe-trtllm fused Mixture-of-Experts library.

Tensors are numpy arrays (CPU backend), torch tensors (CPU or CUDA), or any object with
``__dlpack__`` (cupy, ...); they are borrowed zero-copy for the duration of each call. bfloat16
and float8 numpy arrays use the ml_dtypes types (``moe_trtllm.bfloat16`` is
``ml_dtypes.bfloat16``); a uint16 array of bf16 bit patterns can still be passed wrapped with
:func:`bf16`. bf16 results (forward outputs, routing weights read from a plan) come back as
``ml_dtypes.bfloat16`` numpy arrays, or torch.bfloat16 tensors on the torch path. Streams are ints
(``torch.cuda.current_stream().cuda_stream``, ``cupy.cuda.get_current_stream().ptr``), stream
objects with one of those attributes, or None (the CPU backend requires None/0).
:mod:`moe_trtllm.torch` registers the forward and routing as PyTorch custom ops.

Example::

    import numpy as np, moe_trtllm as moe
    with moe.Runner(backend=moe.BACKEND_CPU) as r:
        p = moe.Problem(num_experts=8, num_tokens=4, top_k=2, hidden_size=64,
                        intermediate_size=32)
        w1 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM1, w1)   # bfloat16 [8, 64, 64]
        w2 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM2, w2)   # bfloat16 [8, 64, 32]
        out = r.forward(p, x, w1, w2, logits=logits)            # x bfloat16 [4, 64],
                                                                # logits float32 [4, 8]
    out.dtype   # bfloat16 (ml_dtypes), shape (4, 64)
"""

import contextlib
import threading
from dataclasses import dataclass

import numpy as _np

try:
    import ml_dtypes as _ml
except ImportError as _e:  # a declared dependency of the package
    raise ImportError("moe_trtllm needs ml_dtypes for bfloat16/float8 numpy arrays: "
                      "pip install ml_dtypes") from _e

from . import core as _core
from .errors import (MoeError, InvalidArgumentError, NotSupportedError, OutOfMemoryError,
                     CudaError, NoDeviceError, InsufficientWorkspaceError, VersionMismatchError,
                     InvalidConfigError, InternalError, RunnerClosedError, STATUS_NAMES,
                     error_from_status, dtype_name)

# Constants (the values of the C header's macros).
for _n in dir(_core):
    if _n.split("_")[0] in ("STATUS", "BACKEND", "ROUTING", "ACTIVATION", "DTYPE", "SCALING",
                            "LAYOUT", "WEIGHTS", "PLAN", "DL"):
        globals()[_n] = getattr(_core, _n)  # DL_*: DLPack device types and dtype codes
del _n

#: numpy scalar types of ml_dtypes (bf16 inputs and results are arrays of these).
bfloat16 = _ml.bfloat16
#: e4m3 (OCP, finite-only) of ml_dtypes: numpy arrays of FP8 hidden states and weights.
float8_e4m3fn = _ml.float8_e4m3fn
#: ue8m0 of ml_dtypes (MXFP4 scales, 2^(s-127)), where this ml_dtypes has it; else None.
float8_e8m0fnu = getattr(_ml, "float8_e8m0fnu", None)
#: e2m1 of ml_dtypes (MXFP4 values, one per byte in numpy: pack_e2m1 packs them), or None.
float4_e2m1fn = getattr(_ml, "float4_e2m1fn", None)

__version__ = "%d.%d.%d" % (_core.moe_b_version_major(), _core.moe_b_version_minor(),
                            _core.moe_b_version_patch())
if _core.moe_b_version_major() != 0:
    raise ImportError(f"moe_trtllm: library version {__version__} is not the 0.x this binding "
                      "was built for")


def status_string(status):
    """Static text of a status code."""
    return _core.moe_b_status_string(int(status))


def cuda_device_count():
    """Number of usable CUDA devices (0 without driver/GPU or in a CPU-only build)."""
    return _core.moe_b_cuda_device_count()


class View:
    """Reinterpret the element type of a tensor without copying: View(x, DL_BFLOAT, 16).

    The underlying tensor must have elements of the same width (e.g. a numpy uint16 array
    holding bfloat16 bit patterns)."""

    __slots__ = ("_moe_view_base", "_moe_view_code", "_moe_view_bits")

    def __init__(self, tensor, code, bits):
        self._moe_view_base = tensor
        self._moe_view_code = int(code)
        self._moe_view_bits = int(bits)

    @property
    def base(self):
        return self._moe_view_base

    def __dlpack__(self, *args, **kwargs):  # so generic code sees a tensor; dtype is overridden
        return self._moe_view_base.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._moe_view_base.__dlpack_device__()


def bf16(tensor):
    """A uint16 tensor of bfloat16 bit patterns, seen as bfloat16 by the library. Tensors that
    already are bfloat16 (ml_dtypes numpy arrays, torch.bfloat16) are returned as they are."""
    if isinstance(tensor, View):
        return tensor
    if isinstance(tensor, _np.ndarray) and tensor.dtype == _np.dtype(bfloat16):
        return tensor
    if type(tensor).__module__.split(".")[0] == "torch" and str(tensor.dtype) == "torch.bfloat16":
        return tensor
    return View(tensor, DL_BFLOAT, 16)


def _unwrap(t):
    return t.base if isinstance(t, View) else t


def _is_torch(t):
    return type(_unwrap(t)).__module__.split(".")[0] == "torch"


# numpy dtypes numpy cannot export through DLPack (ml_dtypes) -> (DLPack code, bits). Only the
# types stored at their own width: ml_dtypes keeps float4/float6 one per byte, DLPack packs them.
_ML_CODES = {}
for _name, _code in (("bfloat16", DL_BFLOAT), ("float8_e3m4", DL_FLOAT8_E3M4),
                     ("float8_e4m3", DL_FLOAT8_E4M3),
                     ("float8_e4m3b11fnuz", DL_FLOAT8_E4M3B11FNUZ),
                     ("float8_e4m3fn", DL_FLOAT8_E4M3FN), ("float8_e4m3fnuz", DL_FLOAT8_E4M3FNUZ),
                     ("float8_e5m2", DL_FLOAT8_E5M2), ("float8_e5m2fnuz", DL_FLOAT8_E5M2FNUZ),
                     ("float8_e8m0fnu", DL_FLOAT8_E8M0FNU)):
    if hasattr(_ml, _name):
        _dt = _np.dtype(getattr(_ml, _name))
        _ML_CODES[_dt] = (_code, 8 * _dt.itemsize)
del _name, _code, _dt

# torch dtype name (str(dtype) without "torch.") -> (DLPack code, bits).
_TORCH_CODES = {"float32": (DL_FLOAT, 32), "float64": (DL_FLOAT, 64), "float16": (DL_FLOAT, 16),
                "bfloat16": (DL_BFLOAT, 16), "int8": (DL_INT, 8), "int16": (DL_INT, 16),
                "int32": (DL_INT, 32), "int64": (DL_INT, 64), "uint8": (DL_UINT, 8),
                "uint16": (DL_UINT, 16), "uint32": (DL_UINT, 32), "uint64": (DL_UINT, 64),
                "bool": (DL_BOOL, 8), "float8_e4m3fn": (DL_FLOAT8_E4M3FN, 8),
                "float8_e4m3fnuz": (DL_FLOAT8_E4M3FNUZ, 8), "float8_e5m2": (DL_FLOAT8_E5M2, 8),
                "float8_e5m2fnuz": (DL_FLOAT8_E5M2FNUZ, 8),
                "float8_e8m0fnu": (DL_FLOAT8_E8M0FNU, 8),
                # two e2m1 values per byte (low nibble first): DLPack float4_e2m1fn x 2 lanes
                "float4_e2m1fn_x2": (DL_FLOAT4_E2M1FN, 4, 2)}


def _override(cb, override, what):
    if override is None:
        return cb
    if cb[1] != override[1]:
        raise TypeError(f"View: element of {cb[1]} bits ({what}) cannot be viewed as "
                        f"{override[1]} bits")
    return override


def _dl_arg(obj):
    """How the C module reads a tensor argument: a description tuple (data pointer,
    device_type, device_id, dtype code, bits, shape, strides in elements, owner), or an object
    to read through __dlpack__. torch tensors are described from data_ptr()/shape/stride():
    no capsule and no stream synchronisation, so calls are CUDA-graph capturable on the
    caller's stream. numpy arrays of ml_dtypes types are described too (numpy's DLPack export
    rejects them)."""
    t, override = obj, None
    if isinstance(obj, View):
        t, override = obj._moe_view_base, (obj._moe_view_code, obj._moe_view_bits)
    if type(t).__module__.split(".")[0] == "torch":
        name = str(t.dtype).replace("torch.", "")
        cb = _TORCH_CODES.get(name)
        if cb is None:
            raise TypeError(f"moe_trtllm: torch dtype {name} has no DLPack equivalent")
        lanes = cb[2] if len(cb) > 2 else 1
        cb = _override(cb[:2], override, name)
        dev = t.device
        if dev.type == "cuda":
            dt, di = DL_CUDA, (dev.index or 0)
        elif dev.type == "cpu":
            dt, di = DL_CPU, 0
        else:
            raise TypeError(f"moe_trtllm: tensors on device {dev} are not supported "
                            "(cpu or cuda)")
        d = (t.data_ptr(), dt, di, cb[0], cb[1], tuple(t.shape), tuple(t.stride()))
        return d + (t,) if lanes == 1 else d + (lanes, t)
    if isinstance(t, _np.ndarray) and t.dtype in _ML_CODES:
        cb = _override(_ML_CODES[t.dtype], override, t.dtype.name)
        size = t.dtype.itemsize
        if any(s % size for s in t.strides):
            raise ValueError(f"moe_trtllm: strides {t.strides} are not multiples of the "
                             f"{t.dtype.name} element size")
        return (t.__array_interface__["data"][0], DL_CPU, 0, cb[0], cb[1], t.shape,
                tuple(s // size for s in t.strides), t)
    return obj


def pack_e2m1(values):
    """MXFP4 values [..., C] (an ml_dtypes float4_e2m1fn numpy array, one value per byte, or
    uint8 e2m1 codes 0..15) -> uint8 [..., C/2], two per byte, the even column in the low
    nibble: the layout moe_weights_prepare_scaled reads (docs/formats.md "MXFP4")."""
    a = _np.ascontiguousarray(values)
    if a.dtype.itemsize != 1:
        raise TypeError(f"pack_e2m1: expected float4_e2m1fn or uint8 codes, got {a.dtype}")
    a = a.view(_np.uint8)
    if a.ndim == 0 or a.shape[-1] % 2:
        raise ValueError(f"pack_e2m1: the last dimension ({a.shape}) must be even")
    return ((a[..., 0::2] & 0xF) | ((a[..., 1::2] & 0xF) << 4)).astype(_np.uint8)


def _mx_values(t):
    """numpy float4_e2m1fn arrays (one value per byte) are packed for the library."""
    if float4_e2m1fn is not None and isinstance(t, _np.ndarray) and \
            t.dtype == _np.dtype(float4_e2m1fn):
        return pack_e2m1(t)
    return t


def _stream(s):
    if s is None:
        return None
    if hasattr(s, "cuda_stream"):
        return int(s.cuda_stream)
    if hasattr(s, "ptr"):
        return int(s.ptr)
    return int(s)


@dataclass(frozen=True)
class Problem:
    """Shape of one MoE layer call (moe_problem). local_num_experts 0 means num_experts."""

    num_experts: int
    num_tokens: int
    top_k: int
    hidden_size: int
    intermediate_size: int
    local_expert_offset: int = 0
    local_num_experts: int = 0

    def _args(self):
        return (int(self.num_experts), int(self.num_tokens), int(self.top_k),
                int(self.local_expert_offset), int(self.local_num_experts),
                int(self.hidden_size), int(self.intermediate_size))


@dataclass(frozen=True)
class ConfigInfo:
    """Description of a kernel config (moe_config_info)."""

    index: int
    tile: int
    cta_tile: int
    cluster_size: int
    gemm1_block_m: int
    gemm2_block_m: int
    block_k: int
    stages: int
    sm_version: int
    name: str


def _aligned_host_bytes(nbytes, align=256):
    import numpy as np
    buf = np.empty(int(nbytes) + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + int(nbytes)]


def _torch_empty(shape, dtype, like):
    import torch
    return torch.empty(shape, dtype=dtype, device=_unwrap(like).device)


def _torch_aligned_bytes(nbytes, device, align=256):
    """A torch.uint8 tensor of nbytes at a 256-byte aligned address (CPU tensors are only
    64-byte aligned)."""
    import torch
    buf = torch.empty(int(nbytes) + align, dtype=torch.uint8, device=device)
    off = (-buf.data_ptr()) % align
    return buf[off:off + int(nbytes)]


class Plan:
    """A prepared routing plan (moe_plan descriptor) tied to its runner and workspace."""

    _FIELDS = ("config", "tile", "cluster_size", "num_tokens", "max_padded_rows", "max_ctas",
               "backend")

    def __init__(self, runner, workspace, stream):
        self._c = _core.moe_plan()
        self._runner = runner
        self._workspace = workspace
        self._stream = stream

    def __getattr__(self, name):
        if name in Plan._FIELDS:
            return int(_core.moe_b_plan_field(self._c, Plan._FIELDS.index(name)))
        raise AttributeError(name)

    def __repr__(self):
        return "Plan(%s)" % ", ".join(f"{f}={getattr(self, f)}" for f in Plan._FIELDS)

    def read_count(self, table):
        """Element count of plan table `table` (PLAN_*); synchronises the stream."""
        with self._runner._use() as r:
            return int(_core.moe_b_plan_read_count(r, self._c, self._workspace, int(table),
                                                   self._stream))

    def read(self, table):
        """Copy plan table `table` (PLAN_*) to a new numpy array (bfloat16 for
        PLAN_EXPERT_WEIGHTS, int32 otherwise). Synchronises the stream."""
        n = self.read_count(table)
        dt = bfloat16 if int(table) == _core.PLAN_EXPERT_WEIGHTS else _np.int32
        dst = _np.zeros(max(n, 1), dtype=dt)
        with self._runner._use() as r:
            _core.moe_b_plan_read(r, self._c, self._workspace, int(table), dst, self._stream)
        return dst[:n]

    def table(self, table):
        """Plan table `table` (PLAN_*) as a zero-copy view into the workspace, no
        synchronisation: a numpy array for a numpy workspace, a torch tensor (on the
        workspace's device) for a torch one. Its length is the table's capacity (T*K for the
        per-slot tables, max_padded_rows, max_ctas, 1 or E); bfloat16 for PLAN_EXPERT_WEIGHTS,
        int32 otherwise. Valid until the workspace is prepared again; on CUDA, read it on (or
        after) the plan's stream."""
        table = int(table)
        with self._runner._use() as r:
            off = int(_core.moe_py_plan_table_extent(r, self._c, self._workspace, table, 0))
            n = int(_core.moe_py_plan_table_extent(r, self._c, self._workspace, table, 1))
        w = _unwrap(self._workspace)
        size = 2 if table == _core.PLAN_EXPERT_WEIGHTS else 4
        if _is_torch(w):
            import torch
            dt = torch.bfloat16 if size == 2 else torch.int32
            return w.view(-1)[off:off + n * size].view(dt)
        dt = bfloat16 if size == 2 else _np.int32
        return _np.asarray(w).reshape(-1)[off:off + n * size].view(dt)


class Runner:
    """A moe_runner: the config catalogue and backend for one activation and dtype.

    Use as a context manager or call close(); after close every call raises
    InvalidArgumentError with the library's message. A runner may be shared by threads;
    concurrent calls need separate workspaces and plans.

    Args:
        backend: BACKEND_AUTO (default), BACKEND_CPU or BACKEND_CUDA.
        device_id: CUDA device ordinal.
        sm_version: 0 = ask the device; e.g. 90 allows CUDA config queries without a GPU.
        activation: ACTIVATION_SWIGLU (default), _GEGLU, _RELU2 or _IDENTITY.
        num_threads: CPU backend worker threads (0 = one per core).
        dtype: the activation and weight dtype at once: DTYPE_BF16 (default) or DTYPE_FP8_E4M3
            (the convenience when they agree).
        activation_dtype: DTYPE_BF16 or DTYPE_FP8_E4M3; overrides `dtype` for activations.
        weight_dtype: DTYPE_BF16, DTYPE_FP8_E4M3 or DTYPE_MXFP4; overrides `dtype` for weights
            (MXFP4: W4A16 with bf16 activations, W4A8 with e4m3 ones; docs/formats.md "MXFP4").
        scaling_mode: SCALING_NONE (BF16), SCALING_PER_TENSOR or SCALING_BLOCK (FP8; see
            docs/formats.md "FP8"), SCALING_MX (MXFP4). An FP8 dtype without a mode, or a
            mode on BF16, is an InvalidArgumentError from the library.
    """

    def __init__(self, backend=-1, device_id=0, sm_version=0, activation=3, num_threads=0, *,
                 dtype=DTYPE_BF16, scaling_mode=SCALING_NONE, activation_dtype=None,
                 weight_dtype=None):
        self._r = None
        self._cv = threading.Condition(threading.Lock())
        self._inflight = {}  # thread id -> calls it has inside the library
        self._closing = False
        act_dt = int(dtype if activation_dtype is None else activation_dtype)
        w_dt = int(dtype if weight_dtype is None else weight_dtype)
        self._r = _core.moe_b_runner_create(int(backend), int(device_id), int(sm_version),
                                            int(activation), int(num_threads), act_dt, w_dt,
                                            int(scaling_mode))
        self.activation = int(activation)
        self.activation_dtype = act_dt
        self.weight_dtype = w_dt
        self.dtype = act_dt if act_dt == w_dt else None  # the single dtype, when there is one
        self.scaling_mode = int(scaling_mode)
        self.device_id = int(device_id)

    # -- lifetime --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _use(self):
        """Holds the handle for one call: close() waits until no call is in flight."""
        with self._cv:
            if self._r is None or self._closing:
                raise RunnerClosedError(STATUS_INVALID_ARGUMENT,
                                        "moe_trtllm.Runner: the runner is closed")
            me = threading.get_ident()
            self._inflight[me] = self._inflight.get(me, 0) + 1
            r = self._r
        try:
            yield r
        finally:
            with self._cv:
                if self._inflight[me] == 1:
                    del self._inflight[me]
                else:
                    self._inflight[me] -= 1
                if not self._inflight:
                    self._cv.notify_all()

    def close(self):
        """Destroy the runner (idempotent, thread-safe). Calls already inside the library on
        other threads finish first (close waits for them); calls after close raise
        RunnerClosedError (an InvalidArgumentError)."""
        with self._cv:
            if threading.get_ident() in self._inflight:
                raise RuntimeError("moe_trtllm.Runner.close() called from inside a call on the "
                                   "same runner (e.g. a tensor's __dlpack__): it would wait for "
                                   "itself")
            if self._r is None or self._closing:
                while self._r is not None:  # another thread is closing: wait for it
                    self._cv.wait()
                return
            self._closing = True
            while self._inflight:
                self._cv.wait()
            r = self._r
        try:
            _core.moe_b_runner_destroy(r)
        finally:
            with self._cv:
                self._r = None
                self._cv.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            if getattr(self, "_r", None) is not None:
                self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return self._r is None or self._closing

    # -- queries ---------------------------------------------------------------------------
    @property
    def backend(self):
        """BACKEND_CPU or BACKEND_CUDA."""
        with self._use() as r:
            return _core.moe_b_runner_backend(r)

    @property
    def num_configs(self):
        """Number of configs in the catalogue."""
        with self._use() as r:
            return _core.moe_b_num_configs(r)

    def valid_configs(self, problem):
        """Config indices valid for `problem`, best first."""
        a = problem._args()
        with self._use() as r:
            n = _core.moe_b_valid_config_count(r, *a)
            return [_core.moe_b_valid_config_at(r, *a, i) for i in range(n)]

    def default_config(self, problem):
        """The default (best-first) config of `problem`."""
        with self._use() as r:
            return _core.moe_b_default_config(r, *problem._args())

    def describe_config(self, config):
        """ConfigInfo of a config index."""
        with self._use() as r:
            f = [_core.moe_b_config_field(r, int(config), i) for i in range(9)]
            return ConfigInfo(*f, name=_core.moe_b_config_name(r, int(config)))

    def cluster_size(self, config):
        """Cluster size C of a config."""
        with self._use() as r:
            return _core.moe_b_cluster_size(r, int(config))

    def workspace_size(self, problem, config):
        """Workspace bytes for `problem` (num_tokens = T_max) with `config`."""
        with self._use() as r:
            return int(_core.moe_b_workspace_size(r, *problem._args(), int(config)))

    def weights_prepared_size(self, problem, which):
        """Bytes of a prepared weight tensor (which = WEIGHTS_GEMM1 or WEIGHTS_GEMM2; MXFP4
        also WEIGHTS_GEMM1_GATE_UP_INTERLEAVED, the size of GEMM1)."""
        with self._use() as r:
            return int(_core.moe_b_weights_prepared_size(r, *problem._args(), int(which)))

    # -- work ------------------------------------------------------------------------------
    def prepare_weights(self, problem, which, canonical, prepared, stream=None):
        """Convert canonical bf16 weights into the prepared uint8 tensor `prepared`."""
        with self._use() as r:
            _core.moe_b_weights_prepare(r, *problem._args(), int(which), canonical, prepared,
                                        _stream(stream))
        return prepared

    def prepare_weights_scaled(self, problem, which, canonical, canonical_scales, prepared,
                               stream=None):
        """FP8 runners (moe_weights_prepare_scaled): `canonical` e4m3 weights [E_l, R, C]
        (float8_e4m3fn numpy / torch.float8_e4m3fn) with their fp32 `canonical_scales`
        ([E_l] per tensor, [E_l, R/128, C/128] block), copied as they are; or bf16 weights with
        canonical_scales None, quantized by the library.

        MXFP4 runners: `canonical` the packed e2m1 blocks [E_l, R, C/2] (uint8,
        torch.float4_e2m1fn_x2, or an ml_dtypes float4_e2m1fn numpy array [E_l, R, C], packed
        here by pack_e2m1) and `canonical_scales` (required) ue8m0 [E_l, R, C/32] (uint8,
        ml_dtypes float8_e8m0fnu or torch.float8_e8m0fnu); `which` WEIGHTS_GEMM1,
        WEIGHTS_GEMM1_GATE_UP_INTERLEAVED (gpt-oss's interleaved gate/up rows) or
        WEIGHTS_GEMM2."""
        canonical = _mx_values(canonical)
        with self._use() as r:
            _core.moe_b_weights_prepare_scaled(r, *problem._args(), int(which), canonical,
                                               canonical_scales, prepared, _stream(stream))
        return prepared

    def prepare_weights_host(self, problem, which, canonical):
        """CPU convenience: canonical bf16 weights (a bfloat16 numpy array, or uint16 bf16 bit
        patterns) -> a new numpy uint8 array of prepared weights."""
        out = _np.zeros(self.weights_prepared_size(problem, which), dtype=_np.uint8)
        return self.prepare_weights(problem, which, bf16(canonical), out)

    def allocate_workspace(self, problem, config, like=None):
        """A zeroed 256-byte aligned workspace: numpy (CPU) or, when `like` is a torch tensor,
        torch.uint8 on its device."""
        n = self.workspace_size(problem, config)
        if like is not None and _is_torch(like):
            return _torch_aligned_bytes(n, _unwrap(like).device)
        return _aligned_host_bytes(n)

    def prepare_routing(self, problem, config, workspace, *, method=1, logits=None, bias=None,
                        topk_ids=None, topk_weights=None, topk_packed=None, n_group=1,
                        topk_group=0, routed_scaling_factor=1.0, enable_pdl=True, stream=None):
        """Route `problem` for `config` into `workspace` (a uint8 tensor of at least
        workspace_size() bytes); returns the Plan. Give logits, or topk_ids + topk_weights,
        or topk_packed."""
        plan = Plan(self, workspace, _stream(stream))
        with self._use() as r:
            _core.moe_b_routing_prepare(r, *problem._args(), int(config), int(method), logits,
                                        bias, topk_ids, topk_weights, topk_packed, int(n_group),
                                        int(topk_group), float(routed_scaling_factor),
                                        int(bool(enable_pdl)), workspace, plan._c,
                                        _stream(stream))
        return plan

    def run(self, problem, config, plan, workspace, *, hidden_states, gemm1_weights,
            gemm2_weights, output=None, permuted_output=None, do_finalize=None, gemm1_bias=None,
            gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None, gemm1_clamp_limit=None,
            hidden_states_scale=None, gemm1_input_scale=None, gemm2_input_scale=None,
            enable_pdl=True, stream=None):
        """GEMM1, GEMM2 and finalize on a prepared plan. do_finalize defaults to
        `output is not None`. FP8 runners: hidden_states bf16 or e4m3; hidden_states_scale
        fp32 [T, H/128] (BLOCK with e4m3 hidden states); gemm1_input_scale and
        gemm2_input_scale fp32 [1] (PER_TENSOR, required)."""
        if do_finalize is None:
            do_finalize = output is not None
        with self._use() as r:
            _core.moe_b_run(r, *problem._args(), int(config), plan._c, int(bool(do_finalize)),
                            hidden_states, gemm1_weights, gemm2_weights, gemm1_bias, gemm2_bias,
                            gemm1_alpha, gemm1_beta, gemm1_clamp_limit, output, permuted_output,
                            hidden_states_scale, gemm1_input_scale, gemm2_input_scale,
                            int(bool(enable_pdl)), workspace, _stream(stream))

    def grouped_workspace_size(self, problem, config):
        """Workspace bytes of run_grouped for `problem` (num_tokens = the largest N; MASKED:
        E_l * capacity) with `config` (moe_runner_get_grouped_workspace_size)."""
        with self._use() as r:
            return int(_core.moe_b_grouped_workspace_size(r, *problem._args(), int(config)))

    def run_grouped(self, problem, config, workspace=None, *, layout, hidden_states,
                    expert_counts, gemm1_weights, gemm2_weights, output=None, capacity=None,
                    gemm1_bias=None, gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None,
                    gemm1_clamp_limit=None, hidden_states_scale=None, gemm1_input_scale=None,
                    gemm2_input_scale=None, enable_pdl=True, stream=None):
        """GEMM1 (+activation) and GEMM2 on tokens a dispatcher already grouped by local expert
        (moe_runner_run_grouped; docs/ep.md); returns `output`.

        layout: LAYOUT_CONTIGUOUS (hidden_states [N, H], the rows of local expert e after those
        of e-1; N = problem.num_tokens) or LAYOUT_MASKED (hidden_states [E_l, capacity, H],
        N = E_l * capacity). expert_counts: int32 [E_l] on the runner's device (numpy / torch;
        a list is converted to an int32 numpy array); other dtypes are the library's
        InvalidArgumentError. capacity: MASKED rows per expert (None: hidden_states.shape[1]);
        CONTIGUOUS takes 0 (the default). output: bfloat16 in the shape of hidden_states;
        allocated (zeroed, numpy or torch like hidden_states) when None. Rows past the counts
        are not written. The output rows are unweighted (no routing, no finalize). workspace:
        grouped_workspace_size() bytes, allocated when None. FP8 runners (CPU and CUDA
        backends): hidden_states bf16 or e4m3; hidden_states_scale fp32
        [N, H/128] (BLOCK with e4m3 hidden states; MASKED: [E_l * capacity, H/128]);
        gemm1_input_scale and gemm2_input_scale fp32 [1] (PER_TENSOR, required), as run()."""
        if isinstance(expert_counts, (list, tuple)):
            expert_counts = _np.asarray(expert_counts, dtype=_np.int32)
        shape = tuple(_unwrap(hidden_states).shape)
        if capacity is None:
            capacity = shape[1] if int(layout) == LAYOUT_MASKED and len(shape) == 3 else 0
        torch_mode = _is_torch(hidden_states)
        if workspace is None:
            n = self.grouped_workspace_size(problem, config)
            workspace = (_torch_aligned_bytes(n, _unwrap(hidden_states).device) if torch_mode
                         else _aligned_host_bytes(n))
        if output is None:
            if torch_mode:
                import torch
                output = _torch_empty(shape, torch.bfloat16, hidden_states).zero_()
            else:
                output = _np.zeros(shape, dtype=bfloat16)
        with self._use() as r:
            _core.moe_b_run_grouped(r, *problem._args(), int(config), int(layout),
                                    int(capacity), hidden_states, expert_counts, gemm1_weights,
                                    gemm2_weights, gemm1_bias, gemm2_bias, gemm1_alpha,
                                    gemm1_beta, gemm1_clamp_limit, output, hidden_states_scale,
                                    gemm1_input_scale, gemm2_input_scale,
                                    int(bool(enable_pdl)), workspace, _stream(stream))
        return output

    def forward(self, problem, hidden_states, gemm1_weights, gemm2_weights, *, method=1,
                logits=None, bias=None, topk_ids=None, topk_weights=None, topk_packed=None,
                n_group=1, topk_group=0, routed_scaling_factor=1.0, gemm1_bias=None,
                gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None, gemm1_clamp_limit=None,
                hidden_states_scale=None, gemm1_input_scale=None, gemm2_input_scale=None,
                output=None, workspace=None, enable_pdl=True, stream=None):
        """One-shot forward with the default config (moe_forward). Allocates the workspace and
        the output when not given: a bfloat16 (ml_dtypes) numpy array [T, H] on the CPU, a
        torch.bfloat16 tensor on the tensors' device when hidden_states is a torch tensor.
        Returns the output."""
        torch_mode = _is_torch(hidden_states)
        T, H = int(problem.num_tokens), int(problem.hidden_size)
        if workspace is None:
            cfg = self.default_config(problem)
            workspace = self.allocate_workspace(problem, cfg,
                                                like=hidden_states if torch_mode else None)
        if output is None:
            if torch_mode:
                import torch
                output = _torch_empty((T, H), torch.bfloat16, hidden_states)
            else:
                output = _np.zeros((T, H), dtype=bfloat16)
        with self._use() as r:
            _core.moe_b_forward(r, *problem._args(), int(method), logits, bias, topk_ids,
                                topk_weights, topk_packed, int(n_group), int(topk_group),
                                float(routed_scaling_factor), 1, hidden_states, gemm1_weights,
                                gemm2_weights, gemm1_bias, gemm2_bias, gemm1_alpha, gemm1_beta,
                                gemm1_clamp_limit, output, None, hidden_states_scale,
                                gemm1_input_scale, gemm2_input_scale, int(bool(enable_pdl)),
                                workspace, _stream(stream))
        return output

    def autotune(self, problem, hidden_states, gemm1_weights, gemm2_weights, *, method=1,
                 logits=None, bias=None, topk_ids=None, topk_weights=None, topk_packed=None,
                 n_group=1, topk_group=0, routed_scaling_factor=1.0, gemm1_bias=None,
                 gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None, gemm1_clamp_limit=None,
                 hidden_states_scale=None, gemm1_input_scale=None, gemm2_input_scale=None,
                 output=None, workspace=None, iterations=5, enable_pdl=True, stream=None):
        """Times every valid config (moe_runner_autotune: prepare + run, median of
        `iterations`) and returns [(config, microseconds)] fastest first. Allocates the output
        and a workspace large enough for every valid config when not given. Synchronises."""
        torch_mode = _is_torch(hidden_states)
        cfgs = self.valid_configs(problem)
        if workspace is None:
            n = max(self.workspace_size(problem, c) for c in cfgs)
            if torch_mode:
                workspace = _torch_aligned_bytes(n, _unwrap(hidden_states).device)
            else:
                workspace = _aligned_host_bytes(n)
        if output is None:
            T, H = int(problem.num_tokens), int(problem.hidden_size)
            if torch_mode:
                import torch
                output = _torch_empty((T, H), torch.bfloat16, hidden_states)
            else:
                output = _np.zeros((T, H), dtype=bfloat16)
        configs = _np.zeros(len(cfgs), dtype=_np.int32)
        times = _np.zeros(len(cfgs), dtype=_np.float32)
        with self._use() as r:
            n = _core.moe_b_autotune(r, *problem._args(), int(method), logits, bias, topk_ids,
                                     topk_weights, topk_packed, int(n_group), int(topk_group),
                                     float(routed_scaling_factor), 1, hidden_states,
                                     gemm1_weights, gemm2_weights, gemm1_bias, gemm2_bias,
                                     gemm1_alpha, gemm1_beta, gemm1_clamp_limit, output, None,
                                     hidden_states_scale, gemm1_input_scale, gemm2_input_scale,
                                     int(bool(enable_pdl)), workspace, int(iterations), configs,
                                     times, _stream(stream))
        return [(int(configs[i]), float(times[i])) for i in range(n)]


def float_to_bf16_bits(a):
    """numpy float32 array -> uint16 bf16 bit patterns (round to nearest even)."""
    u = _np.ascontiguousarray(a, dtype=_np.float32).view(_np.uint32).astype(_np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(_np.uint16)


def bf16_bits_to_float(a):
    """uint16 bf16 bit patterns (or a bfloat16 array) -> numpy float32 array."""
    a = _np.asarray(a)
    if a.dtype == _np.dtype(bfloat16):
        return a.astype(_np.float32)
    return (a.astype(_np.uint16).astype(_np.uint32) << 16).view(_np.float32)
