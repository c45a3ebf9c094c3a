"""Argument checks shared by the fused ops and the pure-TF reference: named errors, raised
before any kernel runs. Types are checked here; the values of Python numbers by the kernel
core's own checks (csrc/core/validate.h, through focal_op._focal_core, in _arguments.py, which
focal_op.jax shares), so Python and the kernels raise the same texts."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from focal_op._arguments import (  # noqa: F401 - the framework-free checks, shared with focal_op.jax
    _core,
    _is_number,
    as_number,
    check_epsilon,
    check_gamma,
    check_ignore_class,
    check_label_smoothing,
    check_number_or_tensor,
    check_sigmoid_reduction_name,
    check_sigmoid_values,
    check_softmax_values,
)

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
LABEL_DTYPES = (tf.int32, tf.int64)


def compute_dtype_max(logits: tf.Tensor) -> float:
    """The largest finite value of the dtype the loss of these logits is computed in."""
    return float(np.finfo(compute_dtype(logits.dtype).as_numpy_dtype).max)


def check_gamma_fits_compute_dtype(gamma, logits: tf.Tensor) -> None:
    """ValueError when gamma is too large for the compute dtype (float32 for 16- and 32-bit
    logits): it would turn into inf there, and the loss into inf or NaN."""
    check_softmax_values(gamma=gamma, compute_max=compute_dtype_max(logits))


def logits_tensor(logits, min_rank: int = 1) -> tf.Tensor:
    logits = tf.convert_to_tensor(logits)
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(f"logits must be float16, bfloat16, float32 or float64; got {logits.dtype.name}")
    if min_rank and logits.shape.rank == 0:
        raise ValueError("logits must have rank >= 1 ([..., C]); got a scalar")
    return logits


def sparse_labels_tensor(labels, logits: tf.Tensor) -> tf.Tensor:
    labels = tf.convert_to_tensor(labels)
    if labels.dtype not in LABEL_DTYPES:
        raise TypeError(
            f"sparse labels must be int32 or int64; got {labels.dtype.name} "
            "(the Keras loss classes accept float labels and cast them)"
        )
    if logits.shape.rank is not None and labels.shape.rank is not None:
        if not labels.shape.is_compatible_with(logits.shape[:-1]):
            raise ValueError(
                f"labels must have the shape of logits without its last axis; got labels {labels.shape} "
                f"and logits {logits.shape}"
            )
    return labels


def dense_labels_tensor(labels, logits: tf.Tensor) -> tf.Tensor:
    """Dense or binary labels: the logits' shape, cast to the logits' dtype."""
    labels = tf.convert_to_tensor(labels)
    if not (labels.dtype.is_floating or labels.dtype.is_integer or labels.dtype == tf.bool):
        raise TypeError(f"labels must be numeric; got {labels.dtype.name}")
    labels = tf.cast(labels, logits.dtype)
    if logits.shape.rank is not None and labels.shape.rank is not None:
        if not labels.shape.is_compatible_with(logits.shape):
            raise ValueError(f"labels must have the shape of logits; got labels {labels.shape} and logits {logits.shape}")
    return labels


def _check_alpha_values(values: np.ndarray, logits: tf.Tensor, last_axis, sigmoid: bool) -> None:
    """Known alpha values, by the kernels' checks: a scalar or one per class (column), >= 0 (the
    sigmoid's at most 1), representable in the compute dtype (last_axis None: not known)."""
    check = check_sigmoid_values if sigmoid else check_softmax_values
    check(alpha=values.tolist(), last_axis=-1 if last_axis is None or values.size <= 1 else last_axis,
          compute_max=compute_dtype_max(logits))


def _alpha(alpha, logits: tf.Tensor, if_none: tf.Tensor, axis_name: str, sigmoid: bool) -> tf.Tensor:
    """alpha as float64: ``if_none`` for None, a scalar for a number, else a vector checked
    against the last axis of logits. Numbers and sequences keep float64 precision; tensors are
    checked by the op when it runs."""
    if alpha is None:
        return if_none
    length = logits.shape[-1] if logits.shape.rank else None
    if isinstance(alpha, (bool, np.bool_, str, bytes)):
        raise TypeError(f"alpha must be None, a real number or a vector of them; got {type(alpha).__name__}")
    if _is_number(alpha):
        _check_alpha_values(np.asarray([as_number(alpha)]), logits, length, sigmoid)
        return tf.constant(as_number(alpha), tf.float64)
    if not (tf.is_tensor(alpha) or isinstance(alpha, tf.Variable)):
        try:
            values = np.asarray(alpha, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"alpha must be None, a real number or a vector of them; got {alpha!r}") from err
        if values.ndim == 1 and values.size == 0 and length != 0:
            raise ValueError("alpha must not be empty (None means no alpha)")
        if values.ndim <= 1:
            _check_alpha_values(values.reshape(-1), logits, length, sigmoid)
        alpha = values
    alpha = tf.cast(tf.convert_to_tensor(alpha), tf.float64)
    if alpha.shape.rank is not None and alpha.shape.rank > 1:
        raise ValueError(f"alpha must be None, a float or a vector over {axis_name}; got shape {alpha.shape}")
    if alpha.shape.rank == 1 and length is not None and alpha.shape[0] is not None and alpha.shape[0] != length:
        raise ValueError(_core().alpha_length_error(alpha.shape[0], length, sigmoid))  # the kernels' text
    return alpha


def sigmoid_alpha_tensor(alpha, logits: tf.Tensor) -> tf.Tensor:
    """Sigmoid alpha: empty (None: α_t = 1), a scalar, or one value per column of the last axis."""
    return _alpha(alpha, logits, tf.zeros([0], tf.float64), "the last axis", sigmoid=True)


def alpha_tensor(alpha, logits: tf.Tensor) -> tf.Tensor:
    """Softmax alpha: a scalar (None -> 1, a float -> every class) or one weight per class [C]."""
    return _alpha(alpha, logits, tf.constant(1.0, tf.float64), "the classes", sigmoid=False)


def focal_arguments(gamma, label_smoothing) -> dict:
    """Checks gamma and label_smoothing; returns them as the ops' float64 inputs."""
    check_gamma(gamma)
    check_label_smoothing(label_smoothing)
    return dict(gamma=float64_scalar(gamma), label_smoothing=float64_scalar(label_smoothing))


def softmax_arguments(gamma, epsilon, label_smoothing) -> dict:
    """focal_arguments plus the checked epsilon (None -> 0), for the softmax ops."""
    arguments = focal_arguments(gamma, label_smoothing)
    arguments["epsilon"] = float64_scalar(check_epsilon(epsilon))
    return arguments


def float64_scalar(value) -> tf.Tensor:
    """A hyper-parameter as a float64 tensor; Python numbers are not rounded through float32."""
    if _is_number(value):
        return tf.constant(as_number(value), tf.float64)
    return tf.cast(value, tf.float64)


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """16-bit logits are computed in float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def check_sigmoid_reduction(reduction, logits: tf.Tensor) -> str:
    """The sigmoid loss's `reduction`; the per-row ones need logits of rank >= 1."""
    return check_sigmoid_reduction_name(reduction, logits.shape.rank)


# Row widths the sigmoid op may sum a total ("sum", "mean") over, widest first: see total_sum_rows.
TOTAL_SUM_ROW_WIDTHS = (2048, 1024, 512, 256, 128, 64)


def total_sum_rows(logits: tf.Tensor, alpha: tf.Tensor):
    """[rows, width] to view the sigmoid loss's N x C elements as when only their total is wanted,
    or None to keep the logits' own rows.

    The elementwise loss depends on the column only through a per-column alpha, so with None or a
    float for alpha a total may be summed over any rows of the flattened elements. Rows of 2048
    run the long-row loop without a tail, while rows of C <= 32 pay for a transposition in the
    short-row sums (docs/performance.md). Only float32 and float64: a 16-bit row sum of 2048 losses could
    overflow. The element count must be static, a multiple of a width, with >= 16 rows to share.
    """
    shared_alpha = alpha.shape.rank == 0 or alpha.shape.as_list() == [0]  # a float, or None
    if logits.dtype not in (tf.float32, tf.float64) or not shared_alpha:
        return None
    count = logits.shape.num_elements()
    if count is None:
        return None
    for width in TOTAL_SUM_ROW_WIDTHS:
        if count % width == 0 and count // width >= 16:
            return [count // width, width]
    return None


def finish_sigmoid_reduction(row_sums: tf.Tensor, reduction: str, logits: tf.Tensor) -> tf.Tensor:
    """The sigmoid loss reduced as `reduction` says, from its sums over the last axis (computed in
    float32 for 16-bit row sums, returned in their dtype)."""
    if reduction == "sum_over_classes":
        return row_sums
    sums = tf.cast(row_sums, compute_dtype(row_sums.dtype))
    if reduction == "mean_over_classes":
        result = sums / tf.cast(tf.shape(logits)[-1], sums.dtype)
    elif reduction == "sum":
        result = tf.reduce_sum(sums)
    else:
        result = tf.reduce_sum(sums) / tf.cast(tf.size(logits), sums.dtype)
    return tf.cast(result, row_sums.dtype)


def reduce_sigmoid_loss(loss: tf.Tensor, reduction: str, logits: tf.Tensor) -> tf.Tensor:
    """The elementwise sigmoid loss reduced as `reduction` says (a scalar's sum and mean are itself)."""
    if reduction == "none" or logits.shape.rank == 0:
        return loss
    return finish_sigmoid_reduction(tf.reduce_sum(loss, axis=-1), reduction, logits)
