#!/usr/bin/env python3
"""Same-run A/B of two moe-bench builds on one card.

Runs `A --json --preset P` and `B --json --preset P` alternately, preset by preset, for
--rounds rounds (A first in odd rounds, B first in even ones, so drift in clocks or
temperature does not favour one side), and prints per cell the fastest time of each side and
B / A. Cards and their clocks drift: only a same-run comparison says that a change is faster.

    bench/ab.py --a build-base/bench/moe-bench --b build-gpu/bench/moe-bench [--rounds 2]
               [--presets deepseek-v3,...] [--tokens 1,8,...] [--iters 20] [--json out.jsonl]
"""
import argparse
import json
import subprocess
import sys

PRESETS = "deepseek-v3,qwen3-235b,qwen3-30b,mixtral-8x7b,gpt-oss-120b,llama4-maverick"


def run(binary, preset, args):
    cmd = [binary, "--json", "--preset", preset, "--iters", str(args.iters)]
    if args.tokens:
        cmd += ["--tokens", args.tokens]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return [r for r in rows if r.get("stage") != "routing"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="moe-bench of the baseline build")
    ap.add_argument("--b", required=True, help="moe-bench of the changed build")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--tokens", default="")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", help="write every row of every run here")
    args = ap.parse_args()
    best = {}  # (preset, T) -> {"a": us, "b": us}
    log = open(args.json, "w") if args.json else None
    device = ""
    for rnd in range(args.rounds):
        for preset in args.presets.split(","):
            order = ("a", "b") if rnd % 2 == 0 else ("b", "a")
            for side in order:
                for r in run(getattr(args, side), preset, args):
                    device = r.get("device", device)
                    cell = best.setdefault((r["preset"], r["tokens"]), {})
                    cell[side] = min(cell.get(side, float("inf")), r["us"])
                    if log:
                        r["side"] = side
                        r["round"] = rnd
                        log.write(json.dumps(r) + "\n")
                        log.flush()  # a run cut off by a time limit keeps its cells
    print(f"A/B on {device}, {args.rounds} rounds, fastest of each side")
    print(f"{'preset':16} {'T':>7} {'A us':>10} {'B us':>10} {'B/A':>7}")
    worst = (0.0, None)
    for (preset, t), v in best.items():
        if "a" not in v or "b" not in v:
            continue
        ratio = v["b"] / v["a"]
        if abs(ratio - 1) > abs(worst[0] - 1):
            worst = (ratio, (preset, t))
        print(f"{preset:16} {t:7d} {v['a']:10.1f} {v['b']:10.1f} {ratio:7.3f}")
    if worst[1]:
        print(f"largest change: {worst[1][0]} T={worst[1][1]} B/A = {worst[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
