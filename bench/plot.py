#!/usr/bin/env python3
"""Draw `moe-bench --json` rows: per preset, % of floor against T, and the roofline position.

    moe-bench --json > rows.jsonl
    python3 bench/plot.py rows.jsonl -o perf.png [--title TEXT] [--target 85]

Left panel: % of floor (floor_us / us) against the token count T, one line per preset, with the
target as a dashed line. Rows without a floor (the CPU backend measures no ceilings) are drawn
as TFLOP/s against T instead, and the panel says so.
Right panel: the roofline. Each row is a point at its arithmetic intensity (FLOPs per byte that
must move = tflops / tbps) and its achieved TFLOP/s; the roof is min(rate, intensity * bandwidth)
with the ceilings of the row's floor, measured in the same run (floor_tflops: the dense GEMM
rate of the row's dtype, floor_tbps: the read-only bandwidth; rows of older runs without them:
gemm_tflops and copy_tbps), the median over the rows of one dtype (bf16, fp8_e4m3): one roof per
dtype. Several rows of one (preset, T) (--config all) keep the fastest.
Several input files are drawn with one marker each (e.g. the default and the tuned run).
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import statistics
import sys


def read_rows(path):
    rows = []
    with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue  # moe-bench's notes (stderr) or blank lines, if they were captured
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"plot.py: {path}:{n}: not JSON: {e}")
            for key in ("preset", "tokens", "us", "tflops", "tbps"):
                if key not in row:
                    raise SystemExit(f"plot.py: {path}:{n}: no '{key}' (not moe-bench --json output?)")
            if row.get("stage", "all") == "all":  # routing rows have no FLOPs to plot
                rows.append(row)
    return rows


def fastest_per_cell(rows):
    best = {}
    for r in rows:
        key = (r["preset"], r["tokens"])
        if key not in best or r["us"] < best[key]["us"]:
            best[key] = r
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="moe-bench --json output files ('-' = stdin)")
    ap.add_argument("-o", "--output", required=True, help="image to write (.png, .svg, .pdf)")
    ap.add_argument("--title", default=None, help="figure title (default: backend and device)")
    ap.add_argument("--target", type=float, default=85.0, help="%% of floor drawn as target")
    args = ap.parse_args(argv)

    try:
        import matplotlib
    except ImportError:
        raise SystemExit(f"plot.py: {sys.executable} has no matplotlib "
                         "(Debian: apt-get install python3-matplotlib, then /usr/bin/python3)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for path in args.inputs:
        rows = read_rows(path)
        if not rows:
            raise SystemExit(f"plot.py: {path}: no whole-forward rows")
        runs.append((path, fastest_per_cell(rows)))

    presets = []
    for _, cells in runs:
        for preset, _ in sorted(cells, key=lambda k: k[1]):
            if preset not in presets:
                presets.append(preset)
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(presets)}
    markers = ["o", "s", "^", "D", "v", "P"]

    fig, (ax_pct, ax_roof) = plt.subplots(1, 2, figsize=(13, 5.2))
    any_floor = any_no_floor = False
    roof_ceilings = {}  # dtype -> [(TB/s, TFLOP/s)]
    for ri, (path, cells) in enumerate(runs):
        marker = markers[ri % len(markers)]
        label_run = f" ({path})" if len(runs) > 1 else ""
        for preset in presets:
            pts = sorted((t, r) for (p, t), r in cells.items() if p == preset)
            if not pts:
                continue
            ts = [t for t, _ in pts]
            with_floor = all(r.get("pct_floor") is not None and r.get("floor_us") for _, r in pts)
            ys = [r["pct_floor"] if with_floor else r["tflops"] for _, r in pts]
            any_floor |= with_floor
            any_no_floor |= not with_floor
            ax_pct.plot(ts, ys, marker=marker, color=colours[preset],
                        linestyle="-" if with_floor else ":", label=preset + label_run)
            xs = [r["tflops"] / r["tbps"] for _, r in pts if r["tbps"] > 0]
            ys = [r["tflops"] for _, r in pts if r["tbps"] > 0]
            ax_roof.scatter(xs, ys, marker=marker, color=colours[preset], label=preset + label_run)
            for _, r in pts:
                bw = r.get("floor_tbps") or r.get("copy_tbps")
                rate = r.get("floor_tflops") or r.get("gemm_tflops")
                if bw and rate:
                    roof_ceilings.setdefault(r.get("dtype", "bf16"), []).append((bw, rate))

    ax_pct.set_xscale("log", base=2)
    ax_pct.set_xlabel("tokens T")
    if any_floor:
        ax_pct.axhline(args.target, color="grey", linestyle="--", linewidth=1)
        ax_pct.text(ax_pct.get_xlim()[0], args.target, f" target {args.target:g}%",
                    va="bottom", color="grey")
        ax_pct.set_ylabel("% of floor (floor_us / us)")
        ax_pct.set_title("% of floor against T" +
                         ("; dotted: TFLOP/s, no floor" if any_no_floor else ""))
    else:
        ax_pct.set_ylabel("TFLOP/s")
        ax_pct.set_title("TFLOP/s against T (no ceilings measured on this backend, so no floor)")
    ax_pct.grid(True, which="both", alpha=0.3)
    ax_pct.legend(fontsize=8)

    ax_roof.set_xscale("log")
    ax_roof.set_yscale("log")
    ax_roof.set_xlabel("arithmetic intensity (FLOPs per byte that must move)")
    ax_roof.set_ylabel("achieved TFLOP/s")
    if roof_ceilings:
        roofs = {dt: (statistics.median(c[0] for c in cs),  # TB/s
                      statistics.median(c[1] for c in cs))  # TFLOP/s
                 for dt, cs in roof_ceilings.items()}
        lo, hi = ax_roof.get_xlim()
        for bw, rate in roofs.values():
            lo, hi = min(lo, rate / bw / 100), max(hi, rate / bw * 10)
        n = 200
        xs = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
        for i, (dt, (bw, rate)) in enumerate(sorted(roofs.items())):
            ax_roof.plot(xs, [min(rate, x * bw) for x in xs], color="black", linewidth=1.5,
                         linestyle=["-", "--", ":"][i % 3],
                         label=f"{dt} roof: {bw:.2f} TB/s, {rate:.0f} TFLOP/s (same run)")
        ax_roof.set_xlim(lo, hi)
        ax_roof.set_title("roofline position, ceilings of the same run")
    else:
        ax_roof.set_title("roofline position (no ceilings measured: no roof)")
    ax_roof.grid(True, which="both", alpha=0.3)
    ax_roof.legend(fontsize=8, loc="lower right")

    first = next(iter(runs[0][1].values()))
    title = args.title or f"moe-bench, {first.get('backend', '?')} backend, {first.get('device', '?')}"
    if any(r.get("scaled") for _, cells in runs for r in cells.values()):
        title += " (some presets scaled down to fit the CPU)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    n_rows = sum(len(cells) for _, cells in runs)
    print(f"plot.py: {n_rows} cells of {len(presets)} presets -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
