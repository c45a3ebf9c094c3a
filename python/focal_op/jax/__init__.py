"""focal_op.jax: the fused focal losses in JAX — the kernels the TensorFlow ops run, called as XLA
FFI custom calls (the handlers of csrc/xla, built into focal_op._focal_jax). No TensorFlow needed.

    import focal_op.jax as fj
    loss = fj.sparse_softmax_focal_loss(labels, logits, gamma=2.0, alpha=0.25)   # [..., C] logits
    grad = jax.grad(lambda z: fj.softmax_focal_loss(y, z).sum())(logits)

The same arguments and semantics as the TensorFlow functions (focal_op.sparse_softmax_focal_loss,
...). Differentiable through jax.custom_vjp (the forward's row statistics are the residuals);
works under jit, grad and vmap (vmap runs one call per batch element: give the losses any leading
dims instead where you can). Hyper-parameters given as Python or NumPy numbers travel as
attributes of the call; JAX arrays (e.g. a scheduled gamma) as an operand read at run time. On
the CPU, labels outside [0, C) and bad run-time hyper-parameters raise (the handler's error, which
JAX raises as ValueError: INVALID_ARGUMENT with the kernels' text); on the GPU such labels give NaN
rows, as in TensorFlow.
Without jax_enable_x64, float64 values (alpha, run-time hyper-parameters) reach the kernels as
their two 32-bit halves, bit for bit; a float32 run-time hyper-parameter is widened exactly
(float32 subnormals become 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from focal_op import _arguments
from focal_op.jax import reference  # noqa: F401

__all__ = ["sparse_softmax_focal_loss", "softmax_focal_loss", "sigmoid_focal_loss", "reference"]

ROW_STATS = 4
_FLOAT_DTYPES = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
_SOFTMAX_FORWARD, _SOFTMAX_BACKWARD = "focal_op_softmax_forward", "focal_op_softmax_backward"
_SIGMOID_FORWARD, _SIGMOID_BACKWARD = "focal_op_sigmoid_forward", "focal_op_sigmoid_backward"


@functools.lru_cache(maxsize=None)
def _register_targets() -> None:
    """Registers the handlers with JAX once: every target for "cpu", and for "CUDA" in CUDA builds
    when this jaxlib has a CUDA backend."""
    try:
        from focal_op import _focal_jax
    except ImportError as err:
        raise ImportError(
            "focal_op was built without its JAX extension (jax was not importable when it was built): "
            "install jax, then rebuild focal_op (`pip install --no-build-isolation --force-reinstall --no-deps .`)"
        ) from err
    for name, platforms in _focal_jax.targets().items():
        for platform, capsule in platforms.items():
            if platform == "CUDA" and not _has_cuda_backend():
                continue
            jax.ffi.register_ffi_target(name, capsule, platform=platform)


def _has_cuda_backend() -> bool:
    try:
        return bool(jax.devices("cuda"))
    except RuntimeError:
        return False


# ---- arguments ---------------------------------------------------------------------------------

def _compute_max(dtype) -> float:
    return float(np.finfo(np.float64 if dtype == jnp.float64 else np.float32).max)


def _logits_array(logits, min_rank=1):
    logits = jnp.asarray(logits)
    if logits.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"logits must be float16, bfloat16, float32 or float64; got {logits.dtype}")
    if min_rank and logits.ndim == 0:
        raise ValueError("logits must have rank >= 1 ([..., C]); got a scalar")
    return logits


def _sparse_labels_array(labels, logits):
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype.itemsize not in (4, 8):
        raise TypeError(f"sparse labels must be int32 or int64; got {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels must have the shape of logits without its last axis; got labels {labels.shape} "
                         f"and logits {logits.shape}")
    return labels


def _dense_labels_array(labels, logits):
    labels = jnp.asarray(labels)
    if labels.shape != logits.shape:
        raise ValueError(f"labels must have the shape of logits; got labels {labels.shape} and logits {logits.shape}")
    return labels.astype(logits.dtype)


def _is_array(value) -> bool:
    return isinstance(value, (jax.Array, jax.core.Tracer))


def _check_hyper_type(name, value):
    """The TensorFlow functions' type check, plus: an array hyper-parameter is a float scalar."""
    _arguments.check_number_or_tensor(name, value)
    if _is_array(value) and (not jnp.issubdtype(value.dtype, jnp.floating) or value.ndim != 0):
        raise TypeError(f"{name} must be a real number or a float scalar array; got {value.dtype} {value.shape}")


def _f64_operand(values):
    """float64 values as a call operand: float64 arrays under jax_enable_x64, else their 32-bit
    halves (uint32 [..., 2], the same bytes; the handlers read either)."""
    if _is_array(values):
        return values.astype(jnp.float64) if jax.config.jax_enable_x64 else _f32_as_f64_halves(values)
    values = np.asarray(values, np.float64)
    if jax.config.jax_enable_x64:
        return jnp.asarray(values)
    return jnp.asarray(values.reshape(-1).view(np.uint32).reshape(values.shape + (2,)))


def _f32_as_f64_halves(x):
    """float32 values widened exactly to float64, as uint32 [..., 2] halves (little-endian: low
    word first); float32 subnormals become 0."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    sign = bits & jnp.uint32(0x80000000)
    exponent = (bits >> 23) & jnp.uint32(0xFF)
    mantissa = bits & jnp.uint32(0x7FFFFF)
    wide_exponent = jnp.where(exponent == 0xFF, jnp.uint32(0x7FF), exponent + jnp.uint32(1023 - 127))
    high = jnp.where(exponent == 0, sign, sign | (wide_exponent << 20) | (mantissa >> 3))
    low = jnp.where(exponent == 0, jnp.uint32(0), (mantissa & jnp.uint32(7)) << 29)
    return jnp.stack([low, high], axis=-1)


def _hyper_parameters(named, attrs):
    """(attributes, scalars operand): Python numbers as attributes; if any is an array, all of them
    as the run-time operand (the attributes then carry placeholders the checks accept)."""
    if not any(_is_array(v) for v in named.values()):
        attrs.update({k: np.float64(_arguments.as_number(v)) for k, v in named.items()})
        return _f64_operand(np.zeros([0]))
    attrs.update({k: np.float64(0.0) for k in named})
    return jnp.concatenate([_f64_operand(jnp.reshape(v, [1]) if _is_array(v) else [_arguments.as_number(v)])
                            for v in named.values()])


def _alpha_operand(alpha, logits, sigmoid):
    """alpha: None (softmax 1, sigmoid none), a number or a vector over the last axis, checked as
    in TensorFlow; arrays' values are checked by the handler when the call runs."""
    check = _arguments.check_sigmoid_values if sigmoid else _arguments.check_softmax_values
    last_axis = logits.shape[-1] if logits.ndim else 1
    if alpha is None:
        return _f64_operand(np.zeros([0]) if sigmoid else np.float64(1.0))
    if isinstance(alpha, (bool, np.bool_, str, bytes)):
        raise TypeError(f"alpha must be None, a real number or a vector of them; got {type(alpha).__name__}")
    if _is_array(alpha):
        if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.shape[0] != last_axis):
            raise ValueError(_arguments._core().alpha_length_error(int(np.prod(alpha.shape)), last_axis, sigmoid))
        return _f64_operand(alpha)
    values = np.asarray(alpha, np.float64)
    if values.ndim > 1:
        raise ValueError(f"alpha must be None, a float or a vector over the last axis; got shape {values.shape}")
    if values.ndim == 1 and values.size == 0:
        raise ValueError("alpha must not be empty (None means no alpha)")
    check(alpha=values.reshape(-1).tolist(), last_axis=last_axis if values.size > 1 else -1,
          compute_max=_compute_max(logits.dtype))
    return _f64_operand(values)


def _check_values(sigmoid, logits, **named):
    numbers = {k: v for k, v in named.items() if not _is_array(v)}
    check = _arguments.check_sigmoid_values if sigmoid else _arguments.check_softmax_values
    check(**numbers, compute_max=_compute_max(logits.dtype))


def _frozen(attrs):
    return tuple(sorted(attrs.items()))


# ---- the calls and their gradients -------------------------------------------------------------

def _stats_dtype(logits):
    return jnp.float64 if logits.dtype == jnp.float64 else jnp.float32


def _softmax_forward_call(logits, labels, alpha, scalars, attrs):
    results = (jax.ShapeDtypeStruct(logits.shape[:-1], logits.dtype),
               jax.ShapeDtypeStruct(logits.shape[:-1] + (ROW_STATS,), _stats_dtype(logits)))
    call = jax.ffi.ffi_call(_SOFTMAX_FORWARD, results, vmap_method="sequential")
    return call(logits, labels, alpha, scalars, **dict(attrs))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _softmax_loss(logits, labels, alpha, scalars, attrs):
    return _softmax_forward_call(logits, labels, alpha, scalars, attrs)[0]


def _softmax_loss_forward(logits, labels, alpha, scalars, attrs):
    loss, stats = _softmax_forward_call(logits, labels, alpha, scalars, attrs)
    return loss, (logits, labels, alpha, scalars, stats)


def _softmax_loss_backward(attrs, residuals, loss_grad):
    logits, labels, alpha, scalars, stats = residuals
    call = jax.ffi.ffi_call(_SOFTMAX_BACKWARD, jax.ShapeDtypeStruct(logits.shape, logits.dtype),
                            vmap_method="sequential")
    grad = call(logits, labels, alpha, scalars, stats, loss_grad.astype(logits.dtype), **dict(attrs))
    return grad, None, None, None


_softmax_loss.defvjp(_softmax_loss_forward, _softmax_loss_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _sigmoid_loss(logits, labels, alpha, scalars, attrs):
    attrs = dict(attrs)
    shape = logits.shape[:-1] if attrs["sum_over_classes"] else logits.shape
    call = jax.ffi.ffi_call(_SIGMOID_FORWARD, jax.ShapeDtypeStruct(shape, logits.dtype), vmap_method="sequential")
    return call(logits, labels, alpha, scalars, **attrs)


def _sigmoid_loss_forward(logits, labels, alpha, scalars, attrs):
    return _sigmoid_loss(logits, labels, alpha, scalars, attrs), (logits, labels, alpha, scalars)


def _sigmoid_loss_backward(attrs, residuals, loss_grad):
    logits, labels, alpha, scalars = residuals
    attrs = dict(attrs)
    upstream = loss_grad.astype(logits.dtype)
    if attrs.pop("sum_over_classes"):
        upstream = upstream[..., None]  # one value per row
    call = jax.ffi.ffi_call(_SIGMOID_BACKWARD, jax.ShapeDtypeStruct(logits.shape, logits.dtype),
                            vmap_method="sequential")
    return call(logits, labels, alpha, scalars, upstream, **attrs), None, None, None


_sigmoid_loss.defvjp(_sigmoid_loss_forward, _sigmoid_loss_backward)


# ---- the losses --------------------------------------------------------------------------------

def sparse_softmax_focal_loss(labels, logits, *, gamma=2.0, alpha=None, epsilon=None, label_smoothing=0.0,
                              ignore_class=None):
    """JAX twin of focal_op.sparse_softmax_focal_loss: integer labels [...], logits [..., C];
    returns the loss [...] in the logits' dtype."""
    _register_targets()
    epsilon = _arguments.check_epsilon(epsilon)
    for name, value in (("gamma", gamma), ("label_smoothing", label_smoothing)):
        _check_hyper_type(name, value)
    _arguments.check_ignore_class(ignore_class)
    logits = _logits_array(logits)
    labels = _sparse_labels_array(labels, logits)
    _check_values(False, logits, gamma=gamma, epsilon=epsilon, label_smoothing=label_smoothing)
    alpha = _alpha_operand(alpha, logits, sigmoid=False)
    attrs = {"ignore_class": np.int64(0 if ignore_class is None else ignore_class),
             "has_ignore_class": ignore_class is not None}
    scalars = _hyper_parameters({"gamma": gamma, "epsilon": epsilon, "label_smoothing": label_smoothing}, attrs)
    return _softmax_loss(logits, labels, alpha, scalars, _frozen(attrs))


def softmax_focal_loss(labels, logits, *, gamma=2.0, alpha=None, epsilon=None, label_smoothing=0.0):
    """JAX twin of focal_op.softmax_focal_loss: dense (one-hot or soft) labels like logits."""
    _register_targets()
    epsilon = _arguments.check_epsilon(epsilon)
    for name, value in (("gamma", gamma), ("label_smoothing", label_smoothing)):
        _check_hyper_type(name, value)
    logits = _logits_array(logits)
    labels = _dense_labels_array(labels, logits)
    _check_values(False, logits, gamma=gamma, epsilon=epsilon, label_smoothing=label_smoothing)
    alpha = _alpha_operand(alpha, logits, sigmoid=False)
    attrs = {"ignore_class": np.int64(0), "has_ignore_class": False}
    scalars = _hyper_parameters({"gamma": gamma, "epsilon": epsilon, "label_smoothing": label_smoothing}, attrs)
    return _softmax_loss(logits, labels, alpha, scalars, _frozen(attrs))


def sigmoid_focal_loss(labels, logits, *, gamma=2.0, alpha=None, label_smoothing=0.0, reduction="none"):
    """JAX twin of focal_op.sigmoid_focal_loss (reduction: "none", "sum_over_classes",
    "mean_over_classes", "sum" or "mean")."""
    _register_targets()
    for name, value in (("gamma", gamma), ("label_smoothing", label_smoothing)):
        _check_hyper_type(name, value)
    logits = _logits_array(logits, min_rank=0)
    labels = _dense_labels_array(labels, logits)
    reduction = _arguments.check_sigmoid_reduction_name(reduction, logits.ndim)
    _check_values(True, logits, gamma=gamma, label_smoothing=label_smoothing)
    alpha = _alpha_operand(alpha, logits, sigmoid=True)
    per_row = reduction != "none" and logits.ndim > 0
    attrs = {"sum_over_classes": per_row}
    scalars = _hyper_parameters({"gamma": gamma, "label_smoothing": label_smoothing}, attrs)
    loss = _sigmoid_loss(logits, labels, alpha, scalars, _frozen(attrs))
    if not per_row or reduction == "sum_over_classes":
        return loss
    compute = _stats_dtype(logits)
    sums = loss.astype(compute)
    if reduction == "mean_over_classes":
        result = sums / logits.shape[-1]
    elif reduction == "sum":
        result = jnp.sum(sums)
    else:
        result = jnp.sum(sums) / logits.size
    return result.astype(logits.dtype)
