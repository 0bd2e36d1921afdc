"""moe_trtllm: Python binding of the moe-trtllm fused Mixture-of-Experts library.

Tensors are any objects with ``__dlpack__`` (numpy arrays on the CPU backend, torch or cupy
tensors on the CUDA backend); they are borrowed zero-copy for the duration of each call. numpy has
no bfloat16: pass bf16 data as a uint16 array wrapped with :func:`bf16`. Streams are ints
(``torch.cuda.current_stream().cuda_stream``, ``cupy.cuda.get_current_stream().ptr``), stream
objects with one of those attributes, or None (the CPU backend requires None/0).

Example::

    import numpy as np, moe_trtllm as moe
    with moe.Runner(backend=moe.BACKEND_CPU) as r:
        p = moe.Problem(num_experts=8, num_tokens=4, top_k=2, hidden_size=64,
                        intermediate_size=32)
        w1 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM1, w1_bf16_bits)   # uint16 [8, 64, 64]
        w2 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM2, w2_bf16_bits)   # uint16 [8, 64, 32]
        out = r.forward(p, moe.bf16(x_bits), w1, w2, logits=logits_f32)   # uint16 [4, 64]
"""

from dataclasses import dataclass

from . import core as _core
from .errors import (MoeError, InvalidArgumentError, NotSupportedError, OutOfMemoryError,
                     CudaError, NoDeviceError, InsufficientWorkspaceError, VersionMismatchError,
                     InvalidConfigError, InternalError, STATUS_NAMES, error_from_status)

# Constants (the values of the C header's macros).
for _n in dir(_core):
    if _n.split("_")[0] in ("STATUS", "BACKEND", "ROUTING", "ACTIVATION", "DTYPE", "WEIGHTS",
                            "PLAN"):
        globals()[_n] = getattr(_core, _n)
del _n

#: DLPack type codes, for View().
DL_INT, DL_UINT, DL_FLOAT, DL_BFLOAT = 0, 1, 2, 4

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
    """A uint16 tensor of bfloat16 bit patterns, seen as bfloat16 by the library."""
    if isinstance(tensor, View):
        return tensor
    return View(tensor, DL_BFLOAT, 16)


def _unwrap(t):
    return t.base if isinstance(t, View) else t


def _is_torch(t):
    return type(_unwrap(t)).__module__.split(".")[0] == "torch"


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
        return int(_core.moe_b_plan_read_count(self._runner._handle(), self._c, self._workspace,
                                               int(table), self._stream))

    def read(self, table):
        """Copy plan table `table` (PLAN_*) to a new numpy array (uint16 bf16 bit patterns for
        PLAN_EXPERT_WEIGHTS, int32 otherwise). Synchronises the stream."""
        import numpy as np
        n = self.read_count(table)
        dt = np.uint16 if int(table) == _core.PLAN_EXPERT_WEIGHTS else np.int32
        dst = np.zeros(max(n, 1), dtype=dt)
        _core.moe_b_plan_read(self._runner._handle(), self._c, self._workspace, int(table), dst,
                              self._stream)
        return dst[:n]


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
    """

    def __init__(self, backend=-1, device_id=0, sm_version=0, activation=3, num_threads=0):
        self._r = _core.moe_b_runner_create(int(backend), int(device_id), int(sm_version),
                                            int(activation), int(num_threads))
        self.activation = int(activation)
        self.device_id = int(device_id)

    # -- lifetime --------------------------------------------------------------------------
    def close(self):
        """Destroy the runner (idempotent)."""
        r, self._r = self._r, None
        if r is not None:
            _core.moe_b_runner_destroy(r)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return self._r is None

    def _handle(self):
        return self._r  # None after close: the library reports the NULL runner

    # -- queries ---------------------------------------------------------------------------
    @property
    def backend(self):
        """BACKEND_CPU or BACKEND_CUDA."""
        return _core.moe_b_runner_backend(self._handle())

    @property
    def num_configs(self):
        """Number of configs in the catalogue."""
        return _core.moe_b_num_configs(self._handle())

    def valid_configs(self, problem):
        """Config indices valid for `problem`, best first."""
        a = problem._args()
        n = _core.moe_b_valid_config_count(self._handle(), *a)
        return [_core.moe_b_valid_config_at(self._handle(), *a, i) for i in range(n)]

    def default_config(self, problem):
        """The default (best-first) config of `problem`."""
        return _core.moe_b_default_config(self._handle(), *problem._args())

    def describe_config(self, config):
        """ConfigInfo of a config index."""
        f = [_core.moe_b_config_field(self._handle(), int(config), i) for i in range(9)]
        return ConfigInfo(*f, name=_core.moe_b_config_name(self._handle(), int(config)))

    def cluster_size(self, config):
        """Cluster size C of a config."""
        return _core.moe_b_cluster_size(self._handle(), int(config))

    def workspace_size(self, problem, config):
        """Workspace bytes for `problem` (num_tokens = T_max) with `config`."""
        return int(_core.moe_b_workspace_size(self._handle(), *problem._args(), int(config)))

    def weights_prepared_size(self, problem, which):
        """Bytes of a prepared weight tensor (which = WEIGHTS_GEMM1 or WEIGHTS_GEMM2)."""
        return int(_core.moe_b_weights_prepared_size(self._handle(), *problem._args(),
                                                     int(which)))

    # -- work ------------------------------------------------------------------------------
    def prepare_weights(self, problem, which, canonical, prepared, stream=None):
        """Convert canonical bf16 weights into the prepared uint8 tensor `prepared`."""
        _core.moe_b_weights_prepare(self._handle(), *problem._args(), int(which), canonical,
                                    prepared, _stream(stream))
        return prepared

    def prepare_weights_host(self, problem, which, canonical):
        """CPU convenience: canonical bf16 weights (numpy uint16, or a bf16 View) -> a new
        numpy uint8 array of prepared weights."""
        import numpy as np
        out = np.zeros(self.weights_prepared_size(problem, which), dtype=np.uint8)
        return self.prepare_weights(problem, which, bf16(canonical), out)

    def allocate_workspace(self, problem, config, like=None):
        """A zeroed 256-byte aligned workspace: numpy (CPU) or, when `like` is a torch tensor,
        torch.uint8 on its device."""
        n = self.workspace_size(problem, config)
        if like is not None and _is_torch(like):
            import torch
            return _torch_empty((max(n, 1),), torch.uint8, like)[:n]
        return _aligned_host_bytes(n)

    def prepare_routing(self, problem, config, workspace, *, method=1, logits=None, bias=None,
                        topk_ids=None, topk_weights=None, topk_packed=None, n_group=1,
                        topk_group=0, routed_scaling_factor=1.0, enable_pdl=True, stream=None):
        """Route `problem` for `config` into `workspace` (a uint8 tensor of at least
        workspace_size() bytes); returns the Plan. Give logits, or topk_ids + topk_weights,
        or topk_packed."""
        plan = Plan(self, workspace, _stream(stream))
        _core.moe_b_routing_prepare(self._handle(), *problem._args(), int(config), int(method),
                                    logits, bias, topk_ids, topk_weights, topk_packed,
                                    int(n_group), int(topk_group), float(routed_scaling_factor),
                                    int(bool(enable_pdl)), workspace, plan._c, _stream(stream))
        return plan

    def run(self, problem, config, plan, workspace, *, hidden_states, gemm1_weights,
            gemm2_weights, output=None, permuted_output=None, do_finalize=None, gemm1_bias=None,
            gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None, gemm1_clamp_limit=None,
            enable_pdl=True, stream=None):
        """GEMM1, GEMM2 and finalize on a prepared plan. do_finalize defaults to
        `output is not None`."""
        if do_finalize is None:
            do_finalize = output is not None
        _core.moe_b_run(self._handle(), *problem._args(), int(config), plan._c,
                        int(bool(do_finalize)), hidden_states, gemm1_weights, gemm2_weights,
                        gemm1_bias, gemm2_bias, gemm1_alpha, gemm1_beta, gemm1_clamp_limit,
                        output, permuted_output, int(bool(enable_pdl)), workspace,
                        _stream(stream))

    def forward(self, problem, hidden_states, gemm1_weights, gemm2_weights, *, method=1,
                logits=None, bias=None, topk_ids=None, topk_weights=None, topk_packed=None,
                n_group=1, topk_group=0, routed_scaling_factor=1.0, gemm1_bias=None,
                gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None, gemm1_clamp_limit=None,
                output=None, workspace=None, enable_pdl=True, stream=None):
        """One-shot forward with the default config (moe_forward). Allocates the workspace and
        the output when not given: numpy (uint16 bf16 bits, [T, H]) on the CPU, torch on the
        tensors' device when hidden_states is a torch tensor. Returns the output."""
        torch_mode = _is_torch(hidden_states)
        T, H = int(problem.num_tokens), int(problem.hidden_size)
        if workspace is None:
            cfg = self.default_config(problem)
            workspace = self.allocate_workspace(problem, cfg,
                                                like=hidden_states if torch_mode else None)
        ret = output
        if output is None:
            if torch_mode:
                import torch
                ret = output = _torch_empty((T, H), torch.bfloat16, hidden_states)
            else:
                import numpy as np
                ret = np.zeros((T, H), dtype=np.uint16)
                output = bf16(ret)
        _core.moe_b_forward(self._handle(), *problem._args(), int(method), logits, bias,
                            topk_ids, topk_weights, topk_packed, int(n_group), int(topk_group),
                            float(routed_scaling_factor), 1, hidden_states, gemm1_weights,
                            gemm2_weights, gemm1_bias, gemm2_bias, gemm1_alpha, gemm1_beta,
                            gemm1_clamp_limit, output, None, int(bool(enable_pdl)), workspace,
                            _stream(stream))
        return ret


    def autotune(self, problem, hidden_states, gemm1_weights, gemm2_weights, *, method=1,
                 logits=None, bias=None, topk_ids=None, topk_weights=None, topk_packed=None,
                 n_group=1, topk_group=0, routed_scaling_factor=1.0, gemm1_bias=None,
                 gemm2_bias=None, gemm1_alpha=None, gemm1_beta=None, gemm1_clamp_limit=None,
                 output=None, workspace=None, iterations=5, enable_pdl=True, stream=None):
        """Times every valid config (moe_runner_autotune: prepare + run, median of
        `iterations`) and returns [(config, microseconds)] fastest first. Allocates the output
        and a workspace large enough for every valid config when not given. Synchronises."""
        import numpy as np
        torch_mode = _is_torch(hidden_states)
        cfgs = self.valid_configs(problem)
        if workspace is None:
            n = max(self.workspace_size(problem, c) for c in cfgs)
            if torch_mode:
                import torch
                workspace = _torch_empty((max(n, 1),), torch.uint8, hidden_states)[:n]
            else:
                workspace = _aligned_host_bytes(n)
        if output is None:
            T, H = int(problem.num_tokens), int(problem.hidden_size)
            if torch_mode:
                import torch
                output = _torch_empty((T, H), torch.bfloat16, hidden_states)
            else:
                output = bf16(np.zeros((T, H), dtype=np.uint16))
        configs = np.zeros(len(cfgs), dtype=np.int32)
        times = np.zeros(len(cfgs), dtype=np.float32)
        n = _core.moe_b_autotune(self._handle(), *problem._args(), int(method), logits, bias,
                                 topk_ids, topk_weights, topk_packed, int(n_group),
                                 int(topk_group), float(routed_scaling_factor), 1,
                                 hidden_states, gemm1_weights, gemm2_weights, gemm1_bias,
                                 gemm2_bias, gemm1_alpha, gemm1_beta, gemm1_clamp_limit, output,
                                 None, int(bool(enable_pdl)), workspace, int(iterations),
                                 configs, times, _stream(stream))
        return [(int(configs[i]), float(times[i])) for i in range(n)]


def float_to_bf16_bits(a):
    """numpy float32 array -> uint16 bf16 bit patterns (round to nearest even)."""
    import numpy as np
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def bf16_bits_to_float(a):
    """uint16 bf16 bit patterns -> numpy float32 array."""
    import numpy as np
    return (np.asarray(a, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
