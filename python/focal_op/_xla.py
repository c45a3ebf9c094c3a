"""The focal losses inside XLA: TensorFlow composites with hand-written gradients.

Custom ops have no XLA lowering, so inside ``tf.function(jit_compile=True)`` (and Keras's
``jit_compile=True`` train steps) focal_op's functions build these composites instead. They
compute what the fused kernels compute (csrc/core/focal_math.h), in the same reformulated
terms, so XLA fuses them and they stay finite where the textbook formula is not:

  softmax   q = 1 - p = -expm1(log p); h = q^γ · (γ · p log p / q - 1) (-1·q^γ at q = 0);
            g = y · α · h; d loss / d z = g - p · Σ g
  sigmoid   q = y·σ(-x) + (1-y)·σ(x); r = p(1-p)/q; d loss / dx = α_t q^γ (γ(1-2y) r BCE + p - y)

Out-of-range sparse labels give NaN rows (XLA cannot raise), as on the GPU.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.framework import ops as _framework_ops
from tensorflow.python.ops import control_flow_util as _control_flow_util

from focal_op import _checks


def in_xla_context() -> bool:
    """True while tracing a function that XLA will compile (jit_compile=True)."""
    return _control_flow_util.GraphOrParentsInXlaContext(_framework_ops.get_default_graph())


def _focal_term(log_p, p, gamma, epsilon):
    """(q^γ · -log p, h) per class, with the clip of clip mode (epsilon > 0) applied to p."""
    clip_mode = epsilon > 0
    p_clipped = tf.clip_by_value(p, epsilon, 1 - epsilon)
    clipped = tf.logical_and(clip_mode, tf.not_equal(p_clipped, p))
    log_p = tf.where(clipped, tf.math.log(p_clipped), log_p)
    q = tf.where(clip_mode, 1 - p_clipped, -tf.math.expm1(log_p))
    q_pow = tf.pow(q, gamma)
    positive = q > 0
    # p · log p -> 0 at p = 0 (a masked class), as in the kernels (focal_math.h finite_log_p)
    p_log_p = tf.math.multiply_no_nan(log_p, p_clipped)
    ratio = tf.where(positive, p_log_p / tf.where(positive, q, tf.ones_like(q)), -tf.ones_like(q))
    h = tf.where(clipped, tf.zeros_like(q), q_pow * (gamma * ratio - 1))
    return q_pow * -log_p, h


def softmax_focal_loss(weights, logits, alpha, gamma, epsilon, bad_rows=None):
    """Loss [...] for label weights y [..., C] (smoothing applied), alpha scalar or [C] float64."""
    compute = _checks.compute_dtype(logits.dtype)
    weights = tf.cast(weights, compute) * tf.cast(alpha, compute)
    gamma = tf.cast(gamma, compute)
    epsilon = tf.cast(epsilon, compute)

    @tf.custom_gradient
    def focal(z):
        log_p = tf.nn.log_softmax(tf.cast(z, compute), axis=-1)
        p = tf.exp(log_p)
        term, h = _focal_term(log_p, p, gamma, epsilon)
        # a class without label weight adds nothing, also where its term is inf (a masked class)
        loss = tf.reduce_sum(tf.math.multiply_no_nan(term, weights), axis=-1)
        # no distribution (every logit -inf) or a NaN logit: NaN, as in the kernels
        log_sum = tf.reduce_logsumexp(tf.cast(z, compute), axis=-1)
        no_distribution = tf.math.is_nan(log_sum) | (tf.equal(log_sum, float("-inf")) & (tf.shape(z)[-1] > 0))
        loss = tf.where(no_distribution, tf.constant(float("nan"), compute), loss)
        if bad_rows is not None:
            loss = tf.where(bad_rows, tf.constant(float("nan"), compute), loss)

        def gradient(loss_grad):
            g = weights * h
            grad = (g - p * tf.reduce_sum(g, axis=-1, keepdims=True)) * tf.cast(loss_grad, compute)[..., None]
            if bad_rows is not None:
                grad = tf.where(bad_rows[..., None], tf.constant(float("nan"), compute), grad)
            return tf.cast(grad, z.dtype)

        return tf.cast(loss, z.dtype), gradient

    return focal(logits)


def _target_only_loss(labels, logits, alpha, gamma, epsilon, keep, bad_rows):
    """Hard labels without smoothing: only the target class carries weight, so the focal term
    is needed at one class per row (as in the fused kernels) and no one-hot is formed."""
    compute = _checks.compute_dtype(logits.dtype)
    gamma = tf.cast(gamma, compute)
    epsilon = tf.cast(epsilon, compute)
    alpha = tf.cast(alpha, compute)
    target_alpha = tf.gather(alpha, labels) if alpha.shape.rank == 1 else alpha
    weight = tf.cast(keep, compute) * target_alpha
    classes = tf.shape(logits)[-1]

    @tf.custom_gradient
    def focal(z):
        log_p = tf.nn.log_softmax(tf.cast(z, compute), axis=-1)
        log_pt = tf.gather(log_p, labels, batch_dims=labels.shape.rank)
        term, h = _focal_term(log_pt, tf.exp(log_pt), gamma, epsilon)
        loss = tf.where(bad_rows, tf.constant(float("nan"), compute), weight * term)

        def gradient(loss_grad):
            g = weight * h * tf.cast(loss_grad, compute)
            one_hot = tf.one_hot(labels, classes, dtype=compute)
            grad = (one_hot - tf.exp(log_p)) * g[..., None]
            grad = tf.where(bad_rows[..., None], tf.constant(float("nan"), compute), grad)
            return tf.cast(grad, z.dtype)

        return tf.cast(loss, z.dtype), gradient

    return focal(logits)


def sparse_softmax_focal_loss(labels, logits, alpha, gamma, epsilon, label_smoothing, ignore_class):
    classes = tf.shape(logits, out_type=labels.dtype)[-1]
    compute = _checks.compute_dtype(logits.dtype)
    in_range = tf.logical_and(labels >= 0, labels < classes)
    keep = tf.ones_like(labels, dtype=tf.bool) if ignore_class is None else tf.not_equal(labels, ignore_class)
    if tf.get_static_value(label_smoothing) == 0:
        safe_labels = tf.where(in_range, labels, tf.zeros_like(labels))
        bad_rows = tf.logical_and(keep, tf.logical_not(in_range))
        return _target_only_loss(safe_labels, logits, alpha, gamma, epsilon, keep, bad_rows)
    smoothing = tf.cast(label_smoothing, compute)
    one_hot = tf.one_hot(tf.where(in_range, labels, tf.zeros_like(labels)), tf.cast(classes, tf.int32), dtype=compute)
    weights = one_hot * (1 - smoothing) + smoothing / tf.cast(classes, compute)
    weights = weights * tf.cast(keep, compute)[..., None]
    bad_rows = tf.logical_and(keep, tf.logical_not(in_range))
    return softmax_focal_loss(weights, logits, alpha, gamma, epsilon, bad_rows)


def dense_softmax_focal_loss(labels, logits, alpha, gamma, epsilon, label_smoothing):
    compute = _checks.compute_dtype(logits.dtype)
    classes = tf.cast(tf.shape(logits)[-1], compute)
    smoothing = tf.cast(label_smoothing, compute)
    weights = tf.cast(labels, compute) * (1 - smoothing) + smoothing / classes
    return softmax_focal_loss(weights, logits, alpha, gamma, epsilon)


def sigmoid_focal_loss(labels, logits, alpha, gamma, label_smoothing):
    """alpha: float64, empty (none), scalar or over the last axis."""
    compute = _checks.compute_dtype(logits.dtype)
    smoothing = tf.cast(label_smoothing, compute)
    y = tf.cast(labels, compute) * (1 - smoothing) + 0.5 * smoothing
    gamma = tf.cast(gamma, compute)
    if alpha.shape.rank == 1 and alpha.shape[0] == 0:
        alpha_t = tf.ones_like(y)
    else:
        a = tf.cast(alpha, compute)
        alpha_t = y * a + (1 - y) * (1 - a)

    @tf.custom_gradient
    def focal(x_in):
        x = tf.cast(x_in, compute)
        e = tf.exp(-tf.abs(x))
        inv = 1 / (1 + e)
        nonnegative = x >= 0
        p = tf.where(nonnegative, inv, e * inv)
        p_neg = tf.where(nonnegative, e * inv, inv)
        bce = tf.where(x > 0, x * (1 - y), -x * y) + tf.math.log1p(e)
        q = y * p_neg + (1 - y) * p
        weight = alpha_t * tf.pow(q, gamma)

        def gradient(loss_grad):
            positive = q > 0
            r = tf.where(positive, p * p_neg / tf.where(positive, q, tf.ones_like(q)), tf.ones_like(q))
            dx = weight * (gamma * (1 - 2 * y) * r * bce + (1 - y) * p - y * p_neg)
            return tf.cast(dx * tf.cast(loss_grad, compute), x_in.dtype)

        return tf.cast(weight * bce, x_in.dtype), gradient

    return focal(logits)
