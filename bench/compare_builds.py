"""Times two builds of focal_op._focal_core (the kernel core on NumPy arrays, one thread) on the
same shapes, in interleaved rounds, each build in its own process: a before/after check of a
kernel change without TensorFlow.

    python bench/compare_builds.py OLD/_focal_core.cpython-*.so NEW/_focal_core.cpython-*.so [--rounds 3]

Prints the best forward+backward time (ms) per build and op and the ratio new / old.
"""

import argparse
import collections
import importlib.util
import subprocess
import sys
import time

import numpy as np

SHAPES = [(65536, 10), (262144, 21), (8192, 1000)]


def load(path):
    spec = importlib.util.spec_from_file_location("_focal_core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_ms(step, repeats=9):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def measure(path):
    """One line per op and shape: name, shape, best forward+backward ms."""
    core = load(path)
    rng = np.random.default_rng(0)
    for rows, classes in SHAPES:
        z = rng.standard_normal((rows, classes)).astype(np.float32) * 3
        y = rng.integers(0, classes, rows)
        one_hot = np.eye(classes, dtype=np.float32)[y]
        soft = one_hot * 0.8 + 0.2 / classes
        upstream = np.ones(rows, np.float32)

        def sparse():
            _, stats = core.sparse_softmax_forward(y, z)
            core.sparse_softmax_backward(y, z, stats, upstream)

        def dense(labels):
            _, stats = core.dense_softmax_forward(labels, z)
            core.dense_softmax_backward(labels, z, stats, upstream)

        def sigmoid(alpha=0.25):
            core.sigmoid_forward(one_hot, z, alpha=alpha)
            core.sigmoid_backward(one_hot, z, np.ones_like(z), alpha=alpha)

        class_alpha = np.linspace(0.1, 0.9, classes)

        for name, step in (("sparse", sparse), ("dense one-hot", lambda: dense(one_hot)),
                           ("dense soft", lambda: dense(soft)), ("sigmoid", sigmoid),
                           ("sigmoid class alpha", lambda: sigmoid(class_alpha))):
            print(f"{name}\t{rows}x{classes}\t{best_ms(step):.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    times = collections.defaultdict(list)
    for _ in range(args.rounds):
        for label, path in (("old", args.old), ("new", args.new)):
            done = subprocess.run([sys.executable, __file__, "--measure", path, args.old, args.new],
                                  capture_output=True, text=True, check=True)
            for line in done.stdout.splitlines():
                name, shape, ms = line.split("\t")
                times[name, shape, label].append(float(ms))
    print("| op | shape | old ms | new ms | new / old |\n|---|---|---|---|---|")
    for name, shape in dict.fromkeys((n, s) for n, s, _ in times):
        old, new = min(times[name, shape, "old"]), min(times[name, shape, "new"])
        print(f"| {name} | {shape} | {old:.2f} | {new:.2f} | {new / old:.2f} |")


if __name__ == "__main__":
    if "--measure" in sys.argv:
        measure(sys.argv[sys.argv.index("--measure") + 1])
    else:
        main()
