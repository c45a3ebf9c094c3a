"""GPU benchmark of focal_op's CUDA kernels (no TensorFlow needed).

Times forward and forward+backward of the fused kernels (focal_op._focal_core on CuPy arrays)
against the same focal-loss composite jitted with JAX (XLA on the GPU: what TF's jit_compile
gives), PyTorch eager and torch.compile, and against the memory-bandwidth floor: the bytes the
fused op must move divided by the measured device-to-device copy bandwidth. Ratios come from
one run.

    python bench/bench_gpu.py [--suite sparse|dense|sigmoid ...] [--dtype float32|bfloat16]
                              [--quick] [--json results.json]

Every framework is optional; a missing one is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

GAMMA, ALPHA = 2.0, 0.25
SHAPES = [(65536, 10), (8192, 1000), (1024, 32000), (262144, 21), (4096, 128), (16384, 50257)]
QUICK_SHAPES = [(8192, 10), (1024, 1000)]


def best_time(fn, sync, min_seconds=0.2, rounds=5):
    """Seconds per call: the best of `rounds` batches of back-to-back calls, synchronised."""
    for _ in range(3):
        fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    per_call = max(time.perf_counter() - start, 1e-6)
    reps = max(1, int(min_seconds / per_call / rounds))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def copy_bandwidth(cp):
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    src = cp.ones(256 * 1024 * 1024 // 4, cp.float32)
    dst = cp.empty_like(src)
    seconds = best_time(lambda: cp.copyto(dst, src), cp.cuda.Device().synchronize)
    return 2 * src.nbytes / seconds


# ---- inputs and the bytes each op must move --------------------------------------------------
def make_inputs(suite, shape, dtype, rng):
    rows, classes = shape
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    if suite == "sparse":
        labels = rng.integers(0, classes, size=rows).astype(np.int32)
    elif suite == "dense":
        labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, size=rows)]
    else:
        labels = (rng.uniform(size=shape) < 0.1).astype(np.float32)
    return logits, labels


def bytes_moved(suite, shape, itemsize):
    rows, classes = shape
    elements = rows * classes
    if suite == "sigmoid":
        forward = 3 * elements * itemsize  # logits, labels in; loss out
        return forward, forward + 4 * elements * itemsize  # + logits, labels, loss_grad in; grad out
    label_bytes = rows * 4 if suite == "sparse" else elements * itemsize
    stats = rows * 4 * 4
    forward = elements * itemsize + label_bytes + rows * itemsize + stats
    backward = elements * itemsize + label_bytes + stats + rows * itemsize + elements * itemsize
    return forward, forward + backward


# ---- focal_op ----------------------------------------------------------------------------------
def focal_op_impl(suite, logits, labels, dtype):
    import cupy as cp

    from focal_op import _focal_core as core

    def device(a):
        if dtype == "bfloat16":
            import ml_dtypes

            return cp.asarray(a.astype(ml_dtypes.bfloat16).view(np.uint16))
        return cp.asarray(a)

    x = device(logits)
    y = cp.asarray(labels) if suite == "sparse" else device(labels)
    rows = logits.shape[0]
    dtype_arg = "bfloat16" if dtype == "bfloat16" else None
    grad = cp.empty_like(x)
    if suite == "sigmoid":
        alpha = cp.asarray([ALPHA])
        loss = cp.empty_like(x)
        upstream = cp.ones_like(x) if dtype != "bfloat16" else device(np.ones(logits.shape, np.float32))

        def forward():
            core.sigmoid_forward_cuda(y, x, loss, alpha=alpha, gamma=GAMMA, dtype=dtype_arg)

        def forward_backward():
            forward()
            core.sigmoid_backward_cuda(y, x, upstream, grad, alpha=alpha, gamma=GAMMA, dtype=dtype_arg)

        return forward, forward_backward
    alpha = cp.asarray([ALPHA])
    loss = cp.empty(rows, x.dtype)
    stats = cp.empty((rows, core.ROW_STATS), cp.float32)
    upstream = device(np.ones(rows, np.float32))
    fwd = core.sparse_softmax_forward_cuda if suite == "sparse" else core.dense_softmax_forward_cuda
    bwd = core.sparse_softmax_backward_cuda if suite == "sparse" else core.dense_softmax_backward_cuda

    def forward():
        fwd(y, x, loss, stats, alpha=alpha, gamma=GAMMA, dtype=dtype_arg)

    def forward_backward():
        forward()
        bwd(y, x, stats, upstream, grad, alpha=alpha, gamma=GAMMA, dtype=dtype_arg)

    return forward, forward_backward


# ---- the composite in JAX and PyTorch ------------------------------------------------------------
def jax_impl(suite, logits, labels, dtype):
    import jax
    import jax.numpy as jnp

    def loss_fn(x, y):
        x = x.astype(jnp.float32)
        if suite == "sigmoid":
            p = jax.nn.sigmoid(x)
            bce = jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))
            p_t = y * p + (1 - y) * (1 - p)
            alpha_t = y * ALPHA + (1 - y) * (1 - ALPHA)
            return jnp.sum(alpha_t * (1 - p_t) ** GAMMA * bce)
        log_p = jax.nn.log_softmax(x, axis=-1)
        if suite == "sparse":
            log_pt = jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
            return jnp.sum(ALPHA * (1 - jnp.exp(log_pt)) ** GAMMA * -log_pt)
        return jnp.sum(ALPHA * y * (1 - jnp.exp(log_p)) ** GAMMA * -log_p)

    jdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    x = jnp.asarray(logits, jdtype)
    y = jnp.asarray(labels) if suite == "sparse" else jnp.asarray(labels, jdtype)
    forward_jit = jax.jit(loss_fn)
    grad_jit = jax.jit(jax.value_and_grad(loss_fn))
    state = {}

    def forward():
        state["out"] = forward_jit(x, y)

    def forward_backward():
        state["out"] = grad_jit(x, y)

    def sync():
        jax.block_until_ready(state["out"])

    return forward, forward_backward, sync


def torch_impl(suite, logits, labels, dtype, compiled):
    import torch

    def loss_fn(x, y):
        x = x.float()
        if suite == "sigmoid":
            p = torch.sigmoid(x)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
            p_t = y * p + (1 - y) * (1 - p)
            alpha_t = y * ALPHA + (1 - y) * (1 - ALPHA)
            return (alpha_t * (1 - p_t) ** GAMMA * bce).sum()
        log_p = torch.log_softmax(x, dim=-1)
        if suite == "sparse":
            log_pt = log_p.gather(-1, y[:, None]).squeeze(-1)
            return (ALPHA * (1 - log_pt.exp()) ** GAMMA * -log_pt).sum()
        return (ALPHA * y * (1 - log_p.exp()) ** GAMMA * -log_p).sum()

    fn = torch.compile(loss_fn) if compiled else loss_fn
    tdtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    x = torch.tensor(logits, device="cuda", dtype=tdtype, requires_grad=True)
    y = torch.tensor(labels, device="cuda", dtype=torch.int64 if suite == "sparse" else tdtype)

    def forward():
        with torch.no_grad():
            fn(x, y)

    def forward_backward():
        (g,) = torch.autograd.grad(fn(x, y), x)

    return forward, forward_backward, torch.cuda.synchronize


# ---- driver ------------------------------------------------------------------------------------
def run_suite(suite, shapes, dtype, bandwidth):
    import cupy as cp

    sync_cupy = cp.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    itemsize = 2 if dtype == "bfloat16" else 4
    rows_out = []
    for shape in shapes:
        logits, labels = make_inputs(suite, shape, dtype, rng)
        forward, forward_backward = focal_op_impl(suite, logits, labels, dtype)
        ours = (best_time(forward, sync_cupy), best_time(forward_backward, sync_cupy))
        fwd_bytes, total_bytes = bytes_moved(suite, shape, itemsize)
        floor = (fwd_bytes / bandwidth, total_bytes / bandwidth)
        entry = {"shape": list(shape), "suite": suite, "dtype": dtype,
                 "focal_op": {"forward_ms": ours[0] * 1e3, "forward_backward_ms": ours[1] * 1e3},
                 "floor": {"forward_ms": floor[0] * 1e3, "forward_backward_ms": floor[1] * 1e3},
                 "achieved_GBps": {"forward": fwd_bytes / ours[0] / 1e9,
                                   "forward_backward": total_bytes / ours[1] / 1e9},
                 "others": {}}
        for name, make in (("JAX jit (XLA)", lambda: jax_impl(suite, logits, labels, dtype)),
                           ("PyTorch eager", lambda: torch_impl(suite, logits, labels, dtype, False)),
                           ("torch.compile", lambda: torch_impl(suite, logits, labels, dtype, True))):
            try:
                fwd, fwd_bwd, sync = make()
                entry["others"][name] = {"forward_ms": best_time(fwd, sync) * 1e3,
                                         "forward_backward_ms": best_time(fwd_bwd, sync) * 1e3}
            except Exception as error:  # a framework missing or failing: say so, go on
                entry["others"][name] = {"error": f"{type(error).__name__}: {error}"[:200]}
        rows_out.append(entry)
        print_entry(entry)
    return rows_out


def print_entry(entry):
    shape = "x".join(map(str, entry["shape"]))
    ours = entry["focal_op"]
    print(f"\n{entry['suite']} {shape} {entry['dtype']}")
    print(f"  {'implementation':<18} {'fwd ms':>9} {'x':>6} {'fwd+bwd ms':>11} {'x':>6}")
    print(f"  {'focal_op fused':<18} {ours['forward_ms']:9.3f} {1:6.2f} {ours['forward_backward_ms']:11.3f} {1:6.2f}")
    for name, t in entry["others"].items():
        if "error" in t:
            print(f"  {name:<18} skipped: {t['error']}")
            continue
        print(f"  {name:<18} {t['forward_ms']:9.3f} {t['forward_ms'] / ours['forward_ms']:6.2f} "
              f"{t['forward_backward_ms']:11.3f} {t['forward_backward_ms'] / ours['forward_backward_ms']:6.2f}")
    floor = entry["floor"]
    gbps = entry["achieved_GBps"]
    print(f"  {'bandwidth floor':<18} {floor['forward_ms']:9.3f} {'':>6} {floor['forward_backward_ms']:11.3f}")
    print(f"  achieved: forward {gbps['forward']:.0f} GB/s ({100 * floor['forward_ms'] / ours['forward_ms']:.0f}% "
          f"of floor speed), fwd+bwd {gbps['forward_backward']:.0f} GB/s "
          f"({100 * floor['forward_backward_ms'] / ours['forward_backward_ms']:.0f}%)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", choices=["sparse", "dense", "sigmoid"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--quick", action="store_true", help="two small shapes (a smoke run)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    bandwidth = copy_bandwidth(cp)
    print(f"device: {props['name'].decode()}; measured copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    results = {"device": props["name"].decode(), "copy_bandwidth_GBps": bandwidth / 1e9, "runs": []}
    for suite in args.suite or ["sparse", "dense", "sigmoid"]:
        results["runs"] += run_suite(suite, QUICK_SHAPES if args.quick else SHAPES, args.dtype, bandwidth)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
