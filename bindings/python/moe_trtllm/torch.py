"""PyTorch custom ops over moe_trtllm.

Importing this module registers two operators (torch.library.custom_op, with fake
implementations for torch.compile / FakeTensor tracing):

* ``torch.ops.moe_trtllm.forward(hidden_states, gemm1_weights, gemm2_weights, router_logits,
  routing_bias, topk_ids, topk_weights, runner, num_experts, top_k, intermediate_size, method,
  n_group, topk_group, routed_scaling_factor, local_expert_offset, local_num_experts)``
  -> bf16 ``[T, H]``: routing (from logits, or from pre-routed ``topk_ids`` + ``topk_weights``),
  GEMM1, activation, GEMM2 and finalize with the default config.
* ``torch.ops.moe_trtllm.routing(router_logits, routing_bias, runner, top_k, hidden_size,
  intermediate_size, method, n_group, topk_group, routed_scaling_factor, local_expert_offset,
  local_num_experts)`` -> ``(topk_ids int32 [T, K], topk_weights bf16 [T, K])``; feed them to
  ``forward`` as pre-routed input.

Both run on the current stream (``torch.cuda.current_stream().cuda_stream``) with no host
synchronisation and allocate through torch (workspace, output), so they can be captured in a
CUDA graph. Tensors reach the library as DLTensors built from ``data_ptr()``, shape and strides:
nothing is copied. ``runner`` is the id of a :class:`moe_trtllm.Runner` registered with
:func:`register_runner` (ops take no Python objects); :class:`MoE` does that for you and holds
the prepared weights::

    import torch, moe_trtllm.torch as mt
    layer = mt.MoE(w1, w2, top_k=8)            # canonical bf16 W1 [E, 2I, H], W2 [E, H, I]
    y = layer(x, router_logits)                 # x bf16 [T, H], logits float32/bf16 [T, E]
    y = torch.compile(layer, fullgraph=True)(x, router_logits)
"""

import itertools
import threading
from typing import Optional, Tuple

import torch

import moe_trtllm as _moe

__all__ = ["MoE", "register_runner", "unregister_runner", "forward", "routing"]

_runners = {}
_runners_lock = threading.Lock()
_next_id = itertools.count(1)


def register_runner(runner):
    """Makes `runner` callable from the ops; returns its id (an int)."""
    with _runners_lock:
        rid = next(_next_id)
        _runners[rid] = runner
    return rid


def unregister_runner(rid):
    """Forgets a runner id (the runner itself is not closed)."""
    with _runners_lock:
        return _runners.pop(int(rid), None)


def _runner(rid):
    with _runners_lock:
        r = _runners.get(int(rid))
    if r is None:
        raise _moe.RunnerClosedError(_moe.STATUS_INVALID_ARGUMENT,
                                     f"moe_trtllm.torch: no runner registered with id {rid}")
    return r


def _stream(t):
    if t.device.type == "cuda":
        return torch.cuda.current_stream(t.device).cuda_stream
    return None


@torch.library.custom_op("moe_trtllm::forward", mutates_args=())
def forward(hidden_states: torch.Tensor, gemm1_weights: torch.Tensor,
            gemm2_weights: torch.Tensor, router_logits: Optional[torch.Tensor],
            routing_bias: Optional[torch.Tensor], topk_ids: Optional[torch.Tensor],
            topk_weights: Optional[torch.Tensor], runner: int, num_experts: int, top_k: int,
            intermediate_size: int, method: int = 1, n_group: int = 1, topk_group: int = 0,
            routed_scaling_factor: float = 1.0, local_expert_offset: int = 0,
            local_num_experts: int = 0) -> torch.Tensor:
    r = _runner(runner)
    if hidden_states.dim() != 2:
        raise _moe.InvalidArgumentError(
            _moe.STATUS_INVALID_ARGUMENT,
            f"hidden_states: expected 2 dimensions [T, H], given {hidden_states.dim()}")
    p = _moe.Problem(num_experts=num_experts, num_tokens=hidden_states.shape[0], top_k=top_k,
                     hidden_size=hidden_states.shape[1], intermediate_size=intermediate_size,
                     local_expert_offset=local_expert_offset,
                     local_num_experts=local_num_experts)
    return r.forward(p, hidden_states, gemm1_weights, gemm2_weights, method=method,
                     logits=router_logits, bias=routing_bias, topk_ids=topk_ids,
                     topk_weights=topk_weights, n_group=n_group, topk_group=topk_group,
                     routed_scaling_factor=routed_scaling_factor,
                     stream=_stream(hidden_states))


@forward.register_fake
def _forward_fake(hidden_states, gemm1_weights, gemm2_weights, router_logits, routing_bias,
                  topk_ids, topk_weights, runner, num_experts, top_k, intermediate_size,
                  method=1, n_group=1, topk_group=0, routed_scaling_factor=1.0,
                  local_expert_offset=0, local_num_experts=0):
    return hidden_states.new_empty(hidden_states.shape, dtype=torch.bfloat16)


@torch.library.custom_op("moe_trtllm::routing", mutates_args=())
def routing(router_logits: torch.Tensor, routing_bias: Optional[torch.Tensor], runner: int,
            top_k: int, hidden_size: int, intermediate_size: int, method: int = 1,
            n_group: int = 1, topk_group: int = 0, routed_scaling_factor: float = 1.0,
            local_expert_offset: int = 0,
            local_num_experts: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    r = _runner(runner)
    if router_logits.dim() != 2:
        raise _moe.InvalidArgumentError(
            _moe.STATUS_INVALID_ARGUMENT,
            f"router_logits: expected 2 dimensions [T, E], given {router_logits.dim()}")
    T, E = router_logits.shape
    p = _moe.Problem(num_experts=E, num_tokens=T, top_k=top_k, hidden_size=hidden_size,
                     intermediate_size=intermediate_size,
                     local_expert_offset=local_expert_offset,
                     local_num_experts=local_num_experts)
    cfg = r.default_config(p)
    ws = r.allocate_workspace(p, cfg, like=router_logits)
    plan = r.prepare_routing(p, cfg, ws, method=method, logits=router_logits, bias=routing_bias,
                             n_group=n_group, topk_group=topk_group,
                             routed_scaling_factor=routed_scaling_factor,
                             stream=_stream(router_logits))
    n = T * top_k
    # Views of the plan inside the workspace, copied out on the same stream (the workspace
    # goes back to the allocator when this returns).
    ids = plan.table(_moe.PLAN_TOPK_IDS)[:n].view(T, top_k).clone()
    w = plan.table(_moe.PLAN_EXPERT_WEIGHTS)[:n].view(T, top_k).clone()
    return ids, w


@routing.register_fake
def _routing_fake(router_logits, routing_bias, runner, top_k, hidden_size, intermediate_size,
                  method=1, n_group=1, topk_group=0, routed_scaling_factor=1.0,
                  local_expert_offset=0, local_num_experts=0):
    T = router_logits.shape[0]
    return (router_logits.new_empty((T, top_k), dtype=torch.int32),
            router_logits.new_empty((T, top_k), dtype=torch.bfloat16))


class MoE(torch.nn.Module):
    """A MoE layer on the moe_trtllm ops: its runner and its prepared weights.

    Args:
        w1: canonical GEMM1 weights, bf16 [E_l, 2I, H] (up rows then gate rows; [E_l, I, H]
            for ReLU2 / Identity), on the device the layer runs on (CPU or CUDA).
        w2: canonical GEMM2 weights, bf16 [E_l, H, I].
        top_k: experts per token.
        num_experts: global E (default E_l: no expert parallelism).
        activation, method, n_group, topk_group, routed_scaling_factor: as in moe_trtllm.
        local_expert_offset: first global expert held here (expert parallelism).
        routing_bias: optional bf16/float32 [E] (DeepSeekV3).
        num_threads: CPU backend worker threads (0 = one per core).

    Prepared weights are buffers (``gemm1_weights``, ``gemm2_weights``, uint8); ``close()``
    releases the runner (also on garbage collection).
    """

    def __init__(self, w1, w2, *, top_k, num_experts=None, activation=None, method=None,
                 n_group=1, topk_group=0, routed_scaling_factor=1.0, local_expert_offset=0,
                 routing_bias=None, num_threads=0):
        super().__init__()
        if w1.dim() != 3 or w2.dim() != 3:
            raise _moe.InvalidArgumentError(
                _moe.STATUS_INVALID_ARGUMENT,
                f"w1, w2: expected 3 dimensions, given {w1.dim()} and {w2.dim()}")
        activation = _moe.ACTIVATION_SWIGLU if activation is None else int(activation)
        el, h, i = int(w2.shape[0]), int(w2.shape[1]), int(w2.shape[2])
        dev = w1.device
        backend = _moe.BACKEND_CUDA if dev.type == "cuda" else _moe.BACKEND_CPU
        self.runner = _moe.Runner(backend=backend, device_id=dev.index or 0,
                                  activation=activation, num_threads=num_threads)
        self.runner_id = register_runner(self.runner)
        self.num_experts = int(num_experts) if num_experts is not None else el
        self.local_num_experts = el
        self.local_expert_offset = int(local_expert_offset)
        self.top_k = int(top_k)
        self.hidden_size = h
        self.intermediate_size = i
        self.method = _moe.ROUTING_RENORMALIZE if method is None else int(method)
        self.n_group = int(n_group)
        self.topk_group = int(topk_group)
        self.routed_scaling_factor = float(routed_scaling_factor)
        p = self._problem(1)
        stream = _stream(w1)
        prepared = []
        for which, w in ((_moe.WEIGHTS_GEMM1, w1), (_moe.WEIGHTS_GEMM2, w2)):
            buf = _moe._torch_aligned_bytes(self.runner.weights_prepared_size(p, which), dev)
            self.runner.prepare_weights(p, which, w, buf, stream=stream)
            prepared.append(buf)
        self.register_buffer("gemm1_weights", prepared[0])
        self.register_buffer("gemm2_weights", prepared[1])
        self.register_buffer("routing_bias", routing_bias)

    def _problem(self, num_tokens):
        return _moe.Problem(num_experts=self.num_experts, num_tokens=num_tokens,
                            top_k=self.top_k, hidden_size=self.hidden_size,
                            intermediate_size=self.intermediate_size,
                            local_expert_offset=self.local_expert_offset,
                            local_num_experts=self.local_num_experts)

    def forward(self, hidden_states, router_logits=None, *, topk_ids=None, topk_weights=None):
        """bf16 [T, H] output for bf16 hidden_states [T, H] and router_logits [T, E] (or
        pre-routed topk_ids int32 [T, K] + topk_weights bf16/float32 [T, K])."""
        return torch.ops.moe_trtllm.forward(
            hidden_states, self.gemm1_weights, self.gemm2_weights, router_logits,
            self.routing_bias, topk_ids, topk_weights, self.runner_id, self.num_experts,
            self.top_k, self.intermediate_size, self.method, self.n_group, self.topk_group,
            self.routed_scaling_factor, self.local_expert_offset, self.local_num_experts)

    def route(self, router_logits):
        """(topk_ids int32 [T, K], topk_weights bf16 [T, K]) of router_logits [T, E]."""
        return torch.ops.moe_trtllm.routing(
            router_logits, self.routing_bias, self.runner_id, self.top_k, self.hidden_size,
            self.intermediate_size, self.method, self.n_group, self.topk_group,
            self.routed_scaling_factor, self.local_expert_offset, self.local_num_experts)

    def close(self):
        """Releases the runner (idempotent); calls after it raise RunnerClosedError."""
        unregister_runner(self.runner_id)
        self.runner.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def extra_repr(self):
        return (f"experts={self.num_experts} (local {self.local_num_experts} from "
                f"{self.local_expert_offset}), top_k={self.top_k}, hidden={self.hidden_size}, "
                f"intermediate={self.intermediate_size}, method={self.method}")
