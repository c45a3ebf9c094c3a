"""focal_op.class_weights against the formulas written out independently."""

import numpy as np
import pytest

import focal_op

COUNTS = [900, 90, 9, 1]


def test_inverse_frequency():
    weights = focal_op.class_weights(COUNTS)
    raw = np.array([1 / 900, 1 / 90, 1 / 9, 1.0])
    np.testing.assert_allclose(weights, raw / raw.mean(), rtol=1e-14)
    np.testing.assert_allclose(focal_op.class_weights(COUNTS, normalize="sum"), raw / raw.sum(), rtol=1e-14)
    np.testing.assert_allclose(focal_op.class_weights(COUNTS, normalize=None), raw, rtol=1e-14)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_effective_number_of_samples(beta):
    # Cui et al. (2019): E_n = (1 - beta^n) / (1 - beta); weight = 1 / E_n, normalised to sum to C
    effective = np.array([(1 - beta**n) / (1 - beta) for n in COUNTS])
    expected = (1 / effective) * len(COUNTS) / np.sum(1 / effective)
    np.testing.assert_allclose(focal_op.class_weights(COUNTS, "effective_number", beta=beta), expected, rtol=1e-12)


def test_effective_number_limits():
    np.testing.assert_allclose(focal_op.class_weights(COUNTS, "effective_number", beta=0.0), np.ones(4))
    np.testing.assert_allclose(focal_op.class_weights(COUNTS, "effective_number", beta=1 - 1e-12),
                               focal_op.class_weights(COUNTS), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(counts=[3, 0, 1]), "positive"),
        (dict(counts=[[1, 2]]), "1-D"),
        (dict(counts=[]), "non-empty"),
        (dict(counts=[1, 2], method="median"), "method"),
        (dict(counts=[1, 2], method="effective_number", beta=1.0), "beta"),
        (dict(counts=[1, 2], normalize="max"), "normalize"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        focal_op.class_weights(**kwargs)
