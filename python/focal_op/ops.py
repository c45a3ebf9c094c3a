"""Functional focal losses backed by focal_op's fused ops, and their registered gradients.

Every function returns the per-example loss with no reduction, like tf.nn.*_with_logits.
Everywhere — eagerly, in graphs and inside XLA (jit_compile=True, where each op lowers to a
custom call of the same kernels, csrc/tf/xla_ops.cc) — they emit the fused ops.
"""

from __future__ import annotations

import tensorflow as tf

from focal_op import _checks
from focal_op._loader import op_library, require_xla_lowering_if_compiling

__all__ = ["sparse_softmax_focal_loss", "softmax_focal_loss", "sigmoid_focal_loss"]


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
    """Softmax focal loss with integer class labels, one fused op per direction.

    loss = -Σ_c y_c · α_c · (1 - p_c)^γ · log p_c, p = softmax(logits) over the last axis, with
    y = onehot(labels) (smoothed to (1-s)·onehot + s/C by ``label_smoothing`` s).

    Args:
      labels: int32/int64 tensor of shape ``logits.shape[:-1]``, values in [0, C).
      logits: float16/bfloat16/float32/float64 tensor ``[..., C]`` (16-bit computed in float32).
      gamma: focusing parameter γ >= 0 (0 with alpha None is softmax cross-entropy).
      alpha: None (1), a float (every class) or a length-C vector of class weights.
      epsilon: None or 0 for the exact log-softmax; in (0, 0.5) to clip p to [ε, 1-ε] as the
        classic formula does (gradient zero where clipped).
      label_smoothing: s in [0, 1].
      ignore_class: rows whose label equals it get loss 0 and gradient 0.

    Returns:
      The loss, shape ``labels.shape``, dtype of ``logits``.

    Raises:
      ValueError / TypeError for bad arguments; tf.errors.InvalidArgumentError for a label
      outside [0, C) or a bad hyper-parameter tensor (CPU, also under jit_compile).
    """
    arguments = _checks.softmax_arguments(gamma, epsilon, label_smoothing)
    _checks.check_ignore_class(ignore_class)
    with tf.name_scope(name or "sparse_softmax_focal_loss"):
        logits = _checks.logits_tensor(logits)
        labels = _checks.sparse_labels_tensor(labels, logits)
        alpha = _checks.alpha_tensor(alpha, logits)
        _checks.check_gamma_fits_compute_dtype(gamma, logits)
        require_xla_lowering_if_compiling()
        loss, _ = op_library().focal_op_sparse_softmax_focal_loss(
            labels=labels,
            logits=logits,
            alpha=alpha,
            Tstats=_checks.compute_dtype(logits.dtype),
            ignore_class=0 if ignore_class is None else int(ignore_class),
            has_ignore_class=ignore_class is not None,
            **arguments,
        )
        return loss


_SOFTMAX_INPUTS = ("labels", "logits", "alpha", "gamma", "epsilon", "label_smoothing")


@tf.RegisterGradient("FocalOp>SparseSoftmaxFocalLoss")
def _sparse_softmax_focal_loss_grad(op, loss_grad, _row_stats_grad):
    logits_grad = op_library().focal_op_sparse_softmax_focal_loss_grad(
        **dict(zip(_SOFTMAX_INPUTS, op.inputs)),
        row_stats=op.outputs[1],
        loss_grad=loss_grad,
        ignore_class=op.get_attr("ignore_class"),
        has_ignore_class=op.get_attr("has_ignore_class"),
    )
    return [None, logits_grad, None, None, None, None]


def softmax_focal_loss(labels, logits, *, gamma=2.0, alpha=None, epsilon=None, label_smoothing=0.0, name=None):
    """Softmax focal loss with dense (one-hot or soft) labels, one fused op per direction.

    loss = -Σ_c y_c · α_c · (1 - p_c)^γ · log p_c, p = softmax(logits), y smoothed to
    y·(1-s) + s/C (Keras CategoricalFocalCrossentropy semantics).

    Args:
      labels: ``[..., C]`` like logits (cast to the logits' dtype); rows need not sum to 1.
      logits: float16/bfloat16/float32/float64 ``[..., C]``.
      gamma, alpha, epsilon, label_smoothing: as in :func:`sparse_softmax_focal_loss`.

    Returns:
      The loss, shape ``logits.shape[:-1]``, dtype of ``logits``.
    """
    arguments = _checks.softmax_arguments(gamma, epsilon, label_smoothing)
    with tf.name_scope(name or "softmax_focal_loss"):
        logits = _checks.logits_tensor(logits)
        labels = _checks.dense_labels_tensor(labels, logits)
        alpha = _checks.alpha_tensor(alpha, logits)
        _checks.check_gamma_fits_compute_dtype(gamma, logits)
        require_xla_lowering_if_compiling()
        loss, _ = op_library().focal_op_softmax_focal_loss(
            labels=labels, logits=logits, alpha=alpha, Tstats=_checks.compute_dtype(logits.dtype), **arguments
        )
        return loss


def sigmoid_focal_loss(labels, logits, *, gamma=2.0, alpha=None, label_smoothing=0.0, reduction="none", name=None):
    """Elementwise sigmoid focal loss for binary and multi-label targets, one fused op per direction.

    loss = α_t · (1 - p_t)^γ · BCE(y, x), p = sigmoid(x), p_t = y·p + (1-y)·(1-p),
    α_t = y·α + (1-y)·(1-α) (1 when alpha is None), BCE in the stable softplus form, y smoothed
    to y·(1-s) + s/2 (Keras BinaryFocalCrossentropy semantics).

    Args:
      labels: targets in [0, 1] (hard or soft), the logits' shape (cast to the logits' dtype).
      logits: float16/bfloat16/float32/float64, any shape.
      gamma: focusing parameter γ >= 0.
      alpha: None, a float, or a vector over the last axis (α of the positive part).
      label_smoothing: s in [0, 1].
      reduction: "none" (elementwise), "sum_over_classes" or "mean_over_classes" (over the last
        axis: one value per row, the Keras per-sample loss for the mean), "sum" or "mean" (over
        every element: a scalar). The reductions are computed inside the op, which then never
        stores the elementwise loss (fewer bytes moved; see the README).

    Returns:
      The loss, in the logits' dtype: the logits' shape for "none", logits.shape[:-1] for the
      per-row reductions, a scalar for "sum" and "mean".
    """
    arguments = _checks.focal_arguments(gamma, label_smoothing)
    with tf.name_scope(name or "sigmoid_focal_loss"):
        logits = _checks.logits_tensor(logits, min_rank=0)
        labels = _checks.dense_labels_tensor(labels, logits)
        alpha = _checks.sigmoid_alpha_tensor(alpha, logits)
        _checks.check_gamma_fits_compute_dtype(gamma, logits)
        reduction = _checks.check_sigmoid_reduction(reduction, logits)
        require_xla_lowering_if_compiling()
        if reduction == "none" or logits.shape.rank == 0:  # a scalar's sum and mean are itself
            return op_library().focal_op_sigmoid_focal_loss(labels=labels, logits=logits, alpha=alpha, **arguments)
        rows = _checks.total_sum_rows(logits, alpha) if reduction in ("sum", "mean") else None
        row_sums = op_library().focal_op_sigmoid_focal_loss(
            labels=labels if rows is None else tf.reshape(labels, rows),
            logits=logits if rows is None else tf.reshape(logits, rows),
            alpha=alpha,
            sum_over_classes=True,
            **arguments,
        )
        return _checks.finish_sigmoid_reduction(row_sums, reduction, logits)


@tf.RegisterGradient("FocalOp>SoftmaxFocalLoss")
def _softmax_focal_loss_grad(op, loss_grad, _row_stats_grad):
    logits_grad = op_library().focal_op_softmax_focal_loss_grad(
        **dict(zip(_SOFTMAX_INPUTS, op.inputs)), row_stats=op.outputs[1], loss_grad=loss_grad
    )
    return [None, logits_grad, None, None, None, None]


@tf.RegisterGradient("FocalOp>SigmoidFocalLoss")
def _sigmoid_focal_loss_grad(op, loss_grad):
    labels, logits, alpha, gamma, label_smoothing = op.inputs
    if op.get_attr("sum_over_classes"):  # one upstream value per row ([..., 1]), or one for all
        upstream = _broadcast_source(loss_grad, op.outputs[0])
        if upstream.shape.rank != 0:
            upstream = tf.expand_dims(loss_grad, -1)
    else:
        upstream = _broadcast_source(loss_grad, logits)
    logits_grad = op_library().focal_op_sigmoid_focal_loss_grad(
        labels=labels,
        logits=logits,
        alpha=alpha,
        gamma=gamma,
        label_smoothing=label_smoothing,
        loss_grad=upstream,
    )
    return [None, logits_grad, None, None, None]


def _broadcast_source(loss_grad, logits):
    """loss_grad, or the scalar / per-row values it was broadcast from when the graph shows that.

    The gradient of a sum (or mean) of the elementwise loss arrives as Tile(Reshape(g)) — divided
    by the count for a mean: N x C equal values (equal per row for a reduction over the last
    axis). The gradient op takes the scalar ([]) or per-row ([..., 1]) tensor instead, so the
    broadcast is neither written nor read (the unused Tile is pruned from the graph). Anything
    else, and eager tensors, pass through unchanged.
    """
    if tf.executing_eagerly():
        return loss_grad
    op, scale, scale_type = loss_grad.op, None, None
    if op.type in ("RealDiv", "Mul") and op.inputs[1].shape.rank == 0:
        scale, scale_type, op = op.inputs[1], op.type, op.inputs[0].op
    elif op.type == "Mul" and op.inputs[0].shape.rank == 0:
        scale, scale_type, op = op.inputs[0], op.type, op.inputs[1].op
    if op.type != "Tile" or op.inputs[0].dtype != loss_grad.dtype:
        return loss_grad
    source, multiples = op.inputs[0], tf.get_static_value(op.inputs[1])
    rank = logits.shape.rank
    if rank is None or source.shape.rank != rank or rank == 0:
        return loss_grad
    dims = source.shape.as_list()
    if all(d == 1 for d in dims):
        small = tf.reshape(source, [])
    elif dims[-1] == 1 and multiples is not None and all(m == 1 for m in multiples[:-1]):
        small = source
    else:
        return loss_grad
    if scale_type == "RealDiv":
        small = small / scale
    elif scale_type == "Mul":
        small = small * scale
    return small
