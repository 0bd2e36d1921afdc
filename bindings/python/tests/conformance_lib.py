"""The shared conformance suite (docs/conformance.md), run through the Python binding."""

import os

import numpy as np

import moe_trtllm as moe

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CASES = os.path.normpath(os.path.join(HERE, "..", "..", "..", "tests", "conformance",
                                              "cases.txt"))
KEYS = {"name", "method", "input", "logits_dtype", "T", "E", "K", "H", "I", "offset", "local",
        "act", "tile", "cluster", "n_group", "topk_group", "scale", "bias", "gemm_bias",
        "swiglu_params", "finalize", "seed", "plan", "output", "status", "fp8", "hidden",
        "weights", "s1", "s2", "layout", "counts", "capacity", "mxfp4", "w1_order",
        "gemm_bias_dtype", "mx_scales"}
MX_KEYS = {"w1_order", "gemm_bias_dtype", "mx_scales"}
INT_KEYS = {"method", "T", "E", "K", "H", "I", "offset", "local", "act", "tile", "cluster",
            "n_group", "topk_group", "bias", "gemm_bias", "swiglu_params", "finalize", "seed",
            "capacity"}
ROUTED_KEYS = {"method", "input", "K"}
GROUPED_KEYS = {"counts"}
REQUIRED = {"name", "T", "E", "H", "I", "offset", "local", "act", "tile", "cluster", "seed"}
#: bf16 bits pre-filled into a grouped case's output: rows past the counts must keep them.
GROUPED_SENTINEL = 0xFFFF


def cases_path():
    return os.environ.get("MOE_CONFORMANCE_CASES") or DEFAULT_CASES


def parse_cases(path=None):
    """Parse the case file: a list of dicts (int fields converted)."""
    cases = []
    with open(path or cases_path(), encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            c = {}
            for field in line.split(" "):
                if not field:
                    continue
                k, sep, v = field.partition("=")
                if not sep or k not in KEYS:
                    raise ValueError(f"{path}:{lineno}: bad field {field!r}")
                c[k] = int(v) if k in INT_KEYS else v
            missing = REQUIRED - c.keys()
            missing |= (GROUPED_KEYS if "layout" in c else ROUTED_KEYS) - c.keys()
            if missing:
                raise ValueError(f"{path}:{lineno}: missing keys {sorted(missing)}")
            if "layout" in c:
                _check_grouped(c, f"{path}:{lineno}")
            elif "counts" in c or "capacity" in c:
                raise ValueError(f"{path}:{lineno}: counts= and capacity= need layout=")
            c.setdefault("status", "ok")
            c.setdefault("fp8", "none")
            c.setdefault("hidden", "bf16")
            c.setdefault("weights", "bf16")
            if c["fp8"] not in ("none", "tensor", "block") or \
                    c["hidden"] not in ("bf16", "e4m3") or c["weights"] not in ("bf16", "e4m3"):
                raise ValueError(f"{path}:{lineno}: bad fp8/hidden/weights value")
            if c["fp8"] == "none" and (c["hidden"] != "bf16" or c["weights"] != "bf16"):
                raise ValueError(f"{path}:{lineno}: e4m3 inputs need fp8=tensor|block")
            _check_mxfp4(c, f"{path}:{lineno}")
            if (c["fp8"] == "tensor" or c["mxfp4"] == "w4a8") != ("s1" in c) or \
                    ("s1" in c) != ("s2" in c):
                raise ValueError(f"{path}:{lineno}: s1 and s2 go with fp8=tensor or mxfp4=w4a8")
            for k in ("s1", "s2"):  # fp32 values written exactly as decimals
                if k in c:
                    v = float(c[k])
                    if float(np.float32(v)) != v or not v > 0:
                        raise ValueError(f"{path}:{lineno}: {k}={c[k]} is not an exact fp32")
                    c[k] = np.float32(v)
            c["_line"] = lineno
            cases.append(c)
    return cases


def _check_mxfp4(c, where):
    """MXFP4 keys (docs/conformance.md "MXFP4 cases"): defaults and their combinations."""
    has_mx, mx_keys = "mxfp4" in c, MX_KEYS & c.keys()
    c.setdefault("mxfp4", "none")
    c.setdefault("w1_order", "canonical")
    c.setdefault("gemm_bias_dtype", "f32")
    c.setdefault("mx_scales", "given")
    gated = c["act"] in (moe.ACTIVATION_SWIGLU, moe.ACTIVATION_GEGLU)
    if c["mxfp4"] not in ("none", "w4a16", "w4a8") or \
            c["w1_order"] not in ("canonical", "interleaved") or \
            c["gemm_bias_dtype"] not in ("f32", "bf16") or \
            c["mx_scales"] not in ("given", "missing", "misshaped") or \
            (has_mx and c["fp8"] != "none") or (mx_keys and not has_mx) or \
            (c["w1_order"] == "interleaved" and not gated) or \
            c.get("swiglu_params", 0) not in (0, 1, 2):
        raise ValueError(f"{where}: bad mxfp4/w1_order/gemm_bias_dtype/mx_scales/swiglu_params")


def _check_grouped(c, where):
    """A grouped case (docs/conformance.md "Grouped cases"): converts layout and counts."""
    layouts = {"contiguous": moe.LAYOUT_CONTIGUOUS, "masked": moe.LAYOUT_MASKED}
    if c["layout"] not in layouts:
        raise ValueError(f"{where}: bad layout {c['layout']!r}")
    c["layout"] = layouts[c["layout"]]
    try:
        c["counts"] = [int(x) for x in c["counts"].split(",")]
    except ValueError:
        raise ValueError(f"{where}: counts= takes comma-separated integers") from None
    if len(c["counts"]) != c["local"] or min(c["counts"]) < 0:
        raise ValueError(f"{where}: counts= needs one value >= 0 per local expert")
    if {"method", "input", "logits_dtype", "K", "mxfp4", "plan"} & c.keys():
        raise ValueError(f"{where}: a grouped case takes no routing, mxfp4 or plan keys")
    if c["layout"] == moe.LAYOUT_MASKED:
        if "capacity" not in c or c["T"] != c["local"] * c["capacity"]:
            raise ValueError(f"{where}: layout=masked needs capacity= with T = local*capacity")
    elif c.get("capacity", 0) != 0:
        raise ValueError(f"{where}: layout=contiguous takes no capacity")
    c.setdefault("capacity", 0)
    c["K"] = 1  # the grouped problem's top_k (unused by the grouped path)


# -- the portable generator -----------------------------------------------------------------
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def _splitmix(seed, stream, n):
    """The first n outputs of stream `stream` as a numpy uint64 array."""
    base = np.uint64((seed ^ ((stream * GAMMA) & M64)) & M64)
    with np.errstate(over="ignore"):
        z = base + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class _Seq:
    """Sequential next() over a stream (for the rejection-sampled ids)."""

    def __init__(self, seed, stream):
        self.s = (seed ^ ((stream * GAMMA) & M64)) & M64

    def next(self):
        self.s = (self.s + GAMMA) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def gen_bf16(seed, stream, shape, scale):
    """bf16 bit patterns (uint16) of m * 2^-scale, m = (next >> 56) - 128."""
    n = int(np.prod(shape, dtype=np.int64))
    m = (_splitmix(seed, stream, n) >> np.uint64(56)).astype(np.int64) - 128
    f = (m.astype(np.float32) * np.float32(2.0 ** -scale)).astype(np.float32)
    return (f.view(np.uint32) >> 16).astype(np.uint16).reshape(shape)


def gen_f32(seed, stream, shape, scale):
    """float32 values m * 2^-scale, m = (next >> 40) - 2^23."""
    n = int(np.prod(shape, dtype=np.int64))
    m = (_splitmix(seed, stream, n) >> np.uint64(40)).astype(np.int64) - (1 << 23)
    return (m.astype(np.float64) * 2.0 ** -scale).astype(np.float32).reshape(shape)


def gen_e4m3(seed, stream, shape):
    """e4m3 codes (next >> 56) & 0xBF as a float8_e4m3fn array (never NaN, |v| <= 1.875)."""
    n = int(np.prod(shape, dtype=np.int64))
    q = (_splitmix(seed, stream, n) >> np.uint64(56)) & np.uint64(0xBF)
    return q.astype(np.uint8).view(moe.float8_e4m3fn).reshape(shape)


def gen_fp8_scale(seed, stream, shape, scale):
    """fp32 scales (1 + (next >> 60)) * 2^-scale."""
    n = int(np.prod(shape, dtype=np.int64))
    m = (_splitmix(seed, stream, n) >> np.uint64(60)).astype(np.float32) + np.float32(1)
    return (m * np.float32(2.0 ** -scale)).astype(np.float32).reshape(shape)


def gen_bytes(seed, stream, shape):
    """MXFP4 packed e2m1 pairs: bytes next >> 56, as uint8."""
    n = int(np.prod(shape, dtype=np.int64))
    return (_splitmix(seed, stream, n) >> np.uint64(56)).astype(np.uint8).reshape(shape)


def gen_ue8m0(seed, stream, shape):
    """MXFP4 ue8m0 scale codes 118 + (next >> 61), as uint8."""
    n = int(np.prod(shape, dtype=np.int64))
    return (np.uint64(118) + (_splitmix(seed, stream, n) >> np.uint64(61))).astype(
        np.uint8).reshape(shape)


def unpack_e2m1(packed):
    """uint8 [..., C/2] -> ml_dtypes float4_e2m1fn [..., C] (one value per byte), the numpy
    form moe.pack_e2m1 packs back (prepare_weights_scaled does it for such arrays)."""
    out = np.empty(packed.shape[:-1] + (2 * packed.shape[-1],), dtype=np.uint8)
    out[..., 0::2] = packed & 0xF
    out[..., 1::2] = packed >> 4
    return out.view(moe.float4_e2m1fn)


def gen_swiglu(seed, el):
    v = _splitmix(seed, 10, 3 * el).reshape(el, 3) >> np.uint64(60)
    v = v.astype(np.float32)
    return (1 + v[:, 0] / 16).astype(np.float32), (v[:, 1] / 16).astype(np.float32), \
        (4 + v[:, 2] / 4).astype(np.float32)


def gen_ids(seed, T, K, E):
    g = _Seq(seed, 6)
    ids = np.zeros((T, K), dtype=np.int32)
    for t in range(T):
        for k in range(K):
            e = g.next() % E
            while e in ids[t, :k]:
                e = g.next() % E
            ids[t, k] = e
    return ids


# -- digests -----------------------------------------------------------------------------------
def fnv1a(chunks):
    """FNV-1a 64 over the little-endian bytes of the given numpy arrays, as 16 hex digits
    (bfloat16 arrays: their bit patterns)."""
    h = 0xcbf29ce484222325
    for a in chunks:
        if a.dtype == np.dtype(moe.bfloat16):
            a = a.view(np.uint16)
        for b in np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes():
            h = ((h ^ b) * 0x100000001b3) & M64
    return "%016x" % h


def plan_tables(plan):
    n = int(plan.read(moe.PLAN_NUM_CTAS)[0])
    p = int(plan.read(moe.PLAN_PERMUTED_SIZE)[0])
    t = {
        "ids": plan.read(moe.PLAN_TOPK_IDS),
        "w": plan.read(moe.PLAN_EXPERT_WEIGHTS),
        "e2p": plan.read(moe.PLAN_EXPANDED_TO_PERMUTED),
        "p2t": plan.read(moe.PLAN_PERMUTED_TO_TOKEN)[:p],
        "p2e": plan.read(moe.PLAN_PERMUTED_TO_EXPANDED)[:p],
        "cb": plan.read(moe.PLAN_CTA_TO_BATCH)[:n],
        "cm": plan.read(moe.PLAN_CTA_TO_MN_LIMIT)[:n],
        "N": n, "P": p,
    }
    return t


def plan_digest(t):
    return fnv1a([t["ids"].astype(np.int32), t["w"].view(np.uint16),
                  t["e2p"].astype(np.int32), t["p2t"].astype(np.int32),
                  t["p2e"].astype(np.int32), t["cb"].astype(np.int32), t["cm"].astype(np.int32),
                  np.array([t["N"], t["P"]], dtype=np.int32)])


def output_rows(case, t, out):
    """The digested output: [T, H] bf16 (finalize) or the real permuted rows."""
    if case["finalize"]:
        return out
    rows = [r for r in range(t["P"]) if t["p2t"][r] >= 0]
    return out[rows] if rows else out[:0]


# -- running one case --------------------------------------------------------------------------
class Inputs:
    """Host (numpy) inputs of a case."""

    def __init__(self, c):
        T, E, K, H, I = c["T"], c["E"], c["K"], c["H"], c["I"]
        el = c.get("local", 0) or E
        f = 2 if c["act"] in (moe.ACTIVATION_SWIGLU, moe.ACTIVATION_GEGLU) else 1
        seed = c["seed"]
        self.logits = self.bias = self.ids = self.weights = self.packed = None
        inp = c.get("input", "logits")
        if inp == "logits":
            if c.get("logits_dtype", "f32") == "bf16":
                self.logits = moe.bf16(gen_bf16(seed, 1, (T, E), 5))
            else:
                self.logits = gen_f32(seed, 1, (T, E), 21)
        else:
            ids = gen_ids(seed, T, K, E)
            w = gen_bf16(seed, 7, (T, K), 7)
            if inp == "ids":
                self.ids, self.weights = ids, moe.bf16(w)
            elif inp == "packed":
                self.packed = ((ids.astype(np.int64) << 16) | w.astype(np.int64)).astype(
                    np.uint32).view(np.int32)
            else:
                raise ValueError(f"unknown input {inp!r}")
        if c.get("bias", 0):
            self.bias = moe.bf16(gen_bf16(seed, 2, (E,), 7))
        self.hidden = gen_bf16(seed, 3, (T, H), 6)
        self.w1 = gen_bf16(seed, 4, (el, f * I, H), 8)
        self.w2 = gen_bf16(seed, 5, (el, H, I), 8)
        self.b1 = self.b2 = self.alpha = self.beta = self.clamp = None
        if c.get("gemm_bias", 0) and c.get("gemm_bias_dtype", "f32") == "bf16":
            self.b1 = moe.bf16(gen_bf16(seed, 8, (el, f * I), 10))
            self.b2 = moe.bf16(gen_bf16(seed, 9, (el, H), 10))
        elif c.get("gemm_bias", 0):
            self.b1 = gen_f32(seed, 8, (el, f * I), 26)
            self.b2 = gen_f32(seed, 9, (el, H), 26)
        if c.get("swiglu_params", 0) == 2:  # gpt-oss's constants
            self.alpha, self.beta, self.clamp = (np.full(el, v, dtype=np.float32)
                                                 for v in (1.702, 1.0, 7.0))
        elif c.get("swiglu_params", 0):
            self.alpha, self.beta, self.clamp = gen_swiglu(seed, el)
        # FP8 (docs/conformance.md "FP8 cases"): e4m3 inputs and their scales
        fp8 = c.get("fp8", "none")
        block = fp8 == "block"
        self.hidden_q = self.hidden_scale = self.w1q = self.w2q = self.w1s = self.w2s = None
        self.s1 = self.s2 = None
        # MXFP4 (docs/conformance.md "MXFP4 cases"): packed e2m1 bytes and ue8m0 scales
        self.mx = None
        if c.get("mxfp4", "none") != "none":
            self.mx = [(gen_bytes(seed, 4, (el, f * I, H // 2)),
                        gen_ue8m0(seed, 12, (el, f * I, H // 32))),
                       (gen_bytes(seed, 5, (el, H, I // 2)), gen_ue8m0(seed, 13, (el, H, I // 32)))]
        if fp8 == "tensor" or c.get("mxfp4") == "w4a8":
            self.s1 = np.array([c["s1"]], dtype=np.float32)
            self.s2 = np.array([c["s2"]], dtype=np.float32)
        if c.get("hidden", "bf16") == "e4m3":
            self.hidden_q = gen_e4m3(seed, 3, (T, H))
            if block:
                self.hidden_scale = gen_fp8_scale(seed, 11, (T, H // 128), 4)
        if c.get("weights", "bf16") == "e4m3":
            self.w1q = gen_e4m3(seed, 4, (el, f * I, H))
            self.w2q = gen_e4m3(seed, 5, (el, H, I))
            s1shape = (el, f * I // 128, H // 128) if block else (el,)
            s2shape = (el, H // 128, I // 128) if block else (el,)
            self.w1s = gen_fp8_scale(seed, 12, s1shape, 6)
            self.w2s = gen_fp8_scale(seed, 13, s2shape, 6)


def problem_of(c):
    return moe.Problem(num_experts=c["E"], num_tokens=c["T"], top_k=c["K"], hidden_size=c["H"],
                       intermediate_size=c["I"], local_expert_offset=c.get("offset", 0),
                       local_num_experts=c.get("local", 0))


def prepared_inputs(r, p, seed):
    """Inputs of problem p (logits, routing method 1, r's activation) drawn from seed, and
    their W1 and W2 prepared on r: (inputs, w1, w2)."""
    case = dict(T=p.num_tokens, E=p.num_experts, K=p.top_k, H=p.hidden_size,
                I=p.intermediate_size, local=p.local_num_experts, act=r.activation, seed=seed,
                method=1)
    x = Inputs(case)
    w1 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM1, x.w1)
    w2 = r.prepare_weights_host(p, moe.WEIGHTS_GEMM2, x.w2)
    return x, w1, w2


def choose_config(r, p, c):
    """The first valid config with the case's tile and cluster size."""
    for cfg in r.valid_configs(p):
        info = r.describe_config(cfg)
        if info.tile == c["tile"] and info.cluster_size == c["cluster"]:
            return cfg
    raise moe.InvalidConfigError(moe.STATUS_INVALID_CONFIG,
                                 f"no valid config with tile={c['tile']} "
                                 f"cluster={c['cluster']}")


class Device:
    """Where a case runs: host numpy, or CUDA through torch."""

    def __init__(self, backend):
        self.backend = backend
        if backend == moe.BACKEND_CUDA:
            import torch
            self.torch = torch
            self.stream = torch.cuda.current_stream().cuda_stream

    def put(self, a, bf16=False):
        if a is None:
            return None
        if self.backend == moe.BACKEND_CPU:
            return a
        torch = self.torch
        if isinstance(a, moe.View):
            a, bf16 = a.base, True
        a = np.ascontiguousarray(a)
        fp8 = a.dtype == np.dtype(moe.float8_e4m3fn)
        e8m0 = moe.float8_e8m0fnu is not None and a.dtype == np.dtype(moe.float8_e8m0fnu)
        if fp8 or e8m0:  # torch has no numpy float8 import: move the codes, view them
            a = a.view(np.uint8)
        if a.dtype == np.uint16:  # int16 is the 16-bit type torch fully supports
            a = a.view(np.int16)
        t = torch.from_numpy(a).cuda()
        if fp8:
            return t.view(torch.float8_e4m3fn)
        if e8m0:
            return t.view(torch.float8_e8m0fnu)
        return t.view(torch.bfloat16) if bf16 else t

    def sentinel(self, shape):
        """A bf16 tensor filled with GROUPED_SENTINEL."""
        bits = np.full(shape, GROUPED_SENTINEL, dtype=np.uint16)
        return self.put(moe.bf16(bits))

    def zeros(self, shape, dtype):
        if self.backend == moe.BACKEND_CPU:
            if dtype == "u8":
                n = int(np.prod(shape))
                ws = moe._aligned_host_bytes(n)
                ws[:] = 0
                return ws
            return np.zeros(shape, dtype=np.uint16)
        torch = self.torch
        return torch.zeros(shape, dtype=torch.uint8 if dtype == "u8" else torch.bfloat16,
                           device="cuda")

    def host_bf16_bits(self, t):
        if isinstance(t, moe.View):
            t = t.base
        if self.backend == moe.BACKEND_CPU:
            return t
        self.torch.cuda.synchronize()
        return t.view(self.torch.int16).cpu().numpy().view(np.uint16)

    def wrap_out(self, t):
        return moe.bf16(t) if self.backend == moe.BACKEND_CPU else t


def _fp8_kind(c):
    """The runner options of the case's FP8 scaling mode (none: a BF16 runner)."""
    fp8 = {"none": None, "tensor": moe.SCALING_PER_TENSOR,
           "block": moe.SCALING_BLOCK}[c.get("fp8", "none")]
    return {} if fp8 is None else dict(dtype=moe.DTYPE_FP8_E4M3, scaling_mode=fp8)


def _prepared_weights(r, p, c, x, dev, stream):
    """W1 and W2 prepared on r: MXFP4, e4m3 with their scales, or bf16, as the case gives them."""
    w1 = dev.zeros((r.weights_prepared_size(p, moe.WEIGHTS_GEMM1),), "u8")
    w2 = dev.zeros((r.weights_prepared_size(p, moe.WEIGHTS_GEMM2),), "u8")
    if x.mx is not None:
        _prepare_mxfp4(r, p, c, x, dev, (w1, w2), stream)
    elif x.w1q is not None:  # e4m3 weights with their scales
        r.prepare_weights_scaled(p, moe.WEIGHTS_GEMM1, dev.put(x.w1q), dev.put(x.w1s), w1,
                                 stream=stream)
        r.prepare_weights_scaled(p, moe.WEIGHTS_GEMM2, dev.put(x.w2q), dev.put(x.w2s), w2,
                                 stream=stream)
    else:
        r.prepare_weights(p, moe.WEIGHTS_GEMM1, dev.put(moe.bf16(x.w1)), w1, stream=stream)
        r.prepare_weights(p, moe.WEIGHTS_GEMM2, dev.put(moe.bf16(x.w2)), w2, stream=stream)
    return w1, w2


def run_case(c, backend=moe.BACKEND_CPU):
    """Runs a case; returns (plan tables, digested output rows as uint16 numpy).

    Raises MoeError on a library failure."""
    dev = Device(backend)
    stream = dev.stream if backend == moe.BACKEND_CUDA else None
    x = Inputs(c)
    p = problem_of(c)
    kind = _fp8_kind(c)
    mx = c.get("mxfp4", "none")
    if mx != "none":  # separate activation and weight dtypes
        kind = dict(activation_dtype=moe.DTYPE_BF16 if mx == "w4a16" else moe.DTYPE_FP8_E4M3,
                    weight_dtype=moe.DTYPE_MXFP4, scaling_mode=moe.SCALING_MX)
    with moe.Runner(backend=backend, activation=c["act"], num_threads=0, **kind) as r:
        cfg = choose_config(r, p, c)
        ws = dev.zeros((r.workspace_size(p, cfg),), "u8")
        w1, w2 = _prepared_weights(r, p, c, x, dev, stream)
        plan = r.prepare_routing(
            p, cfg, ws, method=c["method"], logits=dev.put(x.logits), bias=dev.put(x.bias),
            topk_ids=dev.put(x.ids), topk_weights=dev.put(x.weights),
            topk_packed=dev.put(x.packed), n_group=c.get("n_group", 1),
            topk_group=c.get("topk_group", 0), routed_scaling_factor=float(c.get("scale", "1")),
            stream=stream)
        assert plan.config == cfg and plan.tile == c["tile"] and plan.cluster_size == c["cluster"]
        if c["finalize"]:
            out = dev.zeros((c["T"], c["H"]), "bf16")
            kw = dict(output=dev.wrap_out(out))
        else:
            out = dev.zeros((plan.max_padded_rows, c["H"]), "bf16")
            kw = dict(permuted_output=dev.wrap_out(out))
        hidden = dev.put(x.hidden_q if x.hidden_q is not None else moe.bf16(x.hidden))
        r.run(p, cfg, plan, ws, hidden_states=hidden, gemm1_weights=w1,
              gemm2_weights=w2, do_finalize=bool(c["finalize"]), gemm1_bias=dev.put(x.b1),
              gemm2_bias=dev.put(x.b2), gemm1_alpha=dev.put(x.alpha),
              gemm1_beta=dev.put(x.beta), gemm1_clamp_limit=dev.put(x.clamp),
              hidden_states_scale=dev.put(x.hidden_scale), gemm1_input_scale=dev.put(x.s1),
              gemm2_input_scale=dev.put(x.s2), stream=stream, **kw)
        t = plan_tables(plan)
        return t, output_rows(c, t, dev.host_bf16_bits(out))


def _prepare_mxfp4(r, p, c, x, dev, prepared, stream):
    """MXFP4 weights through prepare_weights_scaled, in the binding's native types: on the CPU
    W1 as an ml_dtypes float4_e2m1fn array (one value per byte, packed by the binding) and W2
    as uint8 pairs, the scales as ml_dtypes float8_e8m0fnu; on CUDA torch.float4_e2m1fn_x2 and
    torch.float8_e8m0fnu (uint8 where this numpy/torch lacks them)."""
    whiches = (moe.WEIGHTS_GEMM1_GATE_UP_INTERLEAVED if c["w1_order"] == "interleaved"
               else moe.WEIGHTS_GEMM1, moe.WEIGHTS_GEMM2)
    for i, ((q, sc), which, out) in enumerate(zip(x.mx, whiches, prepared)):
        if c["mx_scales"] == "missing":
            sc = None
        elif c["mx_scales"] == "misshaped":
            sc = sc.reshape(sc.shape[0], -1)
        if sc is not None and moe.float8_e8m0fnu is not None:
            sc = sc.view(moe.float8_e8m0fnu)
        if dev.backend == moe.BACKEND_CPU:
            if i == 0 and moe.float4_e2m1fn is not None:
                q = unpack_e2m1(q)
            r.prepare_weights_scaled(p, which, q, sc, out, stream=stream)
            continue
        qt = dev.put(q)
        if hasattr(dev.torch, "float4_e2m1fn_x2"):
            qt = qt.view(dev.torch.float4_e2m1fn_x2)
        r.prepare_weights_scaled(p, which, qt, dev.put(sc), out, stream=stream)


def run_any(c, backend=moe.BACKEND_CPU):
    """Runs a routed or grouped case: (plan tables, None for a grouped case; the output rows
    digested (routed) or the whole output (grouped); failed in-case checks)."""
    if "layout" in c:
        out, checks = run_grouped_case(c, backend)
        return None, out, checks
    t, out = run_case(c, backend)
    return t, out, []


def run_error_case(c, backend=moe.BACKEND_CPU):
    """An error case: returns the MoeError raised by config selection, prepare or the run (or
    None)."""
    try:
        run_any(c, backend)
    except moe.MoeError as e:
        return e
    return None


# -- grouped cases -------------------------------------------------------------------------------
def grouped_rows(c):
    """Output rows of the valid rows, in order (local experts ascending)."""
    rows = []
    start = 0
    for e, n in enumerate(c["counts"]):
        first = e * c["capacity"] if c["layout"] == moe.LAYOUT_MASKED else start
        rows.extend(range(first, first + n))
        start += n
    return rows


def run_grouped_case(c, backend=moe.BACKEND_CPU):
    """Runs a grouped case: moe_runner_run_grouped on the case's layout and counts with the
    output pre-filled with GROUPED_SENTINEL. Returns (the whole output as uint16 [T, H],
    failed in-case checks): rows past the counts keep the sentinel, and each valid row equals
    the unweighted row moe_runner_run (pre-routed ids, K = 1, do_finalize = 0) computes for it.
    Raises MoeError on a library failure."""
    dev = Device(backend)
    stream = dev.stream if backend == moe.BACKEND_CUDA else None
    x = Inputs(c)
    p = problem_of(c)
    T, H, el = c["T"], c["H"], c["local"]
    shape = (el, c["capacity"], H) if c["layout"] == moe.LAYOUT_MASKED else (T, H)
    kind = _fp8_kind(c)
    # FP8 (docs/conformance.md "Grouped FP8 cases"): bf16 or e4m3 [T, H] hidden states (BLOCK
    # e4m3: [T, H/128] scales, row e * capacity + i for MASKED), s1 / s2 in PER_TENSOR
    hidden, as_hidden = ((x.hidden_q, lambda a: a) if x.hidden_q is not None
                         else (x.hidden, moe.bf16))
    with moe.Runner(backend=backend, activation=c["act"], **kind) as r:
        cfg = choose_config(r, p, c)
        w1, w2 = _prepared_weights(r, p, c, x, dev, stream)
        experts = dict(gemm1_weights=w1, gemm2_weights=w2, gemm1_bias=dev.put(x.b1),
                       gemm2_bias=dev.put(x.b2), gemm1_alpha=dev.put(x.alpha),
                       gemm1_beta=dev.put(x.beta), gemm1_clamp_limit=dev.put(x.clamp),
                       gemm1_input_scale=dev.put(x.s1), gemm2_input_scale=dev.put(x.s2))
        out = dev.sentinel(shape)
        ws = dev.zeros((r.grouped_workspace_size(p, cfg),), "u8")
        r.run_grouped(p, cfg, ws, layout=c["layout"], capacity=c["capacity"],
                      hidden_states=dev.put(as_hidden(hidden.reshape(shape))),
                      hidden_states_scale=dev.put(x.hidden_scale),
                      expert_counts=dev.put(np.array(c["counts"], dtype=np.int32)),
                      output=out, stream=stream, **experts)
        got = dev.host_bf16_bits(out).reshape(T, H)
        checks = []
        rows = grouped_rows(c)
        past = np.ones(T, dtype=bool)
        past[rows] = False
        if np.any(got[past] != GROUPED_SENTINEL):
            checks.append("rows past the counts were written")
        # the cross-check: the same rows through routing (ids = their experts) + run
        n = len(rows)
        pr = moe.Problem(num_experts=c["E"], num_tokens=n, top_k=1, hidden_size=H,
                         intermediate_size=c["I"], local_expert_offset=c["offset"],
                         local_num_experts=el)
        ids = np.repeat(np.arange(el, dtype=np.int32) + c["offset"], c["counts"]).reshape(n, 1)
        ones = np.full((n, 1), 0x3F80, dtype=np.uint16)
        cfg2 = choose_config(r, pr, c)
        ws2 = dev.zeros((r.workspace_size(pr, cfg2),), "u8")
        plan = r.prepare_routing(pr, cfg2, ws2, method=moe.ROUTING_TOPK, topk_ids=dev.put(ids),
                                 topk_weights=dev.put(moe.bf16(ones)), stream=stream)
        perm = dev.zeros((plan.max_padded_rows, H), "bf16")
        r.run(pr, cfg2, plan, ws2, hidden_states=dev.put(as_hidden(hidden[rows])),
              hidden_states_scale=(None if x.hidden_scale is None
                                   else dev.put(x.hidden_scale[rows])),
              permuted_output=dev.wrap_out(perm), do_finalize=False, stream=stream, **experts)
        e2p = plan.read(moe.PLAN_EXPANDED_TO_PERMUTED)
        perm = dev.host_bf16_bits(perm)
        for t, row in enumerate(rows):
            if e2p[t] < 0 or not np.array_equal(perm[e2p[t]], got[row]):
                checks.append(f"output row {row} differs from moe_runner_run's unweighted row "
                              f"(slot {t})")
                break
        return got, checks
