"""JAX benchmark: focal_op.jax's fused kernels against the same focal loss written in jax.numpy
(focal_op.jax.reference), both under jax.jit, forward and forward+backward, float32, on JAX's
default device (the GPU where there is one, else the CPU). No TensorFlow needed.

    python bench/bench_jax.py            # the CPU benchmark's four shapes
    python bench/bench_jax.py --quick    # smaller shapes

Each ratio is "composite median time / fused median time" from the same run; the steps of a
shape are timed in interleaved rounds, each call until its result is ready.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import focal_op.jax as fj

SHAPES = [(65536, 10), (8192, 1000), (1024, 32000), (262144, 21)]
QUICK_SHAPES = [(8192, 10), (1024, 1000), (128, 32000), (32768, 21)]
GAMMA, ALPHA = 2.0, 0.25
LOSSES = {
    "sparse": "sparse_softmax_focal_loss",
    "dense": "softmax_focal_loss",
    "sigmoid": "sigmoid_focal_loss",
}


def _labels(suite, key, n, c):
    if suite == "sparse":
        return jax.random.randint(key, (n,), 0, c)
    if suite == "dense":
        return jax.nn.one_hot(jax.random.randint(key, (n,), 0, c), c)
    return (jax.random.uniform(key, (n, c)) < 0.1).astype(jnp.float32)


def _steps(suite, implementation):
    fn = getattr(implementation, LOSSES[suite])

    def total(labels, logits):
        return jnp.sum(fn(labels, logits, gamma=GAMMA, alpha=ALPHA))

    forward = jax.jit(total)
    forward_backward = jax.jit(jax.value_and_grad(total, argnums=1))
    return forward, forward_backward


def _median_ms(steps, labels, logits, rounds, seconds):
    for fn in steps.values():
        for _ in range(3):
            jax.block_until_ready(fn(labels, logits))
    times = {key: [] for key in steps}
    for _ in range(rounds):
        for key, fn in steps.items():
            stop = time.perf_counter() + seconds / rounds
            while True:
                t0 = time.perf_counter()
                jax.block_until_ready(fn(labels, logits))
                times[key].append(time.perf_counter() - t0)
                if time.perf_counter() > stop:
                    break
    return {key: 1e3 * statistics.median(values) for key, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller shapes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"## focal_op.jax vs the jax.numpy composite, both jax.jit, on {device.platform} ({device.device_kind}); "
          f"float32, gamma={GAMMA}, alpha={ALPHA}; median ms, x = composite / fused\n")
    print("| loss | shape | fused fwd | composite fwd | x | fused fwd+bwd | composite fwd+bwd | x |")
    print("|---|---|---|---|---|---|---|---|")
    key = jax.random.PRNGKey(0)
    for suite in LOSSES:
        for n, c in QUICK_SHAPES if args.quick else SHAPES:
            key, k1, k2 = jax.random.split(key, 3)
            logits = jax.random.normal(k1, (n, c)) * 3
            labels = _labels(suite, k2, n, c)
            steps = {}
            for name, implementation in (("fused", fj), ("composite", fj.reference)):
                steps[name, "fwd"], steps[name, "fwd+bwd"] = _steps(suite, implementation)
            ms = _median_ms(steps, labels, logits, args.rounds, 1.0 if not args.quick else 0.3)
            fwd = ms["composite", "fwd"] / ms["fused", "fwd"]
            both = ms["composite", "fwd+bwd"] / ms["fused", "fwd+bwd"]
            print(f"| {suite} | {n}x{c} | {ms['fused', 'fwd']:.2f} | {ms['composite', 'fwd']:.2f} | {fwd:.2f}x | "
                  f"{ms['fused', 'fwd+bwd']:.2f} | {ms['composite', 'fwd+bwd']:.2f} | {both:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
