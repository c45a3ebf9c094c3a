"""The focal losses in plain TensorFlow ops: the same math and signatures as focal_op's fused
ops, used as the tests' reference and as the benchmark's baseline.

Exact mode (epsilon None/0) works in log space: log p from log_softmax, 1 - p = -expm1(log p).
Clip mode is the classic composite, operation for operation:
softmax -> gather -> clip_by_value -> alpha · (1 - p)^γ · (-log p).
"""

from __future__ import annotations

import tensorflow as tf

from focal_op import _checks

__all__ = ["sparse_softmax_focal_loss", "softmax_focal_loss", "sigmoid_focal_loss"]


def _class_alpha(alpha, classes, dtype):
    """alpha as a [C] vector of ``dtype``."""
    if alpha is None:
        return tf.ones([classes], dtype)
    alpha = tf.cast(alpha, dtype)
    return alpha * tf.ones([classes], dtype) if alpha.shape.rank == 0 else alpha


def sparse_softmax_focal_loss(
    labels,
    logits,
    *,
    gamma=2.0,
    alpha=None,
    epsilon=None,
    label_smoothing=0.0,
    ignore_class=None,
    name=None,
):
    """Pure-TF twin of :func:`focal_op.sparse_softmax_focal_loss`."""
    arguments = _checks.softmax_arguments(gamma, epsilon, label_smoothing)
    epsilon = _checks.check_epsilon(epsilon)
    _checks.check_ignore_class(ignore_class)
    with tf.name_scope(name or "reference_sparse_softmax_focal_loss"):
        logits = _checks.logits_tensor(logits)
        labels = _checks.sparse_labels_tensor(labels, logits)
        alpha = _checks.alpha_tensor(alpha, logits)
        _checks.check_gamma_fits_compute_dtype(gamma, logits)
        dtype = _checks.compute_dtype(logits.dtype)
        z = tf.cast(logits, dtype)
        classes = tf.shape(z)[-1]
        gamma = tf.cast(arguments["gamma"], dtype)
        alpha = _class_alpha(alpha, classes, dtype)

        if ignore_class is not None:
            valid = tf.not_equal(labels, tf.cast(ignore_class, labels.dtype))
            labels = tf.where(valid, labels, tf.zeros_like(labels))
        tf.debugging.assert_less(labels, tf.cast(classes, labels.dtype), message="label outside [0, C)")
        tf.debugging.assert_non_negative(labels, message="label outside [0, C)")

        if epsilon > 0.0:
            p = tf.nn.softmax(z, axis=-1)
            if label_smoothing == 0.0:
                p = tf.gather(p, labels, batch_dims=labels.shape.rank)[..., None]
                p = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
                weights = tf.gather(alpha, labels)[..., None]
            else:
                p = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
                weights = alpha
            log_p = tf.math.log(p)
            q = 1.0 - p
        else:
            log_p = tf.nn.log_softmax(z, axis=-1)
            if label_smoothing == 0.0:
                log_p = tf.gather(log_p, labels, batch_dims=labels.shape.rank)[..., None]
                weights = tf.gather(alpha, labels)[..., None]
            else:
                weights = alpha
            q = -tf.math.expm1(log_p)

        per_class = weights * tf.pow(q, gamma) * -log_p
        if label_smoothing == 0.0:
            loss = per_class[..., 0]
        else:
            s = tf.cast(arguments["label_smoothing"], dtype)
            y = (1.0 - s) * tf.one_hot(labels, classes, dtype=dtype) + s / tf.cast(classes, dtype)
            loss = tf.reduce_sum(y * per_class, axis=-1)

        if ignore_class is not None:
            loss = tf.where(valid, loss, tf.zeros_like(loss))
        return tf.cast(loss, logits.dtype)


def softmax_focal_loss(labels, logits, *, gamma=2.0, alpha=None, epsilon=None, label_smoothing=0.0, name=None):
    """Pure-TF twin of :func:`focal_op.softmax_focal_loss` (dense or soft labels)."""
    arguments = _checks.softmax_arguments(gamma, epsilon, label_smoothing)
    epsilon = _checks.check_epsilon(epsilon)
    with tf.name_scope(name or "reference_softmax_focal_loss"):
        logits = _checks.logits_tensor(logits)
        labels = _checks.dense_labels_tensor(labels, logits)
        alpha = _checks.alpha_tensor(alpha, logits)
        _checks.check_gamma_fits_compute_dtype(gamma, logits)
        dtype = _checks.compute_dtype(logits.dtype)
        z = tf.cast(logits, dtype)
        y = tf.cast(labels, dtype)
        classes = tf.shape(z)[-1]
        alpha = _class_alpha(alpha, classes, dtype)
        gamma = tf.cast(arguments["gamma"], dtype)
        if label_smoothing:
            s = tf.cast(arguments["label_smoothing"], dtype)
            y = y * (1.0 - s) + s / tf.cast(classes, dtype)
        if epsilon > 0.0:
            p = tf.clip_by_value(tf.nn.softmax(z, axis=-1), epsilon, 1.0 - epsilon)
            log_p, q = tf.math.log(p), 1.0 - p
        else:
            log_p = tf.nn.log_softmax(z, axis=-1)
            q = -tf.math.expm1(log_p)
        loss = tf.reduce_sum(y * alpha * tf.pow(q, gamma) * -log_p, axis=-1)
        return tf.cast(loss, logits.dtype)


def sigmoid_focal_loss(labels, logits, *, gamma=2.0, alpha=None, label_smoothing=0.0, reduction="none", name=None):
    """Pure-TF twin of :func:`focal_op.sigmoid_focal_loss`: α_t · (1 - p_t)^γ · BCE-with-logits,
    then `reduction` by TF reductions."""
    arguments = _checks.focal_arguments(gamma, label_smoothing)
    with tf.name_scope(name or "reference_sigmoid_focal_loss"):
        logits = _checks.logits_tensor(logits, min_rank=0)
        labels = _checks.dense_labels_tensor(labels, logits)
        alpha_t = _checks.sigmoid_alpha_tensor(alpha, logits)
        _checks.check_gamma_fits_compute_dtype(gamma, logits)
        reduction = _checks.check_sigmoid_reduction(reduction, logits)
        dtype = _checks.compute_dtype(logits.dtype)
        x = tf.cast(logits, dtype)
        y = tf.cast(labels, dtype)
        if label_smoothing:
            s = tf.cast(arguments["label_smoothing"], dtype)
            y = y * (1.0 - s) + 0.5 * s
        p = tf.sigmoid(x)
        p_t = y * p + (1.0 - y) * (1.0 - p)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x)
        loss = tf.pow(1.0 - p_t, tf.cast(arguments["gamma"], dtype)) * bce
        if alpha is not None:
            a = tf.cast(alpha_t, dtype)
            loss = (y * a + (1.0 - y) * (1.0 - a)) * loss
        return tf.cast(_checks.reduce_sigmoid_loss(loss, reduction, logits), logits.dtype)
