"""Class weights (the ``alpha`` vector) from per-class sample counts."""

from __future__ import annotations

import numpy as np

__all__ = ["class_weights"]


def class_weights(counts, method="inverse", *, beta=0.999, normalize="mean"):
    """Per-class weights for ``alpha`` from the number of training samples of each class.

    Args:
      counts: per-class sample counts, a 1-D sequence of positive numbers.
      method: ``"inverse"``: w_c ∝ 1 / n_c (inverse frequency). ``"effective_number"``: the
        class-balanced weights of Cui et al. (2019), w_c ∝ (1 - β) / (1 - β^n_c), the inverse of
        the "effective number of samples"; β → 0 gives equal weights, β → 1 inverse frequency.
      beta: β in [0, 1) for ``"effective_number"`` (the paper uses 0.9 to 0.9999).
      normalize: ``"mean"`` (default): the weights average 1 over the classes, so the loss keeps
        its scale. ``"sum"``: they sum to 1. ``None``: unnormalised.

    Returns:
      A float64 NumPy vector of length C, ready to pass as ``alpha``.

    Raises:
      ValueError: for counts that are not a non-empty 1-D vector of positive finite numbers, an
        unknown method or normalisation, or beta outside [0, 1).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence; got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts <= 0):
        raise ValueError(f"counts must be positive and finite; got {counts.tolist()}")
    if method == "inverse":
        weights = 1.0 / counts
    elif method == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1); got {beta}")
        weights = (1.0 - beta) / -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
    else:
        raise ValueError(f"method must be 'inverse' or 'effective_number'; got {method!r}")
    if normalize == "mean":
        return weights * (counts.size / weights.sum())
    if normalize == "sum":
        return weights / weights.sum()
    if normalize is None:
        return weights
    raise ValueError(f"normalize must be 'mean', 'sum' or None; got {normalize!r}")
