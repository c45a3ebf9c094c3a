"""Draws the CPU speedup of the fused ops (forward+backward) per shape from bench/results/cpu_*.json
(written by `bench_cpu.py --json-dir bench/results`) into docs/cpu_speedup.png (needs matplotlib),
or with --table prints the README's summary table: each fused op against the fastest pure-TF focal
composite of the run and against TF's own cross-entropy under XLA.

    python bench/plot_speedup.py [--results bench/results] [--out docs/cpu_speedup.png] [--table]
"""

from __future__ import annotations

import argparse
import json
import os

FUSED = "focal_op fused"
# the sigmoid's fastest way to a total: the sum inside the op (same value as sum of the elementwise op)
FUSED_BY_SUITE = {"sigmoid": "focal_op fused, reduction='sum'"}
SUITES = ["sparse", "dense", "sigmoid"]


def _is_xla_cross_entropy(name):
    return name.startswith("TF ") and name.endswith("XLA")


def _baselines(names):
    """The implementations a user would otherwise run: the pure-TF formula (graph, XLA), Keras's
    focal loss (XLA) and TF's own cross-entropy under XLA."""
    keep = ["pure-TF focal, tf.function", "pure-TF focal, XLA"]
    keep += [n for n in names if n.startswith("Keras") or _is_xla_cross_entropy(n)]
    return [n for n in keep if n in names]


# the pure-TF focal composites under XLA, with the letters the README's table marks them by
COMPOSITES = {"pure-TF focal, XLA": "R"}
# the fused op inside XLA (custom calls of the same kernels)
JIT = "focal_op, jit_compile"


def _fb_ms(row, name):
    return row["results"][name]["forward_backward_ms"]


def print_table(runs):
    """Markdown rows: fused forward+backward time against the fastest composite (R: the reference
    formula, K: Keras's focal loss, both under XLA) and TF's CE, XLA; then the fused op inside XLA
    (jit_compile) against itself outside (time ratio: 1.00x costs nothing)."""
    shapes = ["{}x{}".format(*r["shape"]) for r in next(iter(runs.values()))["rows"]]
    print("| fused op vs (fwd+bwd) | " + " | ".join(shapes) + " |")
    print("|---" * (len(shapes) + 1) + "|")
    for suite, run in runs.items():
        rows = run["rows"]
        names = list(rows[0]["results"])
        composites = {n: COMPOSITES.get(n, "K") for n in names if n in COMPOSITES or n.startswith("Keras")}
        cross_entropy = next(n for n in names if _is_xla_cross_entropy(n))
        fused_rows = [(FUSED, "")] + [(n, f", `reduction='sum'`") for n in names if n == FUSED_BY_SUITE.get(suite)]
        for fused, label in fused_rows:
            best = []
            for r in rows:
                name = min(composites, key=lambda n: _fb_ms(r, n))
                best.append(f"{_fb_ms(r, name) / _fb_ms(r, fused):.2f}x ({composites[name]})")
            print(f"| {suite}{label}: best pure-TF focal formula | " + " | ".join(best) + " |")
            others = [cross_entropy] if label else ["pure-TF focal, XLA", "pure-TF focal, tf.function", cross_entropy]
            for other in others:
                ratios = [f"{_fb_ms(r, other) / _fb_ms(r, fused):.2f}x" for r in rows]
                print(f"| {suite}{label}: {other} | " + " | ".join(ratios) + " |")
    for suite, run in runs.items():
        rows = run["rows"]
        if JIT in rows[0]["results"]:
            ratios = [f"{_fb_ms(r, JIT) / _fb_ms(r, FUSED):.2f}x" for r in rows]
            print(f"| {suite}: focal_op under jit_compile, time / outside | " + " | ".join(ratios) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "cpu_speedup.png"))
    parser.add_argument("--table", action="store_true", help="print the README's summary table instead")
    args = parser.parse_args()
    runs = {}
    for suite in SUITES:
        path = os.path.join(args.results, f"cpu_{suite}.json")
        if os.path.exists(path):
            with open(path) as f:
                runs[suite] = json.load(f)
    if args.table:
        return print_table(runs)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 4.2), squeeze=False)
    for ax, (suite, run) in zip(axes[0], runs.items()):
        rows = run["rows"]
        fused = FUSED_BY_SUITE.get(suite, FUSED)
        fused = fused if fused in rows[0]["results"] else FUSED
        names = _baselines(list(rows[0]["results"]))
        width = 0.8 / len(names)
        highest = 0.0
        for i, name in enumerate(names):
            ratios = [r["results"][name]["forward_backward_ms"] / r["results"][fused]["forward_backward_ms"]
                      for r in rows]
            positions = [k + (i - (len(names) - 1) / 2) * width for k in range(len(rows))]
            ax.bar(positions, ratios, width, label=name)
            highest = max(highest, *ratios)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(3.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(["{}x{}".format(*r["shape"]) for r in rows], fontsize=8)
        ax.set_title(f"{suite}: forward+backward" + (" (reduction='sum')" if fused != FUSED else ""))
        ax.set_ylabel(f"time / {fused} time")
        ax.set_ylim(0, highest * 1.4)
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle(f"focal_op on the CPU ({runs[next(iter(runs))]['cpus']} cores, TensorFlow "
                 f"{runs[next(iter(runs))]['tensorflow']}, float32, gamma=2): higher is faster; dashed line 3x")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", os.path.normpath(args.out))


if __name__ == "__main__":
    main()
