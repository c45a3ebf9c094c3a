"""Framework-free argument checks, shared by the TensorFlow functions (_checks.py) and focal_op.jax:
what a number is, and the values of hyper-parameters checked by the kernel core's own checks
(csrc/core/validate.h through focal_op._focal_core), so every path raises the same texts."""

from __future__ import annotations

import numbers
import sys

import numpy as np


def _is_number(value) -> bool:
    """A real number: Python or NumPy, of any width, or a 0-d NumPy array; not a bool."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_number(value) -> float:
    """A value _is_number accepts, as a Python float."""
    return float(value[()] if isinstance(value, np.ndarray) else value)


def check_number_or_tensor(name: str, value) -> None:
    """TypeError unless value is a real number or a numeric tensor or array (TensorFlow, NumPy, JAX);
    bools and strings are neither."""
    if _is_number(value):
        return
    dtype = getattr(value, "dtype", None)
    if isinstance(value, (bool, np.bool_, str, bytes)) or dtype is None:
        raise TypeError(f"{name} must be a real number or a float tensor; got {type(value).__name__} {value!r}")
    dtype_name = getattr(dtype, "name", str(dtype))
    if not dtype_name.startswith(("float", "bfloat", "int", "uint")):
        raise TypeError(f"{name} must be a real number or a float tensor; got a {dtype_name} tensor")


def _core():
    from focal_op import _focal_core

    return _focal_core


def _number_or(value, neutral: float) -> float:
    """A Python number's value for the core's checks; a tensor's (checked by the kernel) neutral."""
    return as_number(value) if _is_number(value) else neutral


def check_softmax_values(gamma=0.0, epsilon=0.0, label_smoothing=0.0, alpha=(), last_axis=-1,
                         compute_max=sys.float_info.max) -> None:
    """ValueError, in the kernels' words, unless the numbers are valid softmax hyper-parameters
    (last_axis: the classes, < 0 when not known; compute_max: the compute dtype's largest value)."""
    _core().check_softmax_params(_number_or(gamma, 0.0), _number_or(epsilon, 0.0), _number_or(label_smoothing, 0.0),
                                 list(alpha), last_axis, compute_max)


def check_sigmoid_values(gamma=0.0, label_smoothing=0.0, alpha=(), last_axis=-1, compute_max=sys.float_info.max) -> None:
    """As check_softmax_values, for the sigmoid (alpha in [0, 1]; last_axis: the columns)."""
    _core().check_sigmoid_params(_number_or(gamma, 0.0), _number_or(label_smoothing, 0.0), list(alpha), last_axis,
                                 compute_max)


def check_gamma(gamma) -> None:
    check_number_or_tensor("gamma", gamma)
    check_softmax_values(gamma=gamma)


def check_label_smoothing(label_smoothing) -> None:
    check_number_or_tensor("label_smoothing", label_smoothing)
    check_softmax_values(label_smoothing=label_smoothing)


def check_epsilon(epsilon) -> float:
    """None or 0 select the exact log-softmax; (0, 0.5) selects the clipped seed formula."""
    if epsilon is None:
        return 0.0
    if not _is_number(epsilon):
        raise TypeError(f"epsilon must be None or a real number; got {type(epsilon).__name__} {epsilon!r}")
    check_softmax_values(epsilon=epsilon)
    return as_number(epsilon)


def check_ignore_class(ignore_class) -> None:
    if ignore_class is not None and (not isinstance(ignore_class, numbers.Integral) or isinstance(ignore_class, bool)):
        raise TypeError(f"ignore_class must be None or an int; got {ignore_class!r}")


SIGMOID_REDUCTIONS = ("none", "sum_over_classes", "mean_over_classes", "sum", "mean")


def check_sigmoid_reduction_name(reduction, logits_rank) -> str:
    """The sigmoid loss's `reduction`; the per-row ones need logits of rank >= 1 (rank None: unknown)."""
    if reduction not in SIGMOID_REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(repr(r) for r in SIGMOID_REDUCTIONS)}; got {reduction!r}")
    if reduction.endswith("_over_classes") and logits_rank == 0:
        raise ValueError(f"reduction={reduction!r} needs logits of rank >= 1; got a scalar")
    return reduction
