"""The float64 NumPy oracle of the GPU tests (numpy_oracle.py) against the CPU kernels, so the
oracle is itself checked on every machine (no TensorFlow needed: the pybind11 core)."""

import numpy as np
import pytest

import numpy_oracle
from focal_op import _focal_core as core

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("epsilon", [0.0, 1e-3], ids=["exact", "clip"])
@pytest.mark.parametrize("shape", [(9, 2), (16, 10), (6, 1000), (2, 3, 21)], ids=str)
def test_oracle_matches_cpu_softmax_kernels(shape, epsilon, gamma):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal(shape) * 3.0
    classes = shape[-1]
    labels = rng.integers(0, classes, size=shape[:-1])
    soft = rng.dirichlet(np.ones(classes), size=shape[:-1])
    upstream = rng.uniform(0.5, 1.5, size=shape[:-1])
    for alpha in (None, 0.25, rng.uniform(0.1, 1.0, classes)):
        for smoothing in (0.0, 0.1):
            kwargs = dict(alpha=alpha, gamma=gamma, epsilon=epsilon, label_smoothing=smoothing)
            loss, stats = core.sparse_softmax_forward(labels, logits, **kwargs)
            grad = core.sparse_softmax_backward(labels, logits, stats, upstream, **kwargs)
            want_loss, want_grad = numpy_oracle.sparse_softmax(labels, logits, upstream=upstream, **kwargs)
            np.testing.assert_allclose(loss, want_loss, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)
            loss, stats = core.dense_softmax_forward(soft, logits, **kwargs)
            grad = core.dense_softmax_backward(soft, logits, stats, upstream, **kwargs)
            want_loss, want_grad = numpy_oracle.dense_softmax(soft, logits, upstream=upstream, **kwargs)
            np.testing.assert_allclose(loss, want_loss, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)


def test_oracle_ignore_class_matches_cpu_kernel():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((12, 5))
    labels = rng.integers(0, 5, size=12)
    labels[::3] = -1
    upstream = np.ones(12)
    loss, stats = core.sparse_softmax_forward(labels, logits, ignore_class=-1)
    grad = core.sparse_softmax_backward(labels, logits, stats, upstream, ignore_class=-1)
    want_loss, want_grad = numpy_oracle.sparse_softmax(labels, logits, ignore_class=-1, upstream=upstream)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)
    assert np.all(loss[::3] == 0) and np.all(grad[::3] == 0)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_oracle_matches_cpu_sigmoid_kernel(gamma):
    rng = np.random.default_rng(11)
    shape = (7, 13)
    logits = rng.standard_normal(shape) * 4.0
    upstream = rng.uniform(0.5, 1.5, size=shape)
    for labels in ((rng.uniform(size=shape) < 0.3).astype(np.float64), rng.uniform(size=shape)):
        for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
            for smoothing in (0.0, 0.1):
                kwargs = dict(alpha=alpha, gamma=gamma, label_smoothing=smoothing)
                loss = core.sigmoid_forward(labels, logits, **kwargs)
                grad = core.sigmoid_backward(labels, logits, upstream, **kwargs)
                want_loss, want_grad = numpy_oracle.sigmoid(labels, logits, upstream=upstream, **kwargs)
                np.testing.assert_allclose(loss, want_loss, rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 13), (40, 3), (2, 3, 300), (300, 10), (700, 3)], ids=str)
def test_sigmoid_broadcast_upstream_matches_oracle(shape):
    """loss_grad as one value for all elements ([]) or one per row ([..., 1]) gives the gradient
    of the broadcast upstream gradient (short rows in chunks of 2048 elements that end mid-row)."""
    rng = np.random.default_rng(12)
    logits = rng.standard_normal(shape) * 4.0
    labels = (rng.uniform(size=shape) < 0.3).astype(np.float64)
    for upstream in (np.array(0.75), rng.uniform(0.5, 1.5, size=shape[:-1] + (1,))):
        for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
            kwargs = dict(alpha=alpha, gamma=2.0, label_smoothing=0.1)
            grad = core.sigmoid_backward(labels, logits, upstream, **kwargs)
            full = core.sigmoid_backward(labels, logits, np.broadcast_to(upstream, shape).copy(), **kwargs)
            _, want = numpy_oracle.sigmoid(labels, logits, upstream=upstream, **kwargs)
            np.testing.assert_array_equal(grad, full)
            np.testing.assert_allclose(grad, want, rtol=1e-9, atol=1e-12)
    for bad in (np.ones(shape[:-1]), np.ones((1,) * len(shape)), np.ones(shape[:-1] + (2,))):
        with pytest.raises(ValueError, match="one value per row"):
            core.sigmoid_backward(labels, logits, bad)


@pytest.mark.parametrize("shape", [(37, 10), (16, 32), (5, 33), (3, 2, 4100), (6,)], ids=str)
def test_sigmoid_row_sums_match_oracle(shape):
    """sum_over_classes: the elementwise loss summed over the last axis, not stored (row-per-lane
    sums for short rows, pieces for long ones), in float64, float32 and 16-bit types."""
    rng = np.random.default_rng(13)
    logits = rng.standard_normal(shape) * 4.0
    labels = rng.uniform(size=shape)
    for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
        kwargs = dict(alpha=alpha, gamma=2.0, label_smoothing=0.1)
        want, _ = numpy_oracle.sigmoid(labels, logits, upstream=np.ones(shape), **kwargs)
        got = core.sigmoid_forward(labels, logits, sum_over_classes=True, **kwargs)
        assert got.shape == shape[:-1]
        np.testing.assert_allclose(got, want.sum(axis=-1), rtol=1e-12)
        got32 = core.sigmoid_forward(labels.astype(np.float32), logits.astype(np.float32), sum_over_classes=True,
                                     **kwargs)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, want.sum(axis=-1), rtol=2e-6)
        got16 = core.sigmoid_forward(labels.astype(np.float16), logits.astype(np.float16), sum_over_classes=True,
                                     **kwargs)
        want16, _ = numpy_oracle.sigmoid(labels.astype(np.float16).astype(np.float64),
                                         logits.astype(np.float16).astype(np.float64), upstream=np.ones(shape), **kwargs)
        np.testing.assert_allclose(got16, want16.sum(axis=-1), rtol=2e-3)
    np.testing.assert_array_equal(core.sigmoid_forward(np.ones((3, 0)), np.ones((3, 0)), sum_over_classes=True),
                                  np.zeros(3))
    with pytest.raises(ValueError, match="rank >= 1"):
        core.sigmoid_forward(np.array(1.0), np.array(0.5), sum_over_classes=True)


def test_sigmoid_scalar_logits():
    """0-d arrays stay 0-d: the loss of one logit."""
    want, _ = numpy_oracle.sigmoid(np.array(1.0), np.array(0.5), upstream=np.array(1.0), gamma=2.0)
    np.testing.assert_allclose(core.sigmoid_forward(np.array(1.0), np.array(0.5)), want, rtol=1e-12)
