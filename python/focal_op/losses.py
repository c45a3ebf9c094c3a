"""Keras 3 loss classes backed by focal_op's fused ops, on Keras's TensorFlow backend (focal_op.ops)
and its JAX backend (focal_op.jax: the same kernels).

They follow Keras's own focal losses (CategoricalFocalCrossentropy, BinaryFocalCrossentropy):
same formulas, same probability handling when ``from_logits=False`` (probabilities normalised and
clipped to [ε, 1-ε] with ε = keras.config.epsilon()), same reductions. Added: sparse labels,
per-class alpha, the exact (unclipped) mode and ``ignore_class``. Registered as serializable,
so ``keras.losses.serialize/deserialize`` and ``model.save(...)`` round-trip after
``import focal_op``.
"""

from __future__ import annotations

import keras
import numpy as np

from focal_op import _arguments

__all__ = ["SparseCategoricalFocalLoss", "CategoricalFocalLoss", "BinaryFocalLoss"]

_PACKAGE = "focal_op"


def _alpha_config(alpha):
    """alpha as plain Python for get_config: None, a float (Python or NumPy scalars of any width)
    or a list of floats."""
    if alpha is None:
        return None
    if isinstance(alpha, (bool, np.bool_, str, bytes)):
        raise TypeError(f"alpha must be None, a real number or a vector of them; got {type(alpha).__name__}")
    if _arguments._is_number(alpha):
        return _arguments.as_number(alpha)
    return [float(a) for a in np.asarray(alpha, dtype=np.float64).reshape(-1)]


def _check_axis(axis) -> int:
    """Keras's `axis` (the class axis): the last one is the only one focal_op reduces over."""
    if axis != -1:
        raise ValueError(f"focal_op's losses take the classes on the last axis (axis=-1); got axis={axis!r}. "
                         "Move the class axis last (e.g. with keras.ops.moveaxis) first.")
    return -1


def _rank(x):
    """The rank of a tensor or array; None when unknown (a TensorFlow graph tensor)."""
    shape = x.shape
    return shape.rank if hasattr(shape, "rank") else len(shape)


def _same_rank(y_true, y_pred):
    """Keras's shape handling of its losses: when the ranks differ by one and the longer tensor
    ends in a dimension of 1, expand a rank-1 tensor to [N, 1], or else squeeze that dimension
    (labels [N] with outputs [N, 1], as from Dense(1), and the converse)."""
    true_rank, pred_rank = _rank(y_true), _rank(y_pred)
    if true_rank is None or pred_rank is None or true_rank == pred_rank:
        return y_true, y_pred
    if true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        if pred_rank == 1:
            return y_true, keras.ops.expand_dims(y_pred, -1)
        return keras.ops.squeeze(y_true, -1), y_pred
    if pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        if true_rank == 1:
            return keras.ops.expand_dims(y_true, -1), y_pred
        return y_true, keras.ops.squeeze(y_pred, -1)
    return y_true, y_pred


def _softmax_probabilities_to_logits(probabilities):
    """Keras's handling of softmax probabilities: normalise, clip to [ε, 1-ε], take the log."""
    epsilon = keras.config.epsilon()
    p = probabilities / keras.ops.sum(probabilities, axis=-1, keepdims=True)
    return keras.ops.log(keras.ops.clip(p, epsilon, 1.0 - epsilon))


def _sigmoid_probabilities_to_logits(probabilities):
    """Keras's handling of sigmoid probabilities: clip to [ε, 1-ε], then the logit."""
    epsilon = keras.config.epsilon()
    p = keras.ops.clip(probabilities, epsilon, 1.0 - epsilon)
    return keras.ops.log(p) - keras.ops.log1p(-p)


def _functions():
    """The focal functions of Keras's backend: focal_op.ops (TensorFlow) or focal_op.jax (JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from focal_op import ops

        return ops
    if backend == "jax":
        import focal_op.jax

        return focal_op.jax
    raise NotImplementedError(
        f"focal_op's losses run on Keras's TensorFlow and JAX backends; the active backend is {backend!r} "
        "(set KERAS_BACKEND=tensorflow or jax)")


def _attach_mask(loss, mask):
    """Marks ignored rows the way Keras's own sparse cross-entropy does, so the reduction averages
    over the remaining rows."""
    try:
        from keras.src.backend import set_keras_mask
    except ImportError:  # pragma: no cover - older/newer Keras layouts
        loss._keras_mask = mask
    else:
        set_keras_mask(loss, mask)
    return loss


class _FocalLoss(keras.losses.Loss):
    """Arguments and config shared by the three classes."""

    def __init__(self, gamma, alpha, from_logits, label_smoothing, axis, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _functions()  # a clear error on a backend without focal_op's kernels
        _arguments.check_gamma(gamma)
        _arguments.check_label_smoothing(label_smoothing)
        if not _arguments._is_number(gamma) or not _arguments._is_number(label_smoothing):
            raise TypeError("the loss classes take gamma and label_smoothing as numbers (they are saved in the config)")
        self.gamma = _arguments.as_number(gamma)
        self.alpha = _alpha_config(alpha)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _arguments.as_number(label_smoothing)
        self.axis = _check_axis(axis)

    def get_config(self):
        config = super().get_config()
        config.update(gamma=self.gamma, alpha=self.alpha, from_logits=self.from_logits,
                      label_smoothing=self.label_smoothing, axis=self.axis)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseCategoricalFocalLoss(_FocalLoss):
    """Softmax focal loss with integer labels (``[N]``, ``[N, 1]`` or float-typed, as Keras
    pipelines deliver them) and predictions ``[N, C]`` (logits or probabilities).

    Args:
      gamma: focusing parameter γ >= 0.
      alpha: None, a float, or a length-C vector of class weights.
      from_logits: whether ``y_pred`` holds logits (else probabilities, handled as Keras does).
      epsilon: None/0 for the exact log-softmax, or the clip of the classic formula.
      label_smoothing: s in [0, 1]: y = (1-s)·onehot + s/C.
      ignore_class: a label whose rows get loss 0 and are left out of the average.
    """

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, epsilon=None, label_smoothing=0.0,
                 ignore_class=None, axis=-1, reduction="sum_over_batch_size", name="sparse_categorical_focal_loss",
                 dtype=None):
        super().__init__(gamma, alpha, from_logits, label_smoothing, axis, reduction, name, dtype)
        self.epsilon = _arguments.check_epsilon(epsilon) or None
        _arguments.check_ignore_class(ignore_class)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def call(self, y_true, y_pred):
        y_pred = keras.ops.convert_to_tensor(y_pred)
        y_true = keras.ops.convert_to_tensor(y_true)
        if _rank(y_true) is not None and _rank(y_true) == _rank(y_pred) and y_true.shape[-1] == 1:
            y_true = keras.ops.squeeze(y_true, axis=-1)
        if keras.backend.standardize_dtype(y_true.dtype) not in ("int32", "int64"):
            y_true = keras.ops.cast(y_true, "int64" if keras.backend.backend() == "tensorflow" else "int32")
        logits = y_pred if self.from_logits else _softmax_probabilities_to_logits(y_pred)
        loss = _functions().sparse_softmax_focal_loss(
            y_true, logits, gamma=self.gamma, alpha=self.alpha, epsilon=self.epsilon,
            label_smoothing=self.label_smoothing, ignore_class=self.ignore_class)
        if self.ignore_class is not None:
            _attach_mask(loss, keras.ops.not_equal(y_true, self.ignore_class))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, ignore_class=self.ignore_class)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalFocalLoss(_FocalLoss):
    """Softmax focal loss with one-hot or soft labels ``[N, C]`` (Keras
    CategoricalFocalCrossentropy's formula; here alpha defaults to None, i.e. 1).

    Args:
      gamma, alpha, from_logits, epsilon: as in :class:`SparseCategoricalFocalLoss`.
      label_smoothing: s in [0, 1]: y = y·(1-s) + s/C.
    """

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, epsilon=None, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_loss", dtype=None):
        super().__init__(gamma, alpha, from_logits, label_smoothing, axis, reduction, name, dtype)
        self.epsilon = _arguments.check_epsilon(epsilon) or None

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred))
        logits = y_pred if self.from_logits else _softmax_probabilities_to_logits(y_pred)
        return _functions().softmax_focal_loss(y_true, logits, gamma=self.gamma, alpha=self.alpha, epsilon=self.epsilon,
                                      label_smoothing=self.label_smoothing)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryFocalLoss(_FocalLoss):
    """Sigmoid focal loss for binary and multi-label targets, averaged over the last axis as
    Keras's BinaryFocalCrossentropy does. ``alpha`` set is Keras's ``apply_class_balancing=True``
    with that alpha; it may also be a vector over the last axis (one α per label). Labels ``[N]``
    with outputs ``[N, 1]`` (a ``Dense(1)`` head) are matched as Keras matches them.

    Args:
      gamma: focusing parameter γ >= 0.
      alpha: None (no class balancing), a float in [0, 1], or a vector of them over the last axis.
      from_logits: whether ``y_pred`` holds logits (else probabilities, clipped as Keras does).
      label_smoothing: s in [0, 1]: y = y·(1-s) + s/2.
      apply_class_balancing: Keras's switch. None: ``alpha`` decides. True: ``alpha``, or Keras's
        default 0.25 when alpha is None. False: no alpha, as in Keras, whatever ``alpha`` says.
      axis: -1 (the only axis supported; anything else raises ValueError).
    """

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0, apply_class_balancing=None,
                 axis=-1, reduction="sum_over_batch_size", name="binary_focal_loss", dtype=None):
        if apply_class_balancing is not None and not isinstance(apply_class_balancing, (bool, np.bool_)):
            raise TypeError(f"apply_class_balancing must be None, True or False; got {apply_class_balancing!r}")
        if apply_class_balancing is not None:
            alpha = (0.25 if alpha is None else alpha) if apply_class_balancing else None
        super().__init__(gamma, alpha, from_logits, label_smoothing, axis, reduction, name, dtype)

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred))
        logits = y_pred if self.from_logits else _sigmoid_probabilities_to_logits(y_pred)
        # the mean over the last axis inside the op: the elementwise loss is never stored
        return _functions().sigmoid_focal_loss(y_true, logits, gamma=self.gamma, alpha=self.alpha,
                                      label_smoothing=self.label_smoothing, reduction="mean_over_classes")
