"""A Runner shared by threads (CPU backend): close() while calls are in flight waits for them,
and calls after it raise RunnerClosedError, never touching the freed handle."""

import threading
import time

import numpy as np
import pytest

import moe_trtllm as moe
import conformance_lib as cl

# Large enough that one forward takes milliseconds on one CPU thread.
P = moe.Problem(num_experts=8, num_tokens=128, top_k=2, hidden_size=256, intermediate_size=128)


def _inputs(r, seed=5):
    return cl.prepared_inputs(r, P, seed)


class _Entered:
    """Logits that signal when the library starts reading the call's arguments."""

    def __init__(self, a, event):
        self.a, self.event = a, event

    def __dlpack__(self, *args, **kwargs):
        self.event.set()
        return self.a.__dlpack__(*args, **kwargs)


def test_close_waits_for_a_call_in_flight():
    r = moe.Runner(backend=moe.BACKEND_CPU, num_threads=1)
    x, w1, w2 = _inputs(r)
    ref = r.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits)
    entered = threading.Event()
    done = {}

    def call():
        try:
            done["out"] = r.forward(P, moe.bf16(x.hidden), w1, w2,
                                    logits=_Entered(x.logits, entered))
        except Exception as e:  # noqa: BLE001 - reported below
            done["error"] = e
        done["call_end"] = time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    assert entered.wait(30)
    r.close()  # must not free the runner under the running call
    close_end = time.monotonic()
    t.join(60)
    assert not t.is_alive()
    assert "error" not in done, done.get("error")
    assert done["call_end"] <= close_end, "close() returned while a call was in flight"
    assert np.array_equal(done["out"].view(np.uint16), ref.view(np.uint16))
    with pytest.raises(moe.RunnerClosedError) as ei:
        r.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits)
    assert "closed" in ei.value.message and ei.value.status == moe.STATUS_INVALID_ARGUMENT
    assert r.closed


def test_many_threads_and_concurrent_closes():
    """4 threads loop over forward (and a prepare + plan read) on one runner while two others
    close it: every call returns the right output or RunnerClosedError."""
    r = moe.Runner(backend=moe.BACKEND_CPU, num_threads=1)
    x, w1, w2 = _inputs(r)
    ref = r.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits).view(np.uint16)
    cfg = r.default_config(P)
    ref_ids = r.prepare_routing(P, cfg, r.allocate_workspace(P, cfg),
                                logits=x.logits).read(moe.PLAN_TOPK_IDS)
    start = threading.Barrier(6)
    stats = {"ok": 0, "closed": 0}
    errors = []
    lock = threading.Lock()

    def worker(i):
        start.wait()
        while True:
            try:
                if i % 2:
                    out = r.forward(P, moe.bf16(x.hidden), w1, w2, logits=x.logits)
                    good = np.array_equal(out.view(np.uint16), ref)
                else:
                    ws = moe._aligned_host_bytes(r.workspace_size(P, cfg))
                    plan = r.prepare_routing(P, cfg, ws, logits=x.logits)
                    good = np.array_equal(plan.read(moe.PLAN_TOPK_IDS), ref_ids)
            except moe.RunnerClosedError:
                with lock:
                    stats["closed"] += 1
                return
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return
            with lock:
                stats["ok"] += 1
                if not good:
                    errors.append(AssertionError(f"thread {i}: wrong result"))

    def closer():
        start.wait()
        time.sleep(0.05)
        r.close()

    th = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    th += [threading.Thread(target=closer) for _ in range(2)]
    for t in th:
        t.start()
    for t in th:
        t.join(120)
    assert not any(t.is_alive() for t in th)
    assert not errors, errors
    assert stats["closed"] == 4 and stats["ok"] > 0, stats
    assert r.closed


def test_close_from_inside_a_call_is_an_error_not_a_deadlock():
    r = moe.Runner(backend=moe.BACKEND_CPU, num_threads=1)
    x, w1, w2 = _inputs(r)
    seen = []

    class ClosesRunner:
        def __dlpack__(self, *args, **kwargs):
            try:
                r.close()
            except RuntimeError as e:
                seen.append(e)
            return x.logits.__dlpack__(*args, **kwargs)

    out = r.forward(P, moe.bf16(x.hidden), w1, w2, logits=ClosesRunner())
    assert seen and "wait for itself" in str(seen[0])
    assert out.shape == (P.num_tokens, P.hidden_size) and not r.closed
    r.close()
    assert r.closed
