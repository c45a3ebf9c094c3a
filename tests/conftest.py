"""Shared test setup: quiet TensorFlow logs, deterministic random inputs, and tolerances.

Where TensorFlow is not installed (the GPU machine) only the kernel-core tests are collected."""

import glob
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# test files that need no TensorFlow: the kernel core through pybind11 (CPU and CUDA) and focal_op.jax
KERNEL_CORE_TESTS = {"test_numpy_oracle.py", "test_cuda_kernels.py", "test_jax.py"}

try:
    import tensorflow as tf
except ImportError:
    tf = None
    _here = os.path.dirname(__file__)
    collect_ignore = [
        os.path.basename(f) for f in glob.glob(os.path.join(_here, "test_*.py"))
        if os.path.basename(f) not in KERNEL_CORE_TESTS
    ]

# (rtol, atol) per dtype for values and gradients against the pure-TF reference.
TOLERANCE = {} if tf is None else {
    tf.float32: (1e-5, 1e-6),
    tf.float64: (1e-10, 1e-12),
}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_logits(rng, shape, scale=3.0, dtype=np.float64):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def random_labels(rng, batch_shape, classes, dtype=np.int64):
    return rng.integers(0, classes, size=batch_shape).astype(dtype)


def loss_inputs(kind, rng, shape, dtype):
    """(labels, logits) tensors for a loss kind: "sparse" (int64 class indices), "dense" (soft labels
    that sum to 1) or "sigmoid" (0/1 targets, 30 % positive)."""
    logits = tf.constant(random_logits(rng, shape), dtype)
    if kind == "sparse":
        return random_labels(rng, shape[:-1], shape[-1]), logits
    if kind == "dense":
        return tf.constant(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]), dtype), logits
    return tf.constant((rng.uniform(size=shape) < 0.3).astype(np.float64), dtype), logits


def value_and_gradient(loss_fn, labels, logits, **kwargs):
    """Loss and d(Σ w·loss)/d logits for a fixed random upstream w (exercises loss_grad)."""
    logits = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = loss_fn(labels, logits, **kwargs)
        upstream = tf.cast(tf.reshape(tf.range(1, tf.size(loss) + 1), tf.shape(loss)), loss.dtype)
        weighted = tf.reduce_sum(loss * (upstream / tf.cast(tf.size(loss) + 1, loss.dtype)))
    return loss.numpy(), tape.gradient(weighted, logits).numpy()
