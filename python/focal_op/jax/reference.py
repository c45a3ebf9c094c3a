"""The focal losses in plain jax.numpy: the same math and signatures as focal_op.jax's fused
functions (and focal_op.reference's TensorFlow formulas), for tests and as the benchmark's
baseline under jax.jit. Exact mode works in log space (1 - p = -expm1(log p)); clip mode
(epsilon > 0) clips p to [ε, 1-ε] as the classic formula does."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["sparse_softmax_focal_loss", "softmax_focal_loss", "sigmoid_focal_loss"]


def _compute(x):
    return jnp.float64 if x.dtype == jnp.float64 else jnp.float32


def _class_alpha(alpha, classes, dtype):
    if alpha is None:
        return jnp.ones([classes], dtype)
    return jnp.broadcast_to(jnp.asarray(alpha, dtype), [classes])


def _per_class_terms(z, gamma, epsilon):
    """(log p, (1 - p)^γ) per class, clipped as clip mode says."""
    if epsilon:
        p = jnp.clip(jax.nn.softmax(z, axis=-1), epsilon, 1.0 - epsilon)
        return jnp.log(p), (1.0 - p) ** gamma
    log_p = jax.nn.log_softmax(z, axis=-1)
    return log_p, (-jnp.expm1(log_p)) ** gamma


def softmax_focal_loss(labels, logits, *, gamma=2.0, alpha=None, epsilon=None, label_smoothing=0.0):
    dtype = _compute(logits)
    z = jnp.asarray(logits, dtype)
    classes = z.shape[-1]
    y = jnp.asarray(labels, dtype)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / classes
    log_p, q_pow = _per_class_terms(z, jnp.asarray(gamma, dtype), epsilon)
    loss = jnp.sum(y * _class_alpha(alpha, classes, dtype) * q_pow * -log_p, axis=-1)
    return loss.astype(logits.dtype)


def sparse_softmax_focal_loss(labels, logits, *, gamma=2.0, alpha=None, epsilon=None, label_smoothing=0.0,
                              ignore_class=None):
    classes = logits.shape[-1]
    valid = jnp.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    one_hot = jax.nn.one_hot(jnp.where(valid, labels, 0), classes, dtype=_compute(logits))
    loss = softmax_focal_loss(one_hot, logits, gamma=gamma, alpha=alpha, epsilon=epsilon,
                              label_smoothing=label_smoothing)
    return jnp.where(valid, loss, jnp.zeros_like(loss))


def sigmoid_focal_loss(labels, logits, *, gamma=2.0, alpha=None, label_smoothing=0.0, reduction="none"):
    dtype = _compute(logits)
    x = jnp.asarray(logits, dtype)
    y = jnp.asarray(labels, dtype)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = jax.nn.sigmoid(x)
    p_t = y * p + (1.0 - y) * (1.0 - p)
    bce = jnp.maximum(x, 0.0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))
    alpha_t = 1.0 if alpha is None else y * jnp.asarray(alpha, dtype) + (1.0 - y) * (1.0 - jnp.asarray(alpha, dtype))
    loss = alpha_t * (1.0 - p_t) ** jnp.asarray(gamma, dtype) * bce
    if reduction == "sum_over_classes":
        loss = jnp.sum(loss, axis=-1)
    elif reduction == "mean_over_classes":
        loss = jnp.mean(loss, axis=-1)
    elif reduction == "sum":
        loss = jnp.sum(loss)
    elif reduction == "mean":
        loss = jnp.mean(loss)
    return loss.astype(logits.dtype)
