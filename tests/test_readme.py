"""Each Python block of the README runs alone, as written, and computes what its text says
(checked against the pure-TF reference, Keras, or the property the README states)."""

import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import focal_op

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def check_sparse(ns):
    want = focal_op.reference.sparse_softmax_focal_loss(ns["labels"], ns["logits"], alpha=[0.5] * 10,
                                                        label_smoothing=0.1, ignore_class=0)
    np.testing.assert_allclose(ns["loss"], want, rtol=1e-5, atol=1e-7)
    assert np.all(ns["loss"].numpy()[ns["labels"].numpy() == 0] == 0)


def check_soft(ns):
    want = focal_op.reference.softmax_focal_loss(ns["soft_targets"], ns["logits"], gamma=2.0, label_smoothing=0.1)
    np.testing.assert_allclose(ns["loss"], want, rtol=1e-5, atol=1e-7)


def check_sigmoid(ns):
    np.testing.assert_allclose(ns["loss"], focal_op.reference.sigmoid_focal_loss(ns["targets"], ns["logits"],
                                                                                 alpha=0.25), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ns["total"], tf.reduce_sum(ns["loss"]), rtol=1e-5)


def check_class_weights(ns):
    np.testing.assert_allclose(np.mean(ns["alpha"]), 1.0, rtol=1e-12)
    assert np.all(np.diff(ns["alpha"]) > 0)  # rarer classes weigh more


def check_keras_after(ns):
    y_pred = np.array([[2.0], [-1.0], [0.5]], np.float32)
    y_true = np.array([1.0, 0.0, 0.0], np.float32)
    want = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0,
                                                from_logits=True)(y_true, y_pred)
    np.testing.assert_allclose(ns["binary"](y_true, y_pred), want, rtol=1e-5)
    assert isinstance(ns["sparse"], focal_op.losses.SparseCategoricalFocalLoss)


def check_dense1(ns):
    assert np.isfinite(ns["model"].evaluate(ns["x"], ns["y"], verbose=0))
    assert ns["model"].output_shape == (None, 1) and ns["y"].shape == (256,)


def check_jax(ns):
    import focal_op.jax as fj

    want = fj.reference.sparse_softmax_focal_loss(ns["labels"], ns["logits"], gamma=2.0, alpha=0.25)
    np.testing.assert_allclose(np.asarray(ns["loss"]), np.asarray(want), rtol=1e-5, atol=1e-7)
    assert ns["grad"].shape == ns["logits"].shape and np.all(np.isfinite(np.asarray(ns["grad"])))


CHECKS = {
    "ignore_class=0)": check_sparse,
    "softmax_focal_loss(soft_targets": check_soft,
    'reduction="sum")': check_sigmoid,
    "class_weights(": check_class_weights,
    "focal_op.losses.BinaryFocalLoss(apply_class_balancing=True": check_keras_after,
    "keras.layers.Dense(1)": check_dense1,
    "fj.sparse_softmax_focal_loss(labels, logits, gamma=2.0, alpha=0.25)": check_jax,
}


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 7
    for key in CHECKS:
        assert sum(key in block for block in BLOCKS) == 1, key


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_alone(index):
    block = BLOCKS[index]
    namespace = {}
    exec(compile(block, f"{README}:block{index}", "exec"), namespace)  # noqa: S102 - the README's own examples
    for key, check in CHECKS.items():
        if key in block:
            check(namespace)
