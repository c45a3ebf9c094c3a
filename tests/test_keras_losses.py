"""focal_op.losses against Keras's own losses, reductions, ignore_class averaging, serialization,
model.save round trips, and training on imbalanced data."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_logits

import focal_op
from focal_op.losses import BinaryFocalLoss, CategoricalFocalLoss, SparseCategoricalFocalLoss


@pytest.fixture
def batch(rng):
    logits = random_logits(rng, (48, 6), scale=2.0, dtype=np.float32)
    labels = rng.integers(0, 6, 48)
    return logits, labels, tf.one_hot(labels, 6).numpy(), tf.nn.softmax(logits).numpy()


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sparse_class_matches_keras_categorical_focal(gamma, from_logits, reduction, batch):
    logits, labels, one_hot, probs = batch
    y_pred = logits if from_logits else probs
    expected = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=gamma, from_logits=from_logits,
                                                         reduction=reduction)(one_hot, y_pred)
    loss = SparseCategoricalFocalLoss(gamma=gamma, alpha=0.25, from_logits=from_logits, reduction=reduction)
    for y_true in (labels, labels[:, None], labels.astype(np.float32), labels[:, None].astype(np.float32)):
        np.testing.assert_allclose(loss(y_true, y_pred), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("from_logits", [True, False])
def test_categorical_class_matches_keras(from_logits, batch, rng):
    logits, _, _, probs = batch
    soft = rng.dirichlet(np.ones(6), size=48).astype(np.float32)
    y_pred = logits if from_logits else probs
    for gamma in (0.0, 2.0):
        expected = keras.losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=gamma, from_logits=from_logits,
                                                             label_smoothing=0.1)(soft, y_pred)
        loss = CategoricalFocalLoss(gamma=gamma, alpha=0.5, from_logits=from_logits, label_smoothing=0.1,
                                    epsilon=keras.config.epsilon())
        np.testing.assert_allclose(loss(soft, y_pred), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_class_matches_keras(from_logits, rng):
    logits = random_logits(rng, (32, 5), scale=2.0, dtype=np.float32)
    labels = (rng.uniform(size=(32, 5)) < 0.2).astype(np.float32)
    y_pred = logits if from_logits else tf.sigmoid(logits).numpy()
    for alpha in (None, 0.25):
        expected = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=alpha is not None, alpha=alpha or 0.25,
                                                        gamma=2.0, from_logits=from_logits)(labels, y_pred)
        loss = BinaryFocalLoss(gamma=2.0, alpha=alpha, from_logits=from_logits)
        np.testing.assert_allclose(loss(labels, y_pred), expected, rtol=2e-5, atol=1e-6)


def test_ignore_class_averages_over_the_remaining_rows(batch):
    logits, labels, _, _ = batch
    labels = labels.copy()
    labels[::3] = -1
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)(labels, logits)
    loss = SparseCategoricalFocalLoss(gamma=0.0, from_logits=True, ignore_class=-1)(labels, logits)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # with focusing: the mean over the kept rows of the functional loss
    kept = labels != -1
    per_row = focal_op.sparse_softmax_focal_loss(labels[kept], logits[kept], gamma=2.0)
    loss = SparseCategoricalFocalLoss(gamma=2.0, from_logits=True, ignore_class=-1)(labels, logits)
    np.testing.assert_allclose(loss, np.mean(per_row), rtol=1e-5)


@pytest.mark.parametrize(
    "loss",
    [
        SparseCategoricalFocalLoss(gamma=1.5, alpha=[0.1, 0.2, 0.3], from_logits=True, epsilon=1e-6,
                                   label_smoothing=0.1, ignore_class=0, reduction="sum", name="sparse"),
        CategoricalFocalLoss(gamma=0.5, alpha=0.25, epsilon=None, label_smoothing=0.2),
        BinaryFocalLoss(gamma=3.0, alpha=0.75, from_logits=True, label_smoothing=0.05),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_serialize_round_trip(loss):
    config = keras.losses.serialize(loss)
    restored = keras.losses.deserialize(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()


MODEL_SAVE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, focal_op
    path, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = rng.integers(0, 3, 64)
    if mode == "save":
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(loss=focal_op.losses.SparseCategoricalFocalLoss(gamma=2.0, alpha=[0.2, 0.3, 0.5], from_logits=True))
        model.save(path)
    model = keras.models.load_model(path)
    assert type(model.loss).__name__ == "SparseCategoricalFocalLoss", model.loss
    print("VALUE", repr(float(model.evaluate(x, y, verbose=0))))
    """
)


@pytest.mark.slow
def test_keras_model_save_and_load_in_a_fresh_process(tmp_path):
    path = str(tmp_path / "model.keras")
    values = []
    for mode in ("save", "load"):
        done = subprocess.run([sys.executable, "-c", MODEL_SAVE_SCRIPT, path, mode], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        values.append([line for line in done.stdout.splitlines() if line.startswith("VALUE")][0])
    assert values[0] == values[1]


def _imbalanced_data(rng, classes=3, samples=600):
    centers = rng.standard_normal((classes, 8)) * 2.0
    labels = rng.choice(classes, size=samples, p=[0.8, 0.15, 0.05][:classes])
    features = centers[labels] + rng.standard_normal((samples, 8))
    return features.astype(np.float32), labels


@pytest.mark.parametrize("kind", ["sparse", "categorical", "binary"])
def test_training_reduces_the_loss(kind, rng):
    features, labels = _imbalanced_data(rng)
    alpha = focal_op.class_weights(np.bincount(labels, minlength=3))
    if kind == "sparse":
        loss, targets, units = SparseCategoricalFocalLoss(alpha=alpha, from_logits=True), labels, 3
    elif kind == "categorical":
        loss, targets, units = CategoricalFocalLoss(alpha=alpha), tf.one_hot(labels, 3).numpy(), 3
    else:
        loss, targets, units = BinaryFocalLoss(alpha=0.75, from_logits=True), (labels == 2).astype(np.float32)[:, None], 1
    keras.utils.set_random_seed(1)
    activation = "softmax" if kind == "categorical" else None
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    history = model.fit(features, targets, epochs=8, batch_size=64, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0], history


# ---- a drop-in for Keras's own classes ---------------------------------------------------------

@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_class_takes_a_dense1_head_with_flat_labels_as_keras_does(from_logits, rng):
    logits = random_logits(rng, (40, 1), scale=2.0, dtype=np.float32)
    y_pred = logits if from_logits else tf.sigmoid(logits).numpy()
    labels = (rng.uniform(size=40) < 0.3).astype(np.float32)
    keras_loss = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0,
                                                      from_logits=from_logits)
    ours = BinaryFocalLoss(apply_class_balancing=True, gamma=2.0, from_logits=from_logits)  # Keras's alpha 0.25
    for y_true, pred in ((labels, y_pred), (labels[:, None], y_pred), (labels[:, None], y_pred[:, 0])):
        np.testing.assert_allclose(ours(y_true, pred), keras_loss(y_true, pred), rtol=2e-5, atol=1e-7)
    no_balancing = keras.losses.BinaryFocalCrossentropy(from_logits=from_logits, alpha=0.6)(labels, y_pred)
    np.testing.assert_allclose(BinaryFocalLoss(apply_class_balancing=False, alpha=0.6, from_logits=from_logits,
                                               axis=-1)(labels, y_pred), no_balancing, rtol=2e-5, atol=1e-7)


def test_binary_class_trains_a_dense1_model_on_flat_labels(rng):
    features = rng.standard_normal((256, 4)).astype(np.float32)
    labels = (features[:, 0] + 0.3 * features[:, 1] > 0.5).astype(np.float32)  # shape (N,)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=BinaryFocalLoss(alpha=0.5, from_logits=True))
    history = model.fit(features, labels, epochs=6, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < 0.6 * history[0], history


def test_keras_arguments_are_accepted_or_named(rng):
    for cls in (SparseCategoricalFocalLoss, CategoricalFocalLoss, BinaryFocalLoss):
        assert cls(axis=-1).get_config()["axis"] == -1
        with pytest.raises(ValueError, match=r"last axis \(axis=-1\); got axis=1"):
            cls(axis=1)
        with pytest.raises(TypeError, match="gamma must be a real number"):
            cls(gamma="2")
    with pytest.raises(TypeError, match="apply_class_balancing"):
        BinaryFocalLoss(apply_class_balancing="yes")
    # NumPy scalars are scalars: one alpha for every class, whatever C is
    for scalar in (np.float32(0.25), np.float16(0.25), np.float64(0.25)):
        loss = SparseCategoricalFocalLoss(alpha=scalar, from_logits=True)
        assert loss.get_config()["alpha"] == 0.25
        logits = random_logits(rng, (8, 5), dtype=np.float32)
        np.testing.assert_allclose(loss(np.arange(8) % 5, logits),
                                   SparseCategoricalFocalLoss(alpha=0.25, from_logits=True)(np.arange(8) % 5, logits))


def test_categorical_class_matches_keras_for_keras_shapes(rng):
    logits = random_logits(rng, (16, 1), dtype=np.float32)
    y = np.ones(16, np.float32)  # C = 1 with flat labels: Keras expands them
    np.testing.assert_allclose(
        CategoricalFocalLoss(alpha=0.25, from_logits=True)(y, logits),
        keras.losses.CategoricalFocalCrossentropy(alpha=0.25, from_logits=True)(y, logits), rtol=1e-5, atol=1e-7)
