"""CPU benchmark: focal_op's fused sparse softmax focal loss against the pure-TF formula (eager,
tf.function, XLA), Keras's CategoricalFocalCrossentropy and TF's own sparse softmax
cross-entropy, forward and forward+backward, float32.

    python bench/bench_cpu.py                 # the spec's four shapes
    python bench/bench_cpu.py --quick         # smaller shapes, fewer repeats
    python bench/bench_cpu.py --json out.json # also write the measurements

Every ratio is "that implementation's median time / focal_op's median time" from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import focal_op  # noqa: E402

SHAPES = [(65536, 10), (8192, 1000), (1024, 32000), (262144, 21)]
QUICK_SHAPES = [(8192, 10), (1024, 1000), (128, 32000), (32768, 21)]
GAMMA, ALPHA = 2.0, 0.25


def _keras_focal(labels, logits):
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return keras.losses.categorical_focal_crossentropy(one_hot, logits, alpha=ALPHA, gamma=GAMMA, from_logits=True)


def _implementations():
    """name -> (per-example loss function, execution mode)."""
    fused = lambda y, z: focal_op.sparse_softmax_focal_loss(y, z, gamma=GAMMA, alpha=ALPHA)  # noqa: E731
    composite = lambda y, z: focal_op.reference.sparse_softmax_focal_loss(y, z, gamma=GAMMA, alpha=ALPHA)  # noqa: E731
    return {
        "focal_op fused": (fused, "function"),
        "pure-TF focal, eager": (composite, "eager"),
        "pure-TF focal, tf.function": (composite, "function"),
        "pure-TF focal, XLA": (composite, "xla"),
        "Keras CategoricalFocalCE, XLA": (_keras_focal, "xla"),
        "TF sparse softmax CE, tf.function": (tf.nn.sparse_softmax_cross_entropy_with_logits, "function"),
        "TF sparse softmax CE, XLA": (tf.nn.sparse_softmax_cross_entropy_with_logits, "xla"),
    }


def _step(loss_fn, mode, with_backward):
    def forward(labels, logits):
        return tf.reduce_sum(loss_fn(labels, logits))

    def forward_backward(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            total = tf.reduce_sum(loss_fn(labels, logits))
        return total, tape.gradient(total, logits)

    body = forward_backward if with_backward else forward
    if mode == "eager":
        return body
    return tf.function(body, jit_compile=(mode == "xla"))


def _time(fn, labels, logits, repeats, min_seconds):
    result = fn(labels, logits)  # trace / compile / warm up
    _block(result)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < 50):
        t0 = time.perf_counter()
        _block(fn(labels, logits))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _block(result):
    for t in tf.nest.flatten(result):
        t.numpy()


def copy_bandwidth_gbps(nbytes=256 << 20):
    """Memory copy bandwidth (read + write bytes per second) measured with NumPy."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = min(_timed_copy(src, dst) for _ in range(5))
    return 2 * nbytes / best / 1e9


def _timed_copy(src, dst):
    t0 = time.perf_counter()
    np.copyto(dst, src)
    return time.perf_counter() - t0


def run(shapes, repeats, min_seconds):
    rng = np.random.default_rng(0)
    rows_out = []
    for shape in shapes:
        n, c = shape
        logits = tf.constant(rng.standard_normal(shape, dtype=np.float32) * 3)
        labels = tf.constant(rng.integers(0, c, size=n), tf.int64)
        measured = {}
        for name, (loss_fn, mode) in _implementations().items():
            if mode == "eager" and n * c > 40_000_000:
                continue
            measured[name] = {
                "forward_ms": 1e3 * _time(_step(loss_fn, mode, False), labels, logits, repeats, min_seconds),
                "forward_backward_ms": 1e3 * _time(_step(loss_fn, mode, True), labels, logits, repeats, min_seconds),
            }
            print(f"  {shape} {name}: {measured[name]}", file=sys.stderr, flush=True)
        rows_out.append({"shape": list(shape), "results": measured})
    return rows_out


def print_table(rows, bandwidth):
    fused = "focal_op fused"
    print(f"\nfloat32, gamma={GAMMA}, alpha={ALPHA}; median ms; x = time / focal_op fused time (same run)")
    print(f"copy bandwidth {bandwidth:.1f} GB/s; floor = bytes moved (fwd: logits read; fwd+bwd: logits read twice,"
          " gradient written once) / copy bandwidth\n")
    header = f"| {'shape':>13} | {'implementation':<34} | {'fwd ms':>8} | {'x':>6} | {'fwd+bwd ms':>10} | {'x':>6} |"
    print(header)
    print("|" + "|".join("-" * (len(col)) for col in header.split("|")[1:-1]) + "|")
    for row in rows:
        shape = tuple(row["shape"])
        base = row["results"][fused]
        for name, r in row["results"].items():
            fx = r["forward_ms"] / base["forward_ms"]
            bx = r["forward_backward_ms"] / base["forward_backward_ms"]
            print(f"| {str(shape):>13} | {name:<34} | {r['forward_ms']:8.2f} | {fx:6.2f} | "
                  f"{r['forward_backward_ms']:10.2f} | {bx:6.2f} |")
        nbytes = shape[0] * shape[1] * 4
        floor_fwd = 1e3 * nbytes / (bandwidth * 1e9)
        floor_fb = 1e3 * 3 * nbytes / (bandwidth * 1e9)
        print(f"| {str(shape):>13} | {'bandwidth floor':<34} | {floor_fwd:8.2f} | {'':>6} | {floor_fb:10.2f} | {'':>6} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller shapes and fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", help="write the measurements to this file")
    args = parser.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = args.repeats or (3 if args.quick else 7)
    min_seconds = 0.2 if args.quick else 1.0
    bandwidth = copy_bandwidth_gbps()
    rows = run(shapes, repeats, min_seconds)
    print_table(rows, bandwidth)
    if args.json:
        info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "tensorflow": tf.__version__, "copy_bandwidth_gbps": bandwidth, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
