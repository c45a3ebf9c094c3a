"""The focal losses and their gradients written out in float64 NumPy, straight from the
textbook formulas (softmax, (1-p)^γ·(-log p), chain rule through dp/dz) — independent of the
kernels' reformulations. Used where TensorFlow is absent (the GPU tests) and checked against
the CPU kernels in the regular suite. Valid where the plain formulas are (moderate logits,
γ = 0 or p < 1 in float64)."""

import numpy as np


def _softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True), shifted - np.log(e.sum(axis=-1, keepdims=True))


def _class_alpha(alpha, classes):
    if alpha is None:
        return np.ones(classes)
    return np.broadcast_to(np.asarray(alpha, np.float64), (classes,))


def dense_softmax(y, z, alpha=None, gamma=2.0, epsilon=0.0, label_smoothing=0.0, upstream=None):
    """Loss [...] and upstream · d loss / d z [..., C] for label weights y [..., C]."""
    z = np.asarray(z, np.float64)
    classes = z.shape[-1]
    y = np.asarray(y, np.float64) * (1.0 - label_smoothing) + label_smoothing / classes
    weight = y * _class_alpha(alpha, classes)
    p, log_p = _softmax(z)
    clipped = np.zeros_like(p, dtype=bool)
    if epsilon > 0:
        clipped = (p < epsilon) | (p > 1.0 - epsilon)
        p = np.clip(p, epsilon, 1.0 - epsilon)
        log_p = np.log(p)
    q = 1.0 - p
    loss = np.sum(weight * q**gamma * -log_p, axis=-1)
    # d term / d p = γ q^(γ-1) log p - q^γ / p; zero where the clip is active
    with np.errstate(divide="ignore", invalid="ignore"):  # q = 0 (p = 1): the limit of q^(γ-1) log p is 0
        dq = np.where((gamma == 0) | (q == 0), 0.0, gamma * q ** (gamma - 1.0) * log_p)
    dterm_dp = np.where(clipped, 0.0, dq - q**gamma / p)
    p_true, _ = _softmax(z)
    s = weight * dterm_dp * p_true  # Σ_c s_c (δ_cj - p_j)
    grad = s - p_true * s.sum(axis=-1, keepdims=True)
    if upstream is not None:
        grad = grad * np.asarray(upstream, np.float64)[..., None]
    return loss, grad


def sparse_softmax(labels, z, ignore_class=None, **kwargs):
    """dense_softmax with one-hot labels; ignored rows give zero loss and gradient."""
    z = np.asarray(z, np.float64)
    labels = np.asarray(labels)
    ignored = labels == ignore_class if ignore_class is not None else np.zeros(labels.shape, bool)
    one_hot = np.eye(z.shape[-1])[np.where(ignored, 0, labels)]
    loss, grad = dense_softmax(one_hot, z, **kwargs)
    return np.where(ignored, 0.0, loss), np.where(ignored[..., None], 0.0, grad)


def sigmoid(y, x, alpha=None, gamma=2.0, label_smoothing=0.0, upstream=None):
    """Elementwise loss and upstream · d loss / d x (alpha over the last axis)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64) * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = 1.0 / (1.0 + np.exp(-x))
    bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    q = 1.0 - (y * p + (1.0 - y) * (1.0 - p))  # 1 - p_t
    a = 1.0 if alpha is None else y * alpha + (1.0 - y) * (1.0 - np.asarray(alpha, np.float64))
    loss = a * q**gamma * bce
    # d/dx: dq/dx = (1 - 2y) p (1 - p); d bce/dx = p - y
    with np.errstate(divide="ignore", invalid="ignore"):  # q = 0 (saturated): the limit is 0
        dq_pow = np.where((gamma == 0) | (q == 0), 0.0, gamma * q ** (gamma - 1.0) * (1.0 - 2.0 * y) * p * (1.0 - p))
    grad = a * (dq_pow * bce + q**gamma * (p - y))
    if upstream is not None:
        grad = grad * np.asarray(upstream, np.float64)
    return loss, grad
