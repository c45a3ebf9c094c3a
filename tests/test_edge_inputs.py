"""Edge inputs: rows of no classes, masked (-inf), infinite and NaN logits, the argument checks,
and batch invariance. Crash-prone calls run in a subprocess."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import focal_op
import numpy_oracle
from focal_op import _focal_core as core

INF = np.inf
SHORT_AND_LONG = [3, 5, 10, 16, 17, 21, 32, 33, 40, 100]  # short rows (<= 32, vector lanes per row) and long


def run_script(script: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def value_and_grad(fn, labels, logits, **kwargs):
    logits = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = fn(labels, logits, **kwargs)
        total = tf.reduce_sum(loss)
    return loss.numpy(), tape.gradient(total, logits).numpy()


# ---- C = 0 ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_rows_of_no_classes_follow_tensorflow_in_a_subprocess():
    out = run_script(
        """
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf, focal_op
        from focal_op import _focal_core as core

        def grad_of(fn, *args, **kwargs):
            z = tf.convert_to_tensor(args[-1])
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = fn(*args[:-1], z, **kwargs)
                total = tf.reduce_sum(loss)
            return loss, tape.gradient(total, z)

        for dtype in (tf.float16, tf.bfloat16, tf.float32, tf.float64):
            for z in (tf.zeros([4, 0], dtype), tf.cast(tf.random.normal([4, 10])[:, :0], dtype), tf.zeros([2, 3, 0], dtype)):
                want = tf.nn.softmax_cross_entropy_with_logits(tf.cast(z, tf.float32), tf.cast(z, tf.float32))
                loss, grad = grad_of(focal_op.softmax_focal_loss, z, z)
                assert loss.dtype == dtype and grad.shape == z.shape
                np.testing.assert_array_equal(tf.cast(loss, tf.float32).numpy(), want.numpy())
                loss = tf.function(lambda y, x: focal_op.softmax_focal_loss(y, x, label_smoothing=0.1))(z, z)
                np.testing.assert_array_equal(tf.cast(loss, tf.float32).numpy(), want.numpy())
                # sparse labels are still range-checked: no label lies in [0, 0)
                labels = tf.zeros(z.shape[:-1], tf.int64)
                try:
                    focal_op.sparse_softmax_focal_loss(labels, z)
                except tf.errors.InvalidArgumentError as err:
                    assert "[0, 0)" in str(err)
                else:
                    raise AssertionError("a label in [0, 0) was accepted")
                loss, grad = grad_of(focal_op.sparse_softmax_focal_loss, labels, z, ignore_class=0)
                np.testing.assert_array_equal(tf.cast(loss, tf.float32).numpy(), 0)
                assert grad.shape == z.shape
                # the sigmoid: sums 0, means as tf.reduce_mean of an empty tensor (NaN)
                for reduction, reduce in (("sum_over_classes", lambda t: tf.reduce_sum(t, -1)),
                                          ("mean_over_classes", lambda t: tf.reduce_mean(t, -1)),
                                          ("sum", tf.reduce_sum), ("mean", tf.reduce_mean)):
                    loss, grad = grad_of(focal_op.sigmoid_focal_loss, z, z, alpha=0.25, reduction=reduction)
                    want = reduce(tf.zeros(z.shape, tf.float32)).numpy()
                    np.testing.assert_array_equal(tf.cast(loss, tf.float32).numpy(), want)
                    assert grad.shape == z.shape
        import keras
        z = tf.zeros([4, 0])
        value = focal_op.losses.CategoricalFocalLoss(from_logits=True)(z, z)
        assert float(value) == 0.0, float(value)

        # the pybind11 core: nothing read or written outside the arrays
        for dtype in (np.float32, np.float64):
            z = np.zeros((5, 0), dtype)
            loss, stats = core.dense_softmax_forward(z, z)
            np.testing.assert_array_equal(loss, 0)
            np.testing.assert_array_equal(stats, 0)
            grad = core.dense_softmax_backward(z, z, stats, np.ones(5, dtype))
            assert grad.shape == (5, 0)
            loss, stats = core.sparse_softmax_forward(np.array([1, 1, 1, 1, 1]), z, ignore_class=1)
            np.testing.assert_array_equal(loss, 0)
            assert core.sparse_softmax_backward(np.array([1] * 5), z, stats, np.ones(5, dtype), ignore_class=1).shape == z.shape
            for logits, upstream in ((np.zeros((0, 5), dtype), np.zeros((0, 1), dtype)),
                                     (np.zeros((3, 0), dtype), np.ones((3, 1), dtype)),
                                     (np.zeros((0, 40), dtype), np.zeros((0, 1), dtype))):
                grad = core.sigmoid_backward(logits, logits, upstream, alpha=0.5)
                assert grad.shape == logits.shape
                assert core.sigmoid_forward(logits, logits, sum_over_classes=True).shape == logits.shape[:-1]
        print("ok")
        """
    )
    assert out.strip().endswith("ok")


def test_misaligned_and_strided_arrays_are_copied_not_misread():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((33, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 33)
    raw = np.zeros(logits.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(logits.shape)  # 1 byte off the float grid
    misaligned[...] = logits
    assert not misaligned.flags.aligned
    want, _ = core.sparse_softmax_forward(labels, logits)
    got, _ = core.sparse_softmax_forward(labels, misaligned)
    np.testing.assert_array_equal(got, want)
    strided = np.repeat(logits, 2, axis=0)[::2]
    np.testing.assert_array_equal(core.sparse_softmax_forward(labels, strided)[0], want)
    np.testing.assert_array_equal(core.sigmoid_forward(misaligned, misaligned), core.sigmoid_forward(logits, logits))


# ---- masked, infinite and NaN logits ---------------------------------------------------------

def compacted_oracle(labels_dense, logits, keep, **kwargs):
    """The float64 oracle of each row with its masked classes removed, scattered back (gradient 0
    at the masked classes)."""
    loss = np.zeros(logits.shape[0])
    grad = np.zeros(logits.shape)
    for r in range(logits.shape[0]):
        alpha = kwargs.get("alpha")
        row_kwargs = dict(kwargs, alpha=None if alpha is None else np.asarray(alpha)[keep[r]])
        loss[r], grad[r, keep[r]] = numpy_oracle.dense_softmax(labels_dense[r, keep[r]], logits[r, keep[r]], **row_kwargs)
    return loss, grad


@pytest.mark.parametrize("classes", SHORT_AND_LONG)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_classes_are_absent_from_the_row(classes, dtype):
    rng = np.random.default_rng(classes)
    rows = 37  # whole vector blocks of short rows and a partial one
    logits = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
    labels = rng.integers(0, classes, rows)
    masked = rng.random((rows, classes)) < 0.4
    masked[np.arange(rows), labels] = False
    masked_logits = np.where(masked, -INF, logits).astype(dtype)
    keep = ~masked
    alpha = rng.uniform(0.2, 1.0, classes)
    upstream = np.ones(rows, dtype)
    rtol = 2e-5 if dtype == np.float32 else 1e-9
    for gamma in (0.0, 0.5, 2.0):
        kwargs = dict(alpha=alpha, gamma=gamma)
        one_hot = np.eye(classes)[labels]
        want_loss, want_grad = compacted_oracle(one_hot, logits.astype(np.float64), keep, **kwargs)
        loss, stats = core.sparse_softmax_forward(labels, masked_logits, **kwargs)
        grad = core.sparse_softmax_backward(labels, masked_logits, stats, upstream, **kwargs)
        np.testing.assert_allclose(loss, want_loss, rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=2e-6)
        assert np.all(grad[masked] == 0)
        # dense labels: one-hot, and soft weights on the unmasked classes only
        soft = rng.dirichlet(np.ones(classes), rows) * keep
        for y in (one_hot, soft):
            want_loss, want_grad = compacted_oracle(y, logits.astype(np.float64), keep, **kwargs)
            loss, stats = core.dense_softmax_forward(y.astype(dtype), masked_logits, **kwargs)
            grad = core.dense_softmax_backward(y.astype(dtype), masked_logits, stats, upstream, **kwargs)
            np.testing.assert_allclose(loss, want_loss, rtol=rtol, atol=1e-6)
            np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=2e-6)
            assert np.all(grad[masked] == 0)
    # label smoothing puts weight on the masked classes: an infinite loss wherever a row has one
    loss, _ = core.sparse_softmax_forward(labels, masked_logits, label_smoothing=0.1)
    np.testing.assert_array_equal(np.isposinf(loss), masked.any(axis=1))
    assert np.all(np.isfinite(loss[~masked.any(axis=1)]))


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16])
def test_masked_classes_through_the_tensorflow_ops(dtype):
    logits = tf.constant([[2.0, -INF, 0.5, -INF, 1.0]] * 20, dtype)
    compact = tf.constant([[2.0, 0.5, 1.0]] * 20, dtype)
    labels = tf.constant([2] * 20)
    loss, grad = value_and_grad(focal_op.sparse_softmax_focal_loss, labels, logits, alpha=0.5)
    want_loss, want_grad = value_and_grad(focal_op.reference.sparse_softmax_focal_loss, [1] * 20,
                                          tf.cast(compact, tf.float64), alpha=0.5)
    rtol = 1e-3 if dtype == tf.float16 else 1e-5
    np.testing.assert_allclose(loss.astype(np.float64), want_loss, rtol=rtol)
    np.testing.assert_allclose(grad[:, [0, 2, 4]].astype(np.float64), want_grad, rtol=rtol, atol=1e-6)
    assert np.all(grad[:, [1, 3]] == 0)


@pytest.mark.parametrize("classes", SHORT_AND_LONG)
def test_rows_of_infinite_and_nan_logits_follow_one_rule_for_every_width(classes):
    """All -inf: NaN loss and gradient. Target -inf (others finite): loss +inf, gradient finite
    (its limit). One +inf: that class has p = 1 (loss 0 there, +inf elsewhere). A NaN logit: NaN
    loss and gradient for the whole row."""
    rng = np.random.default_rng(classes)
    base = rng.standard_normal((20, classes)).astype(np.float32)
    rows = {"all masked": np.full(classes, -INF), "target masked": np.where(np.arange(classes) == 1, -INF, base[0]),
            "plus inf at target": np.where(np.arange(classes) == 1, INF, base[1]),
            "plus inf elsewhere": np.where(np.arange(classes) == 2 % classes, INF, base[2]),
            "nan": np.where(np.arange(classes) == 0, np.nan, base[3])}
    if classes < 3:
        return
    for name, row in rows.items():
        logits = np.concatenate([base, row[None].astype(np.float32)])  # the row after 20 others: a tail lane
        labels = np.full(21, 1)
        for dense in (False, True):
            if dense:
                y = np.eye(classes, dtype=np.float32)[labels]
                loss, stats = core.dense_softmax_forward(y, logits, gamma=2.0)
                grad = core.dense_softmax_backward(y, logits, stats, np.ones(21, np.float32), gamma=2.0)
            else:
                loss, stats = core.sparse_softmax_forward(labels, logits, gamma=2.0)
                grad = core.sparse_softmax_backward(labels, logits, stats, np.ones(21, np.float32), gamma=2.0)
            assert np.all(np.isfinite(loss[:20])) and np.all(np.isfinite(grad[:20])), name
            row_loss, row_grad = loss[20], grad[20]
            if name in ("all masked", "nan"):
                assert np.isnan(row_loss) and np.all(np.isnan(row_grad)), (name, dense, row_loss, row_grad)
            elif name == "target masked":
                # the limit as z_t -> -inf: d loss / d z_t = -1, elsewhere p_j (z_t = -200 is there)
                _, want_grad = numpy_oracle.dense_softmax(np.eye(classes)[1], np.where(np.isinf(row), -200.0, row))
                assert row_loss == INF and np.all(np.isfinite(row_grad)), (name, dense)
                np.testing.assert_allclose(row_grad, want_grad, rtol=1e-5, atol=1e-6)
            elif name == "plus inf at target":
                assert row_loss == 0 and np.all(row_grad == 0), (name, dense, row_loss, row_grad)
            else:
                assert row_loss == INF and np.all(np.isfinite(row_grad)), (name, dense, row_loss, row_grad)


def test_sigmoid_at_infinite_logits_gives_the_limits():
    x = np.array([INF, -INF, INF, -INF, INF, -INF, np.nan], np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 0.3, 1.0], np.float32)
    for alpha in (None, 0.25):
        for gamma in (0.0, 0.5, 2.0):
            loss = core.sigmoid_forward(y, x, alpha=alpha, gamma=gamma)
            grad = core.sigmoid_backward(y, x, np.ones_like(x), alpha=alpha, gamma=gamma)
            a = 1.0 if alpha is None else alpha
            np.testing.assert_array_equal(loss[:2], [0.0, 0.0])  # confident and right: limit 0
            np.testing.assert_array_equal(grad[:2], [0.0, 0.0])
            assert np.all(np.isposinf(loss[2:6]))                # confident and wrong: inf
            # the gradient's limit: α_t (p - y), p in {0, 1}
            np.testing.assert_allclose(grad[2:4], [(1 - a) if alpha is not None else 1.0, -a], rtol=1e-6)
            assert np.all(np.isfinite(grad[4:6]))
            assert np.isnan(loss[6]) and np.isnan(grad[6])
    tf_loss, tf_grad = value_and_grad(focal_op.sigmoid_focal_loss, y[:4], x[:4])
    np.testing.assert_array_equal(tf_loss[:2], 0)
    np.testing.assert_array_equal(tf_grad[:2], 0)


# ---- arguments ------------------------------------------------------------------------------

LOGITS = np.zeros((3, 4), np.float32)
LABELS = np.array([0, 1, 2])


@pytest.mark.parametrize("fn", [focal_op.sparse_softmax_focal_loss, focal_op.reference.sparse_softmax_focal_loss])
def test_argument_types_and_ranges(fn):
    for bad in (True, "2", b"2", None):
        with pytest.raises(TypeError, match="gamma must be a real number"):
            fn(LABELS, LOGITS, gamma=bad)
    with pytest.raises(TypeError, match="label_smoothing"):
        fn(LABELS, LOGITS, label_smoothing=False)
    with pytest.raises(TypeError, match="epsilon"):
        fn(LABELS, LOGITS, epsilon="0.1")
    for bad in (True, "0.25"):
        with pytest.raises(TypeError, match="alpha"):
            fn(LABELS, LOGITS, alpha=bad)
    for bad in (-0.1, [0.5, -1.0, 0.5, 0.5], np.array([0.5, 0.5, np.nan, 0.5])):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, "):
            fn(LABELS, LOGITS, alpha=bad)
    with pytest.raises(ValueError, match="alpha must not be empty"):
        fn(LABELS, LOGITS, alpha=[])
    # too large for float32, the compute dtype of float32 logits; fine for float64 logits
    with pytest.raises(ValueError, match=r"gamma must be a finite number >= 0 \(and at most 3.40282\d*e\+38"):
        fn(LABELS, LOGITS, gamma=1e39)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 3.40282\d*e\+38\]"):
        fn(LABELS, LOGITS, alpha=3.5e38)
    assert np.all(np.isfinite(fn(LABELS, LOGITS.astype(np.float64), alpha=3.5e38).numpy()))
    # NumPy scalars of any width are numbers
    for scalar in (np.float16(0.25), np.float32(0.25), np.float64(0.25), np.int64(2), np.array(0.25)):
        np.testing.assert_array_equal(fn(LABELS, LOGITS, gamma=scalar, alpha=scalar).numpy(),
                                      fn(LABELS, LOGITS, gamma=float(scalar), alpha=float(scalar)).numpy())


def test_sigmoid_alpha_lies_in_zero_one():
    for bad in (1.5, -0.5, [0.5, 0.5, 0.5, 2.0]):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            focal_op.sigmoid_focal_loss(LOGITS, LOGITS, alpha=bad)
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            focal_op.reference.sigmoid_focal_loss(LOGITS, LOGITS, alpha=bad)


def test_tensor_arguments_are_checked_by_the_kernels():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"alpha must be in \[0, .*alpha\[1\] = -1"):
        focal_op.sparse_softmax_focal_loss(LABELS, LOGITS, alpha=tf.constant([1.0, -1.0, 1.0, 1.0], tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"alpha must be in \[0, 1\]"):
        focal_op.sigmoid_focal_loss(LOGITS, LOGITS, alpha=tf.constant(1.5, tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="gamma must be a finite number >= 0 .*largest value"):
        focal_op.sparse_softmax_focal_loss(LABELS, LOGITS, gamma=tf.constant(1e39, tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha must be in"):
        focal_op.softmax_focal_loss(LOGITS, LOGITS, alpha=tf.constant(3.5e38, tf.float64))
    assert np.isfinite(focal_op.sparse_softmax_focal_loss(LABELS, LOGITS.astype(np.float64),
                                                          gamma=tf.constant(1e39, tf.float64)).numpy()).all()


def test_pybind_arguments():
    with pytest.raises(ValueError, match="alpha must not be empty"):
        core.sparse_softmax_forward(LABELS, LOGITS, alpha=[])
    with pytest.raises(ValueError, match=r"alpha must be in \[0"):
        core.sparse_softmax_forward(LABELS, LOGITS, alpha=-1.0)
    with pytest.raises(ValueError, match="gamma must be a finite number"):
        core.sparse_softmax_forward(LABELS, LOGITS, gamma=1e39)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        core.sigmoid_forward(LOGITS, LOGITS, alpha=1.5)


def test_list_alpha_keeps_float64_precision():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((16, 4))
    labels = rng.integers(0, 4, 16)
    alpha = [0.1, 0.2, 0.3, 0.7]
    for fn in (focal_op.sparse_softmax_focal_loss, focal_op.reference.sparse_softmax_focal_loss):
        np.testing.assert_array_equal(fn(labels, logits, alpha=alpha).numpy(),
                                      fn(labels, logits, alpha=np.array(alpha, np.float64)).numpy())
    # and the loss scales with exactly 0.1, not with float32's 0.10000000149
    scaled = focal_op.sparse_softmax_focal_loss(labels, logits, alpha=[0.1] * 4).numpy()
    plain = focal_op.sparse_softmax_focal_loss(labels, logits).numpy()
    np.testing.assert_allclose(scaled, 0.1 * plain, rtol=1e-15)
    y = (logits > 0).astype(np.float64)
    np.testing.assert_array_equal(focal_op.sigmoid_focal_loss(y, logits, alpha=[0.1, 0.2, 0.3, 0.7]).numpy(),
                                  focal_op.sigmoid_focal_loss(y, logits, alpha=np.array(alpha)).numpy())


# ---- batch invariance -----------------------------------------------------------------------

def all_outputs(logits, labels, soft, ignore_class):
    """Every kernel's outputs for a batch: sparse (with ignored rows), dense one-hot and soft
    (mixed in one batch), smoothed, sigmoid elementwise, row sums and per-row upstream."""
    dtype = logits.dtype
    rows, classes = logits.shape
    upstream = np.full(rows, 0.75, dtype)  # the same for every row: only its position changes
    out = {}
    for name, kwargs in (("plain", dict(gamma=2.0)), ("alpha", dict(gamma=0.5, alpha=0.3)),
                         ("smooth", dict(gamma=2.0, label_smoothing=0.1))):
        loss, stats = core.sparse_softmax_forward(labels, logits, ignore_class=ignore_class, **kwargs)
        out[f"sparse_{name}"] = (loss, stats, core.sparse_softmax_backward(labels, logits, stats, upstream,
                                                                           ignore_class=ignore_class, **kwargs))
        loss, stats = core.dense_softmax_forward(soft, logits, **kwargs)
        out[f"dense_{name}"] = (loss, stats, core.dense_softmax_backward(soft, logits, stats, upstream, **kwargs))
    y = soft.round()
    class_alpha = np.linspace(0.1, 0.9, classes)
    out["sigmoid"] = (core.sigmoid_forward(y, logits, alpha=0.25),
                      core.sigmoid_forward(y, logits, alpha=0.25, sum_over_classes=True),
                      core.sigmoid_backward(y, logits, upstream[:, None], alpha=0.25),
                      core.sigmoid_backward(y, logits, np.ones_like(logits), gamma=0.5))
    # smoothed labels: the terms where an FMA can be formed in more than one way
    out["sigmoid_smooth"] = (core.sigmoid_forward(y, logits, alpha=0.25, label_smoothing=0.05),
                             core.sigmoid_forward(y, logits, alpha=class_alpha, gamma=3.0, label_smoothing=0.1),
                             core.sigmoid_backward(y, logits, np.full_like(logits, 0.75), alpha=0.25,
                                                   label_smoothing=0.05),
                             core.sigmoid_backward(y, logits, upstream[:, None], alpha=class_alpha,
                                                   label_smoothing=0.1))
    return out


def batch_inputs(rng, rows, classes, dtype):
    logits = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
    labels = rng.integers(0, classes, rows)
    labels[rng.random(rows) < 0.1] = -1  # ignored rows inside blocks
    soft = np.eye(classes)[rng.integers(0, classes, rows)]
    soft_rows = rng.random(rows) < 0.3
    soft[soft_rows] = rng.dirichlet(np.ones(classes), soft_rows.sum())  # blocks of mixed one-hot and soft rows
    return logits, labels, soft.astype(dtype)


@pytest.mark.parametrize("classes", SHORT_AND_LONG)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_gives_the_same_bits_wherever_it_sits(classes, dtype):
    rng = np.random.default_rng(classes)
    logits, labels, soft = batch_inputs(rng, 40, classes, dtype)
    alone = all_outputs(logits[:1], labels[:1], soft[:1], -1)
    # the first row placed at every position modulo the vector width (16) and in the tail, in
    # batches of several sizes
    for rows, positions in ((40, list(range(17)) + [38, 39]), (16, [0, 7, 15]), (1003, [999, 1000, 1002])):
        batch = batch_inputs(rng, rows, classes, dtype)
        for k in positions:
            placed = [a.copy() for a in batch]
            for array, source in zip(placed, (logits, labels, soft)):
                array[k] = source[0]
            outputs = all_outputs(*placed, -1)
            for name, arrays in outputs.items():
                for got, want in zip(arrays, alone[name]):
                    np.testing.assert_array_equal(got[k], want[0], err_msg=f"{name} row at {k} of {rows}")


THREADS_SCRIPT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[2]))
import focal_op
rng = np.random.default_rng(11)
out = {}
for classes in (3, 10, 17, 21, 32, 33, 100):
    for dtype in (tf.float16, tf.float32, tf.float64):
        z = tf.cast(rng.standard_normal((1003, classes)) * 3, dtype)
        labels = tf.constant(rng.integers(0, classes, 1003))
        soft = tf.cast(rng.dirichlet(np.ones(classes), 1003), dtype)
        calls = {"sparse": lambda z: focal_op.sparse_softmax_focal_loss(labels, z, alpha=0.25),
                 "dense": lambda z: focal_op.softmax_focal_loss(soft, z, gamma=0.5),
                 "onehot": lambda z: focal_op.softmax_focal_loss(tf.one_hot(labels, classes, dtype=dtype), z),
                 "sigmoid": lambda z: focal_op.sigmoid_focal_loss(tf.round(soft), z, alpha=0.25),
                 "sigmoid_rows": lambda z: focal_op.sigmoid_focal_loss(tf.round(soft), z, reduction="mean_over_classes")}
        for name, call in calls.items():
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = call(z)
                weights = tf.reshape(tf.range(1, 1 + tf.size(loss)), tf.shape(loss))
                total = tf.reduce_sum(loss * tf.cast(weights, loss.dtype) / 1000)
            key = f"{name}_{classes}_{dtype.name}"
            out["loss_" + key] = tf.cast(loss, tf.float64).numpy()
            out["grad_" + key] = tf.cast(tape.gradient(total, z), tf.float64).numpy()
np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow
def test_results_do_not_depend_on_the_thread_count(tmp_path):
    runs = []
    for threads in (1, 2):
        path = tmp_path / f"threads{threads}.npz"
        subprocess.run([sys.executable, "-c", THREADS_SCRIPT, str(path), str(threads)], check=True, timeout=600)
        runs.append(np.load(path))
    assert len(runs[0].files) == 7 * 3 * 5 * 2
    for key in runs[0].files:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)


def test_masked_classes_under_jit_compile():
    """Inside jit_compile the same kernels run (custom calls): the same masked-class rules, the same bits."""
    logits = tf.constant([[2.0, -INF, 0.5, -INF, 1.0]] * 3 + [[-INF] * 5], tf.float32)
    labels = tf.constant([2, 0, 4, 0])
    for fn in (lambda z: focal_op.sparse_softmax_focal_loss(labels, z),
               lambda z: focal_op.softmax_focal_loss(tf.one_hot(labels, 5), z)):
        def step(z, fn=fn):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = fn(z)
            return loss, tape.gradient(loss, z)

        eager_loss, eager_grad = step(logits)
        loss, grad = tf.function(step, jit_compile=True)(logits)
        np.testing.assert_array_equal(loss, eager_loss)
        np.testing.assert_array_equal(grad, eager_grad)
        assert np.all(grad.numpy()[:3, [1, 3]] == 0)
        assert np.isnan(loss.numpy()[3]) and np.isnan(eager_loss.numpy()[3])
