"""focal_op.softmax_focal_loss (dense labels) and focal_op.sigmoid_focal_loss against the pure-TF
reference, float64 numeric gradients, the torchvision formula, Keras's focal losses and a
50-digit mpmath oracle."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TOLERANCE, random_labels, random_logits, value_and_gradient

import focal_op
import mp_oracle

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


def _assert_close(actual, expected, dtype, what=""):
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _soft_labels(rng, shape):
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


def _binary_labels(rng, shape, soft):
    return rng.uniform(size=shape) if soft else (rng.uniform(size=shape) < 0.3).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# dense softmax

@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("epsilon", [None, 1e-3], ids=["exact", "clip"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_dense_softmax_matches_reference(gamma, epsilon, dtype, rng):
    for shape in [(9, 2), (16, 10), (4, 1000), (2, 3, 4, 5)]:
        logits = tf.constant(random_logits(rng, shape), dtype)
        for alpha in (None, 0.25, rng.uniform(0.1, 1.0, shape[-1])):
            for label_smoothing in (0.0, 0.1):
                labels = _soft_labels(rng, shape)
                kwargs = dict(gamma=gamma, alpha=alpha, epsilon=epsilon, label_smoothing=label_smoothing)
                loss, grad = value_and_gradient(focal_op.softmax_focal_loss, labels, logits, **kwargs)
                ref_loss, ref_grad = value_and_gradient(focal_op.reference.softmax_focal_loss, labels, logits,
                                                        **kwargs)
                assert loss.shape == shape[:-1] and loss.dtype == dtype.as_numpy_dtype
                _assert_close(loss, ref_loss, dtype, f"loss {shape} {kwargs}")
                _assert_close(grad, ref_grad, dtype, f"gradient {shape} {kwargs}")


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_one_hot_dense_equals_sparse(gamma, rng):
    logits = tf.constant(random_logits(rng, (32, 10)))
    labels = random_labels(rng, (32,), 10)
    one_hot = tf.one_hot(labels, 10, dtype=tf.float64)
    for kwargs in (dict(gamma=gamma), dict(gamma=gamma, alpha=rng.uniform(0.1, 1, 10), label_smoothing=0.2),
                   dict(gamma=gamma, epsilon=1e-3)):
        dense = value_and_gradient(focal_op.softmax_focal_loss, one_hot, logits, **kwargs)
        sparse = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits, **kwargs)
        for a, b in zip(dense, sparse):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_dense_softmax_matches_keras(gamma, from_logits, rng):
    logits = random_logits(rng, (64, 10), dtype=np.float32)
    labels = _soft_labels(rng, (64, 10)).astype(np.float32)
    alpha = 0.25
    y_pred = logits if from_logits else tf.nn.softmax(logits).numpy()
    keras_loss = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, from_logits=from_logits,
                                                           label_smoothing=0.1, reduction=None)
    expected = keras_loss(labels, y_pred)
    fused = focal_op.losses.CategoricalFocalLoss(alpha=alpha, gamma=gamma, from_logits=from_logits,
                                                 epsilon=keras.config.epsilon(), label_smoothing=0.1, reduction=None)
    np.testing.assert_allclose(fused(labels, y_pred), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(gamma=g) for g in GAMMAS] + [
    dict(gamma=0.3, alpha=[0.2, 0.5, 0.9, 0.4], label_smoothing=0.2), dict(gamma=1.5, epsilon=1e-3)], ids=str)
def test_dense_softmax_float64_numeric_gradient(kwargs, rng):
    logits = tf.constant(random_logits(rng, (3, 4), scale=1.5))
    labels = tf.constant(_soft_labels(rng, (3, 4)))
    theoretical, numerical = tf.test.compute_gradient(
        lambda z: tf.reduce_sum(focal_op.softmax_focal_loss(labels, z, **kwargs) * [1.0, 2.0, 3.0]), [logits],
        delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# sigmoid

def torchvision_sigmoid_focal_loss(labels, logits, gamma, alpha):
    """torchvision.ops.sigmoid_focal_loss (reduction='none'), written out in float64 NumPy."""
    x = np.asarray(logits, np.float64)
    t = np.asarray(labels, np.float64)
    p = 1.0 / (1.0 + np.exp(-x))
    ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))  # binary_cross_entropy_with_logits
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_matches_reference(gamma, dtype, rng):
    for shape in [(7,), (16, 10), (2, 3, 4)]:
        logits = tf.constant(random_logits(rng, shape), dtype)
        for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
            for label_smoothing in (0.0, 0.1):
                for soft in (False, True):
                    labels = _binary_labels(rng, shape, soft)
                    kwargs = dict(gamma=gamma, alpha=alpha, label_smoothing=label_smoothing)
                    loss, grad = value_and_gradient(focal_op.sigmoid_focal_loss, labels, logits, **kwargs)
                    ref_loss, ref_grad = value_and_gradient(focal_op.reference.sigmoid_focal_loss, labels, logits,
                                                            **kwargs)
                    assert loss.shape == shape and loss.dtype == dtype.as_numpy_dtype
                    _assert_close(loss, ref_loss, dtype, f"loss {shape} soft={soft} {kwargs}")
                    _assert_close(grad, ref_grad, dtype, f"gradient {shape} soft={soft} {kwargs}")


@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_matches_torchvision_formula(gamma, alpha, rng):
    logits = random_logits(rng, (32, 5))
    labels = _binary_labels(rng, (32, 5), soft=False)
    loss = focal_op.sigmoid_focal_loss(labels, logits, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(loss, torchvision_sigmoid_focal_loss(labels, logits, gamma, alpha), rtol=1e-12,
                               atol=1e-15)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_matches_keras(gamma, alpha, from_logits, rng):
    logits = random_logits(rng, (64, 6), scale=2.0, dtype=np.float32)
    labels = _binary_labels(rng, (64, 6), soft=False).astype(np.float32)
    y_pred = logits if from_logits else tf.sigmoid(logits).numpy()
    expected = keras.losses.binary_focal_crossentropy(
        labels, y_pred, apply_class_balancing=alpha is not None, alpha=alpha or 0.25, gamma=gamma,
        from_logits=from_logits, label_smoothing=0.1)
    fused = focal_op.losses.BinaryFocalLoss(gamma=gamma, alpha=alpha, from_logits=from_logits, label_smoothing=0.1,
                                            reduction=None)
    np.testing.assert_allclose(fused(labels, y_pred), expected, rtol=2e-5, atol=1e-6)
    direct = tf.reduce_mean(focal_op.sigmoid_focal_loss(labels, y_pred if from_logits else logits, gamma=gamma,
                                                        alpha=alpha, label_smoothing=0.1), axis=-1)
    np.testing.assert_allclose(direct, expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(gamma=g) for g in GAMMAS] + [
    dict(gamma=0.3, alpha=[0.2, 0.5, 0.9, 0.4], label_smoothing=0.2), dict(gamma=1.5, alpha=0.25)], ids=str)
def test_sigmoid_float64_numeric_gradient(kwargs, rng):
    logits = tf.constant(random_logits(rng, (3, 4), scale=2.0))
    for soft in (False, True):
        labels = tf.constant(_binary_labels(rng, (3, 4), soft))
        theoretical, numerical = tf.test.compute_gradient(
            lambda z: tf.reduce_sum(focal_op.sigmoid_focal_loss(labels, z, **kwargs) * tf.range(1.0, 5.0, dtype=tf.float64)),
            [logits], delta=1e-6)
        np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
def test_sigmoid_extreme_logits_match_high_precision_oracle(gamma):
    logits = np.array([[100.0, -100.0, 1e4, -1e4, 30.0, -30.0, 0.0, 15.0]] * 2)
    labels = np.array([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.3], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.7]])
    expected_loss, expected_grad = mp_oracle.sigmoid_focal(labels, logits, gamma, alpha=0.25)
    for dtype, rtol in [(tf.float32, 1e-5), (tf.float64, 1e-10)]:
        z = tf.constant(logits, dtype)
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = focal_op.sigmoid_focal_loss(labels, z, gamma=gamma, alpha=0.25)
        grad = tape.gradient(loss, z).numpy()
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=1e-30)
        np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_16bit_dense_and_sigmoid(dtype, rng):
    logits16 = tf.constant(random_logits(rng, (16, 10), dtype=np.float32), dtype)
    for fn, labels in [(focal_op.softmax_focal_loss, _soft_labels(rng, (16, 10))),
                       (focal_op.sigmoid_focal_loss, _binary_labels(rng, (16, 10), soft=False))]:
        labels16 = tf.cast(labels, dtype)
        loss = fn(labels16, logits16, gamma=0.5)
        expected = fn(tf.cast(labels16, tf.float32), tf.cast(logits16, tf.float32), gamma=0.5)
        assert loss.dtype == dtype
        # float32 math, one rounding to the 16-bit output
        np.testing.assert_array_equal(loss.numpy(), tf.cast(expected, dtype).numpy())


def test_pybind_core_matches_tf_ops(rng):
    from focal_op import _focal_core

    logits = random_logits(rng, (5, 7), dtype=np.float32)
    soft = _soft_labels(rng, (5, 7)).astype(np.float32)
    binary = _binary_labels(rng, (5, 7), soft=False).astype(np.float32)
    upstream_rows = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    upstream = rng.uniform(0.5, 1.5, (5, 7)).astype(np.float32)
    z = tf.constant(logits)

    kwargs = dict(gamma=0.7, alpha=0.3, epsilon=0.0, label_smoothing=0.1)
    loss, stats = _focal_core.dense_softmax_forward(soft, logits, **kwargs)
    grad = _focal_core.dense_softmax_backward(soft, logits, stats, upstream_rows, **kwargs)
    with tf.GradientTape() as tape:
        tape.watch(z)
        tf_loss = focal_op.softmax_focal_loss(soft, z, **kwargs)
    np.testing.assert_array_equal(loss, tf_loss.numpy())
    np.testing.assert_array_equal(grad, tape.gradient(tf_loss, z, output_gradients=upstream_rows).numpy())

    kwargs = dict(gamma=0.7, alpha=np.linspace(0.1, 0.9, 7), label_smoothing=0.1)
    loss = _focal_core.sigmoid_forward(binary, logits, **kwargs)
    grad = _focal_core.sigmoid_backward(binary, logits, upstream, **kwargs)
    with tf.GradientTape() as tape:
        tape.watch(z)
        tf_loss = focal_op.sigmoid_focal_loss(binary, z, **kwargs)
    np.testing.assert_array_equal(loss, tf_loss.numpy())
    np.testing.assert_array_equal(grad, tape.gradient(tf_loss, z, output_gradients=upstream).numpy())


def test_unknown_dims_and_empty_inputs(rng):
    sig = tf.function(lambda y, z: focal_op.sigmoid_focal_loss(y, z, alpha=0.25),
                      input_signature=[tf.TensorSpec(None, tf.float32)] * 2)
    dense = tf.function(lambda y, z: focal_op.softmax_focal_loss(y, z),
                        input_signature=[tf.TensorSpec([None, None], tf.float32)] * 2)
    logits = random_logits(rng, (4, 3), dtype=np.float32)
    labels = _soft_labels(rng, (4, 3)).astype(np.float32)
    np.testing.assert_allclose(sig(labels, logits), focal_op.reference.sigmoid_focal_loss(labels, logits, alpha=0.25),
                               rtol=1e-5)
    np.testing.assert_allclose(dense(labels, logits), focal_op.reference.softmax_focal_loss(labels, logits),
                               rtol=1e-5)
    assert sig(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert dense(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)).shape == (0,)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: focal_op.sigmoid_focal_loss(np.zeros((2, 3)), np.zeros((2, 3)), gamma=-1.0), ValueError, "gamma"),
        (lambda: focal_op.sigmoid_focal_loss(np.zeros((2, 3)), np.zeros((2, 3)), alpha=[0.1, 0.2]), ValueError,
         r"alpha must be a scalar or a vector over the last axis \(length 3\); got length 2"),
        (lambda: focal_op.sigmoid_focal_loss(np.zeros((2, 2)), np.zeros((2, 3))), ValueError, "shape of logits"),
        (lambda: focal_op.sigmoid_focal_loss(np.zeros((2, 3)), np.zeros((2, 3)), label_smoothing=2.0), ValueError,
         "label_smoothing"),
        (lambda: focal_op.softmax_focal_loss(np.zeros((2, 2)), np.zeros((2, 3))), ValueError, "shape of logits"),
        (lambda: focal_op.softmax_focal_loss(np.zeros((2, 3)), np.zeros((2, 3)), alpha=[1.0]), ValueError,
         r"alpha must be a scalar or a vector of length C = 3; got length 1"),
        (lambda: focal_op.softmax_focal_loss(np.zeros((2, 3)), np.zeros((2, 3)), epsilon=0.7), ValueError, "epsilon"),
    ],
)
def test_bad_inputs(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_bad_alpha_at_run_time_is_an_op_error():
    fn = tf.function(lambda y, z, a: focal_op.sigmoid_focal_loss(y, z, alpha=a),
                     input_signature=[tf.TensorSpec(None, tf.float32)] * 2 + [tf.TensorSpec(None, tf.float64)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha must be a scalar or a vector over the last axis"):
        fn(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), np.ones(2))


@pytest.mark.parametrize("gamma, bound", [(0.0, 1e-6), (0.5, 1e-6), (2.0, 1e-6), (5.0, 2e-6), (1.7, 4e-6)])
def test_float32_loss_is_close_to_float64(gamma, bound, rng):
    """float32 losses against the same inputs evaluated in float64 (itself checked against the
    reference at 1e-10 above); the bound grows with γ because 1 - p_t's error is multiplied by γ."""
    for classes in (2, 10, 1000):
        rows = max(4, 20000 // classes)
        logits = (rng.standard_normal((rows, classes)) * 3).astype(np.float32)
        labels = rng.integers(0, classes, rows)
        soft = rng.dirichlet(np.ones(classes), rows).astype(np.float32)
        binary = (rng.uniform(size=(rows, classes)) < 0.3).astype(np.float32)
        for fn, y in [(focal_op.sparse_softmax_focal_loss, labels), (focal_op.softmax_focal_loss, soft),
                      (focal_op.sigmoid_focal_loss, binary)]:
            loss32 = fn(y, logits, gamma=gamma).numpy().astype(np.float64)
            loss64 = fn(y if fn is focal_op.sparse_softmax_focal_loss else y.astype(np.float64),
                        logits.astype(np.float64), gamma=gamma).numpy()
            np.testing.assert_allclose(loss32, loss64, rtol=bound, atol=1e-37, err_msg=f"{fn.__name__} C={classes}")


@pytest.mark.parametrize("classes", [2, 5, 16, 17, 32, 33])
def test_dense_short_rows_in_blocks_match_reference(classes, rng):
    rows = 16 * 2 + 7  # two blocks of 16 rows and a remainder handled row by row
    logits = tf.constant(random_logits(rng, (rows, classes)))
    labels = _soft_labels(rng, (rows, classes))
    for kwargs in (dict(gamma=2.0, alpha=rng.uniform(0.1, 1, classes)), dict(gamma=0.5, label_smoothing=0.1),
                   dict(gamma=1.7, epsilon=1e-3)):
        loss, grad = value_and_gradient(focal_op.softmax_focal_loss, labels, logits, **kwargs)
        ref_loss, ref_grad = value_and_gradient(focal_op.reference.softmax_focal_loss, labels, logits, **kwargs)
        _assert_close(loss, ref_loss, tf.float64, f"loss C={classes} {kwargs}")
        _assert_close(grad, ref_grad, tf.float64, f"gradient C={classes} {kwargs}")
        loss32, grad32 = value_and_gradient(focal_op.softmax_focal_loss, labels.astype(np.float32),
                                            tf.cast(logits, tf.float32), **kwargs)
        np.testing.assert_allclose(loss32, ref_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad32, ref_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("classes", [3, 10, 21, 32, 33, 200])
def test_dense_single_label_rows_match_reference(classes, rng):
    """Rows with at most one non-zero label (one-hot, a scaled one-hot, all zeros) take the
    single-target kernels (blocks of short float32 rows, and every long row); a block with a
    soft row takes the every-class ones."""
    rows = 48
    labels = np.zeros((rows, classes))
    targets = rng.integers(0, classes, rows)
    labels[np.arange(rows), targets] = rng.choice([1.0, 0.7, 0.0], size=rows)
    labels[40] = rng.dirichlet(np.ones(classes))  # the third block of 16 has a soft row
    logits = tf.constant(random_logits(rng, (rows, classes)), tf.float64)
    for alpha in (None, rng.uniform(0.1, 1.0, classes)):
        kwargs = dict(gamma=2.0, alpha=alpha)
        got = value_and_gradient(focal_op.softmax_focal_loss, labels, logits, **kwargs)
        want = value_and_gradient(focal_op.reference.softmax_focal_loss, labels, logits, **kwargs)
        _assert_close(got[0], want[0], tf.float64)
        _assert_close(got[1], want[1], tf.float64)
        got32 = value_and_gradient(focal_op.softmax_focal_loss, labels.astype(np.float32),
                                   tf.cast(logits, tf.float32), **kwargs)
        _assert_close(got32[0], want[0], tf.float32)
        _assert_close(got32[1], want[1], tf.float32)


SIGMOID_REDUCTIONS = {
    "sum": (tf.reduce_sum, []),
    "mean": (tf.reduce_mean, []),
    "row mean, then sum": (lambda loss: tf.reduce_sum(tf.reduce_mean(loss, axis=-1)), [6, 1]),
    "weighted sum": (lambda loss: tf.reduce_sum(loss * tf.range(1, 8, dtype=loss.dtype)), [6, 7]),
}


@pytest.mark.parametrize("reduction", list(SIGMOID_REDUCTIONS))
def test_sigmoid_gradient_reads_the_broadcast_upstream_gradient(reduction, rng):
    """In a graph, the gradient of a sum or mean reaches the sigmoid gradient op as the scalar or
    per-row tensor it was tiled from (no N x C broadcast); other upstream gradients stay whole.
    The gradient equals the eager one (which gets the materialised broadcast) bit for bit."""
    reduce, upstream_shape = SIGMOID_REDUCTIONS[reduction]
    logits = tf.constant(random_logits(rng, (6, 7)), tf.float32)
    labels = tf.constant(_binary_labels(rng, (6, 7), soft=False), tf.float32)

    def step(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            total = reduce(focal_op.sigmoid_focal_loss(labels, logits, gamma=2.0, alpha=0.25))
        return tape.gradient(total, logits)

    graph_step = tf.function(step)
    graph = graph_step.get_concrete_function(labels, logits).graph
    (grad_op,) = [op for op in graph.get_operations() if op.type == "FocalOp>SigmoidFocalLossGrad"]
    assert grad_op.inputs[5].shape.as_list() == upstream_shape
    np.testing.assert_array_equal(graph_step(labels, logits).numpy(), step(labels, logits).numpy())
    with tf.GradientTape() as tape:
        tape.watch(logits)
        want = reduce(focal_op.reference.sigmoid_focal_loss(labels, logits, gamma=2.0, alpha=0.25))
    _assert_close(graph_step(labels, logits), tape.gradient(want, logits), tf.float32)


def test_sigmoid_gradient_op_upstream_shapes(rng):
    logits = tf.constant(random_logits(rng, (2, 3, 5)), tf.float64)
    labels = tf.constant(_binary_labels(rng, (2, 3, 5), soft=True), tf.float64)
    inputs = dict(labels=labels, logits=logits, alpha=tf.constant(0.25, tf.float64),
                  gamma=tf.constant(2.0, tf.float64), label_smoothing=tf.constant(0.0, tf.float64))
    grad_op = focal_op._loader.op_library().focal_op_sigmoid_focal_loss_grad
    for upstream in (tf.constant(0.5, tf.float64), tf.constant(rng.uniform(size=(2, 3, 1)))):
        got = grad_op(loss_grad=upstream, **inputs)
        want = grad_op(loss_grad=tf.broadcast_to(upstream, logits.shape), **inputs)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    for bad in (tf.ones((2, 3), tf.float64), tf.ones((1, 1, 1), tf.float64), tf.ones((2, 3, 2), tf.float64)):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="loss_grad|Dimension|shape"):
            grad_op(loss_grad=bad, **inputs)


REDUCTION_SHAPES = {"none": None, "sum_over_classes": -1, "mean_over_classes": -1, "sum": (), "mean": ()}


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", list(REDUCTION_SHAPES))
def test_sigmoid_reduction_matches_reference(reduction, dtype, rng):
    """reduction= inside the op (the elementwise loss never stored) equals the pure-TF loss reduced
    by TF, value and gradient; short rows (row-per-lane sums), long rows (summed in pieces) and
    rows of other ranks, per-column alpha and smoothing."""
    for shape in [(7,), (37, 10), (3, 5, 21), (2, 2500), (4, 0), (128, 10), (4, 8, 96)]:
        logits = tf.constant(random_logits(rng, shape), dtype)
        for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
            labels = _binary_labels(rng, shape, soft=True)
            kwargs = dict(gamma=2.0, alpha=alpha, label_smoothing=0.1, reduction=reduction)
            loss, grad = value_and_gradient(focal_op.sigmoid_focal_loss, labels, logits, **kwargs)
            ref_loss, ref_grad = value_and_gradient(focal_op.reference.sigmoid_focal_loss, labels, logits, **kwargs)
            want_shape = {None: shape, -1: shape[:-1], (): ()}[REDUCTION_SHAPES[reduction]]
            assert loss.shape == want_shape and loss.dtype == dtype.as_numpy_dtype
            _assert_close(loss, ref_loss, dtype, f"loss {shape} {reduction} alpha={alpha}")
            _assert_close(grad, ref_grad, dtype, f"gradient {shape} {reduction} alpha={alpha}")


def test_sigmoid_reduction_in_graphs(rng):
    """In a tf.function: the forward op outputs one value per row (nothing N x C), the gradient op
    gets a scalar for "sum" and "mean" and [..., 1] per row otherwise; unknown dims work; 16-bit
    logits are summed in float32."""
    logits = tf.constant(random_logits(rng, (6, 7)), tf.float32)
    labels = tf.constant(_binary_labels(rng, (6, 7), soft=False), tf.float32)
    for reduction, total, upstream_shape in [("sum", tf.identity, []), ("mean", tf.identity, []),
                                             ("mean_over_classes", tf.reduce_sum, []),
                                             ("sum_over_classes", lambda v: tf.reduce_sum(v * tf.range(6.0)), [6, 1])]:
        def step(labels, logits):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = total(focal_op.sigmoid_focal_loss(labels, logits, alpha=0.25, reduction=reduction))
            return value, tape.gradient(value, logits)

        graph = tf.function(step).get_concrete_function(labels, logits).graph
        (forward,) = [op for op in graph.get_operations() if op.type == "FocalOp>SigmoidFocalLoss"]
        (backward,) = [op for op in graph.get_operations() if op.type == "FocalOp>SigmoidFocalLossGrad"]
        assert forward.outputs[0].shape.as_list() == [6]
        assert backward.inputs[5].shape.as_list() == upstream_shape
        with tf.GradientTape() as tape:
            tape.watch(logits)
            want = total(focal_op.reference.sigmoid_focal_loss(labels, logits, alpha=0.25, reduction=reduction))
        value, grad = tf.function(step)(labels, logits)
        _assert_close(value, want, tf.float32, reduction)
        _assert_close(grad, tape.gradient(want, logits), tf.float32, reduction)
    unknown = tf.function(lambda y, x: focal_op.sigmoid_focal_loss(y, x, reduction="sum_over_classes"),
                          input_signature=[tf.TensorSpec([None, None])] * 2)
    _assert_close(unknown(labels, logits),
                  focal_op.reference.sigmoid_focal_loss(labels, logits, reduction="sum_over_classes"), tf.float32)
    for dtype in (tf.float16, tf.bfloat16):
        got = focal_op.sigmoid_focal_loss(tf.cast(labels, dtype), tf.cast(logits, dtype), reduction="mean")
        want = focal_op.reference.sigmoid_focal_loss(tf.cast(labels, dtype), tf.cast(logits, dtype), reduction="mean")
        assert got.dtype == dtype
        np.testing.assert_allclose(float(got), float(want), rtol=1e-2)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sigmoid_total_is_summed_over_flattened_rows(reduction, rng):
    """A total ("sum", "mean") with alpha None or a float: the forward op sums float32/float64
    elements in rows of the flattened loss (widest of 2048 ... 64 dividing the count, >= 16 rows);
    a per-column alpha, 16-bit logits or too few elements keep the logits' rows. Values and
    gradients equal the pure-TF reference either way."""
    cases = [((128, 10), tf.float32, 0.25, [20, 64]), ((3, 64, 21), tf.float64, None, [63, 64]),
             ((512, 40), tf.float32, None, [20, 1024]), ((128, 10), tf.float32, "per column", [128, 10]),
             ((128, 10), tf.float16, 0.25, [128, 10]), ((30, 10), tf.float32, 0.25, [30, 10])]
    for shape, dtype, alpha, op_shape in cases:
        if alpha == "per column":
            alpha = rng.uniform(0.1, 0.9, shape[-1])
        logits = tf.constant(random_logits(rng, shape), dtype)
        labels = tf.constant(_binary_labels(rng, shape, soft=True), dtype)

        def step(labels, logits, function=focal_op.sigmoid_focal_loss):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = function(labels, logits, alpha=alpha, label_smoothing=0.1, reduction=reduction)
            return value, tape.gradient(value, logits)

        graph = tf.function(step).get_concrete_function(labels, logits).graph
        (forward,) = [op for op in graph.get_operations() if op.type == "FocalOp>SigmoidFocalLoss"]
        assert forward.inputs[1].shape.as_list() == op_shape, (shape, dtype, alpha)
        value, grad = tf.function(step)(labels, logits)
        want, want_grad = step(labels, logits, focal_op.reference.sigmoid_focal_loss)
        assert value.dtype == dtype and grad.shape == shape
        if dtype == tf.float16:
            np.testing.assert_allclose(float(value), float(want), rtol=1e-2)
            continue
        _assert_close(value, want, dtype, f"{shape} {reduction}")
        _assert_close(grad, want_grad, dtype, f"{shape} {reduction}")


def test_sigmoid_reduction_errors(rng):
    with pytest.raises(ValueError, match="reduction must be one of"):
        focal_op.sigmoid_focal_loss([1.0], [0.5], reduction="sum_over_batch_size")
    with pytest.raises(ValueError, match="rank >= 1"):
        focal_op.sigmoid_focal_loss(1.0, 0.5, reduction="sum_over_classes")
    with pytest.raises(ValueError, match="reduction must be one of"):
        focal_op.reference.sigmoid_focal_loss([1.0], [0.5], reduction="avg")
    # a scalar's sum and mean are the scalar
    np.testing.assert_allclose(focal_op.sigmoid_focal_loss(1.0, 0.5, reduction="mean"),
                               focal_op.sigmoid_focal_loss(1.0, 0.5), rtol=1e-7)
    op = focal_op._loader.op_library().focal_op_sigmoid_focal_loss
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="rank >= 1"):
        op(labels=tf.constant(1.0), logits=tf.constant(0.5), alpha=tf.zeros([0], tf.float64),
           gamma=tf.constant(2.0, tf.float64), label_smoothing=tf.constant(0.0, tf.float64), sum_over_classes=True)


def test_sigmoid_per_row_upstream_on_short_rows_across_threads(rng):
    """A per-row upstream gradient (weighted row sums) and alpha per column on short rows of a batch
    large enough to be split over TensorFlow's threads mid-row: equal to the reference."""
    shape = (4999, 7)
    logits = tf.constant(random_logits(rng, shape), tf.float32)
    labels = tf.constant(_binary_labels(rng, shape, soft=True), tf.float32)
    alpha = rng.uniform(0.1, 0.9, shape[-1])
    weights = tf.constant(rng.uniform(0.5, 1.5, shape[0]), tf.float32)
    results = []
    for loss_fn in (focal_op.sigmoid_focal_loss, focal_op.reference.sigmoid_focal_loss):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            total = tf.reduce_sum(weights * loss_fn(labels, logits, alpha=alpha, reduction="sum_over_classes"))
        results.append(tape.gradient(total, logits))
    _assert_close(results[0], results[1], tf.float32)
