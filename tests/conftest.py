"""Shared test setup: quiet TensorFlow logs, deterministic random inputs, and tolerances."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# (rtol, atol) per dtype for values and gradients against the pure-TF reference.
TOLERANCE = {
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


def value_and_gradient(loss_fn, labels, logits, **kwargs):
    """Loss and d(Σ w·loss)/d logits for a fixed random upstream w (exercises loss_grad)."""
    logits = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = loss_fn(labels, logits, **kwargs)
        upstream = tf.cast(tf.reshape(tf.range(1, tf.size(loss) + 1), tf.shape(loss)), loss.dtype)
        weighted = tf.reduce_sum(loss * (upstream / tf.cast(tf.size(loss) + 1, loss.dtype)))
    return loss.numpy(), tape.gradient(weighted, logits).numpy()
