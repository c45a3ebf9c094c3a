"""CPU benchmark: focal_op's fused ops against their pure-TF formulas (eager, tf.function, XLA),
Keras's focal losses and TF's own cross-entropies, forward and forward+backward, float32.

Suites: sparse (integer labels), dense (one-hot labels) and sigmoid (multi-label).

    python bench/bench_cpu.py                         # every suite, the spec's four shapes
    python bench/bench_cpu.py --suite sparse --quick  # one suite, smaller shapes
    python bench/bench_cpu.py --json-dir bench/results  # also write cpu_<suite>.json
    python bench/bench_cpu.py --suite keras           # a Keras train step, jit_compile True vs False
    python bench/bench_cpu.py --suite sparse --shape 65536x10 --only "CE, XLA"  # one shape, one baseline

Every ratio is "that implementation's median time / focal_op's median time" from the same run;
the steps of a shape are timed in interleaved rounds (see _time_interleaved).
The "fwd peak MiB" column is the forward's peak memory beyond its inputs, measured in a child
process whose TensorFlow CPU allocator keeps statistics (TF_CPU_ALLOCATOR_USE_BFC=true); the
timings come from the default allocator.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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


def _keras_sparse_focal(labels, logits):
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return keras.losses.categorical_focal_crossentropy(one_hot, logits, alpha=ALPHA, gamma=GAMMA, from_logits=True)


def _keras_dense_focal(labels, logits):
    return keras.losses.categorical_focal_crossentropy(labels, logits, alpha=ALPHA, gamma=GAMMA, from_logits=True)


def _keras_binary_focal(labels, logits):
    return keras.losses.binary_focal_crossentropy(labels, logits, apply_class_balancing=True, alpha=ALPHA,
                                                  gamma=GAMMA, from_logits=True)


def _focal_params(fn):
    return lambda y, z: fn(y, z, gamma=GAMMA, alpha=ALPHA)


def _sigmoid_ce(labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def _implementations(suite):
    """name -> (per-example loss function, execution mode) for a suite; the first is focal_op."""
    if suite == "sparse":
        fused = _focal_params(focal_op.sparse_softmax_focal_loss)
        composite = _focal_params(focal_op.reference.sparse_softmax_focal_loss)
        keras_focal, ce_name, ce = _keras_sparse_focal, "TF sparse softmax CE", tf.nn.sparse_softmax_cross_entropy_with_logits
    elif suite == "dense":
        fused = _focal_params(focal_op.softmax_focal_loss)
        composite = _focal_params(focal_op.reference.softmax_focal_loss)
        keras_focal, ce_name, ce = _keras_dense_focal, "TF softmax CE", tf.nn.softmax_cross_entropy_with_logits
    else:
        fused = _focal_params(focal_op.sigmoid_focal_loss)
        composite = _focal_params(focal_op.reference.sigmoid_focal_loss)
        keras_focal, ce_name, ce = _keras_binary_focal, "TF sigmoid CE", _sigmoid_ce
    keras_name = {"sparse": "Keras CategoricalFocalCE", "dense": "Keras CategoricalFocalCE",
                  "sigmoid": "Keras binary_focal_CE"}[suite]
    in_op_sum = {}
    if suite == "sigmoid":  # the same total, summed inside the op (no elementwise loss stored)
        in_op_sum["focal_op fused, reduction='sum'"] = (
            lambda y, z: focal_op.sigmoid_focal_loss(y, z, gamma=GAMMA, alpha=ALPHA, reduction="sum"), "function")
    return {
        "focal_op fused": (fused, "function"),
        **in_op_sum,
        "focal_op, jit_compile": (fused, "xla"),  # the same kernels, as XLA custom calls
        "pure-TF focal, eager": (composite, "eager"),
        "pure-TF focal, tf.function": (composite, "function"),
        "pure-TF focal, XLA": (composite, "xla"),
        f"{keras_name}, XLA": (keras_focal, "xla"),
        f"{ce_name}, tf.function": (ce, "function"),
        f"{ce_name}, XLA": (ce, "xla"),
    }


def _labels(suite, rng, n, c):
    if suite == "sparse":
        return tf.constant(rng.integers(0, c, size=n), tf.int64)
    if suite == "dense":
        return tf.one_hot(rng.integers(0, c, size=n), c)
    return tf.constant((rng.uniform(size=(n, c)) < 0.1).astype(np.float32))


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


def _warm(fn, labels, logits, seconds=0.3):
    """Traces (or compiles) a step, then runs it for `seconds` (thread pool, allocator, caches)."""
    _block(fn(labels, logits))
    warm_until = time.perf_counter() + seconds
    while time.perf_counter() < warm_until:
        _block(fn(labels, logits))


def _timed_calls(fn, labels, logits, seconds):
    """Times calls of a step for about `seconds` (at least one call); the list of call times."""
    times = []
    stop = time.perf_counter() + seconds
    while not times or time.perf_counter() < stop:
        t0 = time.perf_counter()
        _block(fn(labels, logits))
        times.append(time.perf_counter() - t0)
    return times


def _time_interleaved(steps, labels, logits, rounds, min_seconds):
    """Median call time of every step, measured in `rounds` rounds that visit every step in turn
    (so a slow phase of the machine, or the first minutes of the process, weighs on all of them
    alike rather than on whichever is measured first); each step gets about min_seconds in all."""
    for fn in steps.values():
        _warm(fn, labels, logits)
    times = {key: [] for key in steps}
    for _ in range(rounds):
        for key, fn in steps.items():
            times[key] += _timed_calls(fn, labels, logits, min_seconds / rounds)
    return {key: statistics.median(values) for key, values in times.items()}


def _block(result):
    """Waits for a step without copying its N x C gradient to NumPy (that copy would add the same
    large constant to every row): a tf.function call on the CPU returns once all its outputs are
    computed, so reading the scalar total is enough."""
    tf.nest.flatten(result)[0].numpy()


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


def _cases(suite, shapes, only=None):
    """(shape, labels, logits, implementation name, loss function, mode) for every pair measured:
    one set of inputs per shape; eager rows are skipped above 40M elements; `only`: name parts to keep
    (the fused op always stays, every ratio is against it)."""
    rng = np.random.default_rng(0)
    for shape in shapes:
        n, c = shape
        logits = tf.constant(rng.standard_normal(shape, dtype=np.float32) * 3)
        labels = _labels(suite, rng, n, c)
        for name, (loss_fn, mode) in _implementations(suite).items():
            if mode == "eager" and n * c > 40_000_000:
                continue
            if only and name != "focal_op fused" and not any(part in name for part in only):
                continue
            yield shape, labels, logits, name, loss_fn, mode


def run(suite, shapes, repeats, min_seconds, only=None):
    """Times every implementation's forward and forward+backward, shape by shape (`repeats`
    interleaved rounds per shape)."""
    by_shape = {}
    for shape, labels, logits, name, loss_fn, mode in _cases(suite, shapes, only):
        by_shape.setdefault(shape, (labels, logits, {}))[2][name] = (loss_fn, mode)
    results = []
    for shape, (labels, logits, implementations) in by_shape.items():
        steps = {}
        for name, (loss_fn, mode) in implementations.items():
            steps[name, "forward_ms"] = _step(loss_fn, mode, False)
            steps[name, "forward_backward_ms"] = _step(loss_fn, mode, True)
        medians = _time_interleaved(steps, labels, logits, repeats, min_seconds)
        measured = {name: {} for name in implementations}
        for (name, column), seconds in medians.items():
            measured[name][column] = 1e3 * seconds
        for name, result in measured.items():  # progress: the tables follow when the suite is done
            print(f"  {suite} {shape} {name}: forward {result['forward_ms']:.2f} ms, "
                  f"forward+backward {result['forward_backward_ms']:.2f} ms", file=sys.stderr, flush=True)
        results.append({"shape": list(shape), "results": measured})
        del steps  # frees the compiled steps and their buffers before the next shape
    return results


def forward_peak_mib(suite, shapes):
    """{shape: {implementation: MiB}}: peak allocation of one forward beyond its inputs.
    Runs in this process; needs TF_CPU_ALLOCATOR_USE_BFC=true set before TensorFlow started."""
    peaks = {f"{n}x{c}": {} for n, c in shapes}
    for (n, c), labels, logits, name, loss_fn, mode in _cases(suite, shapes):
        step = _step(loss_fn, mode, False)
        _block(step(labels, logits))
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        _block(step(labels, logits))
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        peaks[f"{n}x{c}"][name] = (peak - before) / 2**20
    return peaks


def measure_peaks_in_child(suite, shapes):
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", "--suite", suite]
    command += [arg for n, c in shapes for arg in ("--shape", f"{n}x{c}")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        print(f"peak-memory child failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(suite, rows, bandwidth):
    fused = "focal_op fused"
    labels = {"sparse": "int64 labels", "dense": "one-hot float labels", "sigmoid": "0/1 float labels, 10% positive"}
    print(f"\n## {suite}: float32 logits, {labels[suite]}, gamma={GAMMA}, alpha={ALPHA}")
    print("median ms; x = time / focal_op fused time (same run)")
    print(f"copy bandwidth {bandwidth:.1f} GB/s; floor = bytes moved (fwd: logits (and N x C labels) read;"
          " fwd+bwd: read twice, gradient written once) / copy bandwidth\n")
    header = (f"| {'shape':>13} | {'implementation':<34} | {'fwd ms':>8} | {'x':>6} | {'fwd+bwd ms':>10} | {'x':>6} "
              f"| {'fwd peak MiB':>12} |")
    print(header)
    print("|" + "|".join("-" * (len(col)) for col in header.split("|")[1:-1]) + "|")
    for row in rows:
        shape = tuple(row["shape"])
        base = row["results"][fused]
        for name, r in row["results"].items():
            fx = r["forward_ms"] / base["forward_ms"]
            bx = r["forward_backward_ms"] / base["forward_backward_ms"]
            peak = r.get("forward_peak_mib")
            peak_text = f"{peak:12.1f}" if peak is not None else f"{'':>12}"
            print(f"| {str(shape):>13} | {name:<34} | {r['forward_ms']:8.2f} | {fx:6.2f} | "
                  f"{r['forward_backward_ms']:10.2f} | {bx:6.2f} | {peak_text} |")
        nbytes = shape[0] * shape[1] * 4
        label_bytes = 0 if suite == "sparse" else nbytes  # dense and sigmoid labels are N x C too
        floor_fwd = 1e3 * (nbytes + label_bytes) / (bandwidth * 1e9)
        floor_fb = 1e3 * (3 * nbytes + 2 * label_bytes) / (bandwidth * 1e9)
        nxc = shape[0] * shape[1] * 4 / 2**20
        print(f"| {str(shape):>13} | {'bandwidth floor':<34} | {floor_fwd:8.2f} | {'':>6} | {floor_fb:10.2f} | {'':>6} "
              f"| {f'(N x C: {nxc:.0f})':>12} |")


def keras_train_steps(steps=60, rounds=5):
    """Median time of one Keras train step (model.train_on_batch: a 2-layer MLP with each focal_op
    loss class, batch 512, 100 classes) with jit_compile False and True, in interleaved rounds."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 64)).astype(np.float32)
    cases = {
        "SparseCategoricalFocalLoss": (rng.integers(0, 100, 512), focal_op.losses.SparseCategoricalFocalLoss),
        "CategoricalFocalLoss": (np.eye(100, dtype=np.float32)[rng.integers(0, 100, 512)],
                                 focal_op.losses.CategoricalFocalLoss),
        "BinaryFocalLoss": ((rng.uniform(size=(512, 100)) < 0.1).astype(np.float32), focal_op.losses.BinaryFocalLoss),
    }
    print("\n## Keras train step: Dense(256, relu) -> Dense(100), batch 512, SGD; median ms per step")
    print("| loss | jit_compile=False | jit_compile=True | True / False |\n|---|---|---|---|")
    for name, (y, loss_class) in cases.items():
        models = {}
        for jit in (False, True):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"),
                                      keras.layers.Dense(100)])
            model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss_class(from_logits=True), jit_compile=jit)
            for _ in range(5):
                model.train_on_batch(x, y)
            models[jit] = model
        times = {False: [], True: []}
        for _ in range(rounds):
            for jit, model in models.items():
                t0 = time.perf_counter()
                for _ in range(steps // rounds):
                    model.train_on_batch(x, y)
                times[jit].append((time.perf_counter() - t0) / (steps // rounds))
        plain, xla = (1e3 * statistics.median(times[j]) for j in (False, True))
        print(f"| {name} | {plain:.2f} | {xla:.2f} | {xla / plain:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", choices=["sparse", "dense", "sigmoid", "keras"],
                        help="run only these suites (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="smaller shapes and fewer repeats")
    parser.add_argument("--shape", action="append", metavar="NxC",
                        help="time only these shapes (repeatable, e.g. 65536x10); default: the four above")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="time only the implementations whose name contains NAME (repeatable; focal_op fused always)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json-dir", help="write cpu_<suite>.json measurements into this folder")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(d) for d in shape.lower().split("x")) for shape in args.shape]
    if args.memory_child:
        print(json.dumps(forward_peak_mib(args.suite[0], shapes)))
        return
    repeats = args.repeats or (3 if args.quick else 7)
    min_seconds = 0.2 if args.quick else 1.0
    bandwidth = copy_bandwidth_gbps()
    for suite in args.suite or ["sparse", "dense", "sigmoid", "keras"]:
        if suite == "keras":
            keras_train_steps()
            continue
        rows = run(suite, shapes, repeats, min_seconds, args.only)
        peaks = {} if args.no_memory else measure_peaks_in_child(suite, shapes)
        for row in rows:
            for name, result in row["results"].items():
                result["forward_peak_mib"] = peaks.get("x".join(map(str, row["shape"])), {}).get(name)
        print_table(suite, rows, bandwidth)
        if args.json_dir:
            info = {"suite": suite, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "tensorflow": tf.__version__, "copy_bandwidth_gbps": bandwidth, "gamma": GAMMA, "alpha": ALPHA,
                    "rows": rows}
            with open(os.path.join(args.json_dir, f"cpu_{suite}.json"), "w") as f:
                json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
