"""focal_op.sparse_softmax_focal_loss against the pure-TF reference, float64 numeric gradients,
TF's own sparse softmax cross-entropy and a 50-digit mpmath oracle."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import TOLERANCE, random_labels, random_logits, value_and_gradient

import focal_op
import mp_oracle

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
ALPHAS = {"none": None, "float": 0.25, "vector": "per-class"}
EPSILONS = [None, 1e-3]
SHAPES = [(7, 1), (9, 2), (16, 10), (6, 1000), (2, 3, 4, 5)]


def _alpha_for(kind, classes, rng):
    if kind == "vector":
        return rng.uniform(0.1, 1.0, size=classes)
    return ALPHAS[kind]


def _assert_close(actual, expected, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("epsilon", EPSILONS, ids=["exact", "clip"])
@pytest.mark.parametrize("alpha_kind", list(ALPHAS))
@pytest.mark.parametrize("gamma", GAMMAS)
def test_matches_reference(gamma, alpha_kind, epsilon, dtype, rng):
    for shape in SHAPES:
        classes = shape[-1]
        logits = tf.constant(random_logits(rng, shape), dtype)
        labels = random_labels(rng, shape[:-1], classes)
        alpha = _alpha_for(alpha_kind, classes, rng)
        for label_smoothing in (0.0, 0.1):
            for ignore_class in (None, int(labels.flat[0])):
                kwargs = dict(gamma=gamma, alpha=alpha, epsilon=epsilon, label_smoothing=label_smoothing,
                              ignore_class=ignore_class)
                loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits, **kwargs)
                ref_loss, ref_grad = value_and_gradient(focal_op.reference.sparse_softmax_focal_loss, labels,
                                                        logits, **kwargs)
                what = f"shape={shape} {kwargs}"
                assert loss.shape == shape[:-1] and loss.dtype == dtype.as_numpy_dtype
                _assert_close(loss, ref_loss, dtype, "loss " + what)
                assert np.all(np.isfinite(grad)), what
                if classes == 1:
                    # p ≡ 1: the loss is constant, the reference's pow(0, γ) has no usable gradient
                    assert np.all(grad == 0), what
                else:
                    _assert_close(grad, ref_grad, dtype, "gradient " + what)
                if ignore_class is not None:
                    ignored = labels == ignore_class
                    assert np.all(loss[ignored] == 0) and np.all(grad[ignored] == 0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(gamma=g) for g in GAMMAS]
    + [
        dict(gamma=2.0, alpha=[0.2, 0.5, 0.9, 0.4]),
        dict(gamma=0.3, alpha=0.25, label_smoothing=0.2),
        dict(gamma=1.5, epsilon=1e-3),
        dict(gamma=0.5, epsilon=0.2, label_smoothing=0.1),
        dict(gamma=2.0, ignore_class=1),
    ],
    ids=str,
)
def test_float64_numeric_gradient(kwargs, rng):
    for shape in [(3, 4), (2, 2, 4)]:
        logits = tf.constant(random_logits(rng, shape, scale=1.5))
        labels = tf.constant(random_labels(rng, shape[:-1], shape[-1]))

        row_weights = tf.reshape(tf.range(1.0, 1.0 + tf.cast(tf.size(labels), tf.float64)), labels.shape) / 7.0

        def loss_sum(z):
            return tf.reduce_sum(focal_op.sparse_softmax_focal_loss(labels, z, **kwargs) * row_weights)

        theoretical, numerical = tf.test.compute_gradient(loss_sum, [logits], delta=1e-6)
        np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("label_dtype", [tf.int32, tf.int64])
def test_gamma_zero_is_sparse_softmax_cross_entropy(dtype, label_dtype, rng):
    for shape in [(64, 10), (5, 1000), (2, 3, 7)]:
        logits = tf.constant(random_logits(rng, shape, scale=4.0), dtype)
        labels = tf.constant(random_labels(rng, shape[:-1], shape[-1]), label_dtype)
        loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits, gamma=0.0)
        ce_loss, ce_grad = value_and_gradient(tf.nn.sparse_softmax_cross_entropy_with_logits, labels, logits)
        _assert_close(loss, ce_loss, dtype, "loss")
        _assert_close(grad, ce_grad, dtype, "gradient")


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
def test_extreme_logits_match_high_precision_oracle(gamma):
    # saturated correct rows, confidently wrong rows, ±1e4 logits
    logits = np.array(
        [
            [1e4, -1e4, 0.0],
            [-1e4, 1e4, 0.0],
            [30.0, -30.0, 0.0],
            [40.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [-1e4, -1e4, -1e4],
            [20.0, 20.0, -5.0],
        ]
    )
    labels = np.array([0, 0, 0, 0, 2, 1, 1])
    expected_loss, expected_grad = mp_oracle.sparse_softmax_focal(labels, logits, gamma)
    for dtype, rtol in [(tf.float32, 1e-5), (tf.float64, 1e-10)]:
        loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, tf.constant(logits, dtype),
                                        gamma=gamma)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        # value_and_gradient weights row r by (r + 1) / (rows + 1)
        weights = (np.arange(1, len(labels) + 1) / (len(labels) + 1))[:, None]
        np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=1e-30)
        np.testing.assert_allclose(grad, expected_grad * weights, rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5])
def test_finite_where_the_plain_composite_is_nan(gamma):
    logits = tf.constant([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [50.0, -50.0, -50.0]])
    labels = tf.constant([0, 0, 0])

    def plain_composite(labels, logits):
        p = tf.gather(tf.nn.softmax(logits), labels, batch_dims=1)
        return tf.pow(1.0 - p, gamma) * -tf.math.log(p)

    _, plain_grad = value_and_gradient(plain_composite, labels, logits)
    assert not np.all(np.isfinite(plain_grad)), "the composite was expected to fail here"
    loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits, gamma=gamma)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_confidently_wrong_row_keeps_its_gradient(gamma):
    logits = tf.constant([[-60.0, 60.0, 0.0]])
    loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, [0], logits, gamma=gamma, alpha=0.25)
    # p_t ~ e^-120: loss ~ 0.25·120 and the target's gradient tends to -alpha
    np.testing.assert_allclose(loss, [0.25 * 120.0], rtol=1e-6)
    assert grad[0, 0] < -0.2 * 0.5 and grad[0, 1] > 0.2 * 0.5


def test_clip_mode_has_zero_gradient_where_clipped():
    logits = tf.constant([[10.0, -10.0, 0.0], [0.2, 0.1, 0.0]])
    loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, [0, 0], logits, epsilon=1e-3)
    assert np.all(grad[0] == 0) and np.any(grad[1] != 0)
    ref_loss, _ = value_and_gradient(focal_op.reference.sparse_softmax_focal_loss, [0, 0], logits, epsilon=1e-3)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_16bit_logits_are_computed_in_float32(dtype, rng):
    for gamma in (0.5, 2.0):
        logits16 = tf.constant(random_logits(rng, (32, 10), dtype=np.float32), dtype)
        labels = random_labels(rng, (32,), 10)
        upstream = rng.integers(1, 4, size=32)  # small integers: exact in every dtype

        def loss_and_grad(z):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = focal_op.sparse_softmax_focal_loss(labels, z, gamma=gamma)
            return loss.numpy(), tape.gradient(loss, z, output_gradients=tf.constant(upstream, z.dtype)).numpy()

        loss, grad = loss_and_grad(logits16)
        assert loss.dtype == dtype.as_numpy_dtype and grad.dtype == dtype.as_numpy_dtype
        ref_loss, ref_grad = loss_and_grad(tf.cast(logits16, tf.float32))
        # the float32 result rounded once to the 16-bit output type
        np.testing.assert_array_equal(loss, tf.cast(ref_loss, dtype).numpy())
        np.testing.assert_array_equal(grad, tf.cast(ref_grad, dtype).numpy())


def test_unknown_dims_inside_tf_function(rng):
    fn = tf.function(
        lambda y, z: focal_op.sparse_softmax_focal_loss(y, z, gamma=2.0, alpha=0.25),
        input_signature=[tf.TensorSpec(None, tf.int64), tf.TensorSpec([None, None, None], tf.float32)],
    )
    logits = random_logits(rng, (2, 3, 5), dtype=np.float32)
    labels = random_labels(rng, (2, 3), 5)
    expected = focal_op.reference.sparse_softmax_focal_loss(labels, logits, gamma=2.0, alpha=0.25)
    np.testing.assert_allclose(fn(labels, logits), expected, rtol=1e-5)
    concrete = tf.function(lambda y, z: focal_op.sparse_softmax_focal_loss(y, z)).get_concrete_function(
        tf.TensorSpec([None, 4], tf.int32), tf.TensorSpec([None, 4, 10], tf.float32))
    assert concrete.structured_outputs.shape.as_list() == [None, 4]


@pytest.mark.parametrize("shape", [(0, 10), (2, 0, 10), (0, 0)])
def test_empty_batches(shape):
    logits = tf.zeros(shape)
    labels = tf.zeros(shape[:-1], tf.int64)
    loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits)
    assert loss.shape == shape[:-1] and grad.shape == shape


def test_nan_stays_in_its_row():
    logits = tf.constant([[0.0, np.nan, 1.0], [0.5, -0.5, 2.0], [np.nan, np.nan, np.nan]])
    loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, [0, 1, 2], logits)
    assert np.isnan(loss[0]) and np.isnan(loss[2]) and np.isfinite(loss[1])
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))


def test_pybind_core_matches_tf_op(rng):
    import ml_dtypes

    from focal_op import _focal_core

    for dtype, np_dtype in [(tf.float32, np.float32), (tf.float64, np.float64), (tf.float16, np.float16),
                            (tf.bfloat16, ml_dtypes.bfloat16)]:
        logits = random_logits(rng, (4, 6, 11)).astype(np_dtype)
        labels = random_labels(rng, (4, 6), 11, dtype=np.int32)
        labels[0, 0] = 3
        kwargs = dict(gamma=0.7, alpha=rng.uniform(0.1, 1, 11), epsilon=0.0, label_smoothing=0.05, ignore_class=3)
        upstream = rng.uniform(0.5, 1.5, size=(4, 6)).astype(np_dtype)
        loss, stats = _focal_core.sparse_softmax_forward(labels, logits, **kwargs)
        grad = _focal_core.sparse_softmax_backward(labels, logits, stats, upstream, **kwargs)

        z = tf.constant(logits, dtype)
        with tf.GradientTape() as tape:
            tape.watch(z)
            tf_loss = focal_op.sparse_softmax_focal_loss(labels, z, **kwargs)
        tf_grad = tape.gradient(tf_loss, z, output_gradients=tf.constant(upstream, dtype))
        assert loss.dtype == np_dtype and grad.dtype == np_dtype
        np.testing.assert_array_equal(loss.astype(np.float64), tf.cast(tf_loss, tf.float64).numpy())
        np.testing.assert_array_equal(grad.astype(np.float64), tf.cast(tf_grad, tf.float64).numpy())


def test_pybind_core_rejects_bad_labels():
    from focal_op import _focal_core

    with pytest.raises(ValueError, match=r"label value of 7 .* \[0, 3\)"):
        _focal_core.sparse_softmax_forward(np.array([0, 7]), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="gamma"):
        _focal_core.sparse_softmax_forward(np.array([0]), np.zeros((1, 3), np.float32), gamma=-1.0)


@pytest.mark.parametrize("classes", [1, 2, 5, 16, 17, 32, 33])
def test_short_rows_in_blocks_match_reference(classes, rng):
    # short rows run 16 at a time; blocks with an ignored row, and the leftover rows, run one by one
    rows = 16 * 3 + 5
    logits = tf.constant(random_logits(rng, (rows, classes)))
    labels = random_labels(rng, (rows,), classes)
    labels[20] = -1
    for gamma in (0.0, 0.5, 2.0, 1.7):
        for kwargs in (dict(gamma=gamma, alpha=rng.uniform(0.1, 1, classes)), dict(gamma=gamma, epsilon=1e-3),
                       dict(gamma=gamma, ignore_class=-1)):
            y = labels if "ignore_class" in kwargs else np.where(labels < 0, 0, labels)
            loss, grad = value_and_gradient(focal_op.sparse_softmax_focal_loss, y, logits, **kwargs)
            ref_loss, ref_grad = value_and_gradient(focal_op.reference.sparse_softmax_focal_loss, y, logits, **kwargs)
            _assert_close(loss, ref_loss, tf.float64, f"loss C={classes} {kwargs}")
            if classes > 1:
                _assert_close(grad, ref_grad, tf.float64, f"gradient C={classes} {kwargs}")
            for dtype in (tf.float32,):
                loss32, grad32 = value_and_gradient(focal_op.sparse_softmax_focal_loss, y, tf.cast(logits, dtype),
                                                    **kwargs)
                np.testing.assert_allclose(loss32, ref_loss, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(grad32, ref_grad if classes > 1 else 0 * grad32, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("classes", [300, 1024])
def test_large_batch_gradient_with_streaming_stores(classes, rng):
    """Batches large enough for the non-temporal-store path (float32 rows of >= 256 classes, >= 2 MiB
    of gradient per shard), with rows that do and do not start 64-byte aligned: same gradient as
    float64 to float32 accuracy, also through the pybind11 core."""
    rows = 4096
    logits64 = random_logits(rng, (rows, classes))
    labels = random_labels(rng, (rows,), classes)
    kwargs = dict(gamma=2.0, alpha=0.25)
    loss32, grad32 = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, tf.constant(logits64, tf.float32),
                                        **kwargs)
    loss64, grad64 = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, tf.constant(logits64), **kwargs)
    np.testing.assert_allclose(loss32, loss64, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(grad32, grad64, rtol=2e-5, atol=1e-7)
    from focal_op import _focal_core as core

    logits32 = tf.constant(logits64, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits32)
        total = tf.reduce_sum(focal_op.sparse_softmax_focal_loss(labels, logits32, **kwargs))
    tf_grad = tape.gradient(total, logits32).numpy()
    _, stats = core.sparse_softmax_forward(labels, logits32.numpy(), **kwargs)
    core_grad = core.sparse_softmax_backward(labels, logits32.numpy(), stats, np.ones(rows, np.float32), **kwargs)
    np.testing.assert_array_equal(core_grad, tf_grad)  # one range vs TF's shards: same bits per row
