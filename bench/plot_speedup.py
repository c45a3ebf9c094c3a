"""Draws the CPU speedup of the fused ops (forward+backward) per shape from bench/results/cpu_*.json
(written by `bench_cpu.py --json-dir bench/results`) into docs/cpu_speedup.png. Needs matplotlib.

    python bench/plot_speedup.py [--results bench/results] [--out docs/cpu_speedup.png]
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FUSED = "focal_op fused"
# the sigmoid's fastest way to a total: the sum inside the op (same value as sum of the elementwise op)
FUSED_BY_SUITE = {"sigmoid": "focal_op fused, reduction='sum'"}
SUITES = ["sparse", "dense", "sigmoid"]


def _baselines(names):
    """The implementations a user would otherwise run: the pure-TF formula (graph, XLA), focal_op's
    own pure-TF composite under XLA (for the sparse op the fastest formula: the focal term of the
    target class only), Keras's focal loss (XLA) and TF's own cross-entropy under XLA."""
    keep = ["pure-TF focal, tf.function", "pure-TF focal, XLA", "focal_op, jit_compile (composite)"]
    keep += [n for n in names if n.startswith("Keras") or (n.startswith("TF ") and n.endswith("XLA"))]
    return [n for n in keep if n in names]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "cpu_speedup.png"))
    args = parser.parse_args()
    runs = {}
    for suite in SUITES:
        path = os.path.join(args.results, f"cpu_{suite}.json")
        if os.path.exists(path):
            with open(path) as f:
                runs[suite] = json.load(f)
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
