"""focal_op inside the TensorFlow ecosystem: XLA (jit_compile), SavedModel, tf.distribute,
mixed precision and determinism. Multi-process cases run in subprocesses."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import loss_inputs, value_and_gradient

import focal_op

ROOT = pathlib.Path(__file__).resolve().parent.parent


LOSSES = {
    "sparse": focal_op.sparse_softmax_focal_loss,
    "dense": focal_op.softmax_focal_loss,
    "sigmoid": focal_op.sigmoid_focal_loss,
}
# ---------------------------------------------------------------------------------------------
# XLA

def test_jit_compile_stays_finite_at_saturated_logits():
    """Where the textbook composite's gradient is NaN (γ < 1, p = 1), the kernels under XLA are
    finite and equal to the op outside XLA."""
    logits = tf.constant([[1e4, -1e4, 0.0], [30.0, 0.0, -30.0], [-1e4, 1e4, 0.0]], tf.float32)
    labels = tf.constant([0, 0, 0])
    for gamma in (0.0, 0.5, 2.0):
        eager = value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits, gamma=gamma)
        compiled = tf.function(lambda: value_and_gradient_tensors(labels, logits, gamma), jit_compile=True)()
        for fused, xla in zip(eager, compiled):
            assert np.all(np.isfinite(xla.numpy()))
            np.testing.assert_allclose(xla.numpy(), fused, rtol=1e-5, atol=1e-7)
    binary = tf.constant([[1.0, 0.0, 1.0]])
    wild = tf.constant([[1e4, -1e4, -50.0]])
    for gamma in (0.25, 2.0):
        def loss_and_grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = focal_op.sigmoid_focal_loss(binary, x, gamma=gamma)
            return loss, tape.gradient(loss, x)

        eager_loss, eager_grad = (t.numpy() for t in loss_and_grad(wild))
        loss, grad = tf.function(loss_and_grad, jit_compile=True)(wild)
        assert np.all(np.isfinite(grad.numpy()))
        np.testing.assert_allclose(loss.numpy(), eager_loss, rtol=1e-5, atol=1e-30)
        np.testing.assert_allclose(grad.numpy(), eager_grad, rtol=1e-5, atol=1e-30)


def value_and_gradient_tensors(labels, logits, gamma):
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = focal_op.sparse_softmax_focal_loss(labels, logits, gamma=gamma)
        upstream = tf.cast(tf.reshape(tf.range(1, tf.size(loss) + 1), tf.shape(loss)), loss.dtype)
        weighted = tf.reduce_sum(loss * (upstream / tf.cast(tf.size(loss) + 1, loss.dtype)))
    return loss, tape.gradient(weighted, logits)


def test_jit_compiled_function_nested_in_a_plain_one():
    logits = tf.constant(np.random.default_rng(1).standard_normal((5, 4)), tf.float32)
    labels = tf.constant([0, 1, 2, 3, 0])

    @tf.function(jit_compile=True)
    def inner(x):
        return focal_op.sparse_softmax_focal_loss(labels, x, gamma=0.5)

    outer = tf.function(lambda x: inner(x) * 2.0)
    np.testing.assert_allclose(outer(logits).numpy(), 2.0 * focal_op.sparse_softmax_focal_loss(labels, logits,
                                                                                               gamma=0.5).numpy(),
                               rtol=1e-6)


def _keras_case(kind, rng):
    x = rng.standard_normal((96, 6)).astype(np.float32)
    if kind == "sparse":
        return x, rng.integers(0, 4, 96), focal_op.losses.SparseCategoricalFocalLoss(from_logits=True, alpha=0.25)
    if kind == "dense":
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 96)]
        return x, y, focal_op.losses.CategoricalFocalLoss(from_logits=True, label_smoothing=0.1)
    y = (rng.uniform(size=(96, 4)) < 0.3).astype(np.float32)
    return x, y, focal_op.losses.BinaryFocalLoss(from_logits=True, alpha=0.25)


def _train(x, y, loss, jit_compile, epochs=2, weights=None):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"]


@pytest.mark.parametrize("kind", ["sparse", "dense", "sigmoid"])
def test_keras_compile_with_jit_compile_trains_like_without(kind, rng):
    x, y, loss = _keras_case(kind, rng)
    plain_weights, plain_loss = _train(x, y, loss, jit_compile=False)
    xla_weights, xla_loss = _train(x, y, loss, jit_compile=True)
    np.testing.assert_allclose(xla_loss, plain_loss, rtol=1e-5)
    for a, b in zip(xla_weights, plain_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# SavedModel

SAVED_MODEL_LOAD = textwrap.dedent(
    """
    import os, sys, json
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf
    import focal_op
    module = tf.saved_model.load(sys.argv[1])
    inputs = json.loads(sys.argv[2])
    logits = tf.constant(inputs["logits"], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        losses = module.losses(tf.constant(inputs["labels"], tf.int64), logits)
        total = tf.add_n([tf.reduce_sum(l) for l in losses])
    print("RESULT", json.dumps([l.numpy().tolist() for l in losses] + [tape.gradient(total, logits).numpy().tolist()]))
    """
)


class _FocalModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 5], tf.float32)])
    def losses(self, labels, logits):
        one_hot = tf.one_hot(labels, 5)
        return (focal_op.sparse_softmax_focal_loss(labels, logits, gamma=0.5, alpha=0.25),
                focal_op.softmax_focal_loss(one_hot, logits, label_smoothing=0.1),
                focal_op.sigmoid_focal_loss(one_hot, logits, alpha=0.25))


@pytest.mark.slow
def test_saved_model_loads_and_runs_in_a_fresh_process(tmp_path, rng):
    path = str(tmp_path / "focal_module")
    module = _FocalModule()
    tf.saved_model.save(module, path)
    labels = rng.integers(0, 5, 7)
    logits = rng.standard_normal((7, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        x = tf.constant(logits)
        tape.watch(x)
        expected = module.losses(tf.constant(labels), x)
        total = tf.add_n([tf.reduce_sum(l) for l in expected])
    expected = [l.numpy() for l in expected] + [tape.gradient(total, x).numpy()]
    inputs = json.dumps({"labels": labels.tolist(), "logits": logits.tolist()})
    done = subprocess.run([sys.executable, "-c", SAVED_MODEL_LOAD, path, inputs], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads([line for line in done.stdout.splitlines() if line.startswith("RESULT")][0][len("RESULT "):])
    for got, want in zip(loaded, expected):
        np.testing.assert_array_equal(np.asarray(got, np.float32), want)


# ---------------------------------------------------------------------------------------------
# tf.distribute

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, focal_op
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 6)).astype(np.float32)
    labels = rng.choice(4, size=256, p=[0.7, 0.2, 0.07, 0.03])
    cases = {
        "sparse": (labels, lambda: focal_op.losses.SparseCategoricalFocalLoss(from_logits=True, alpha=0.25)),
        "dense": (np.eye(4, dtype=np.float32)[labels], lambda: focal_op.losses.CategoricalFocalLoss(from_logits=True)),
        "sigmoid": (np.eye(4, dtype=np.float32)[labels], lambda: focal_op.losses.BinaryFocalLoss(from_logits=True)),
    }
    init = [rng.standard_normal((6, 4)).astype(np.float32) * 0.3, np.zeros(4, np.float32)]
    def train(y, make_loss):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.set_weights(init)
        model.compile(optimizer=keras.optimizers.SGD(0.2), loss=make_loss())
        history = model.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0)
        return model.get_weights(), history.history["loss"]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print("REPLICAS", strategy.num_replicas_in_sync)
    for name, (y, make_loss) in cases.items():
        single_weights, single_loss = train(y, make_loss)
        with strategy.scope():
            mirrored_weights, mirrored_loss = train(y, make_loss)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(single_weights, mirrored_weights))
        loss_diff = max(abs(a - b) for a, b in zip(single_loss, mirrored_loss))
        print("CASE", name, diff, loss_diff, single_loss[0], single_loss[-1])
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_matches_one_device():
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "REPLICAS 2" in done.stdout, done.stdout
    cases = [line.split() for line in done.stdout.splitlines() if line.startswith("CASE")]
    assert len(cases) == 3, done.stdout
    for _, name, weight_diff, loss_diff, first_loss, last_loss in cases:
        assert float(weight_diff) < 1e-5, (name, weight_diff)
        assert float(loss_diff) < 1e-5, (name, loss_diff)
        assert float(last_loss) < float(first_loss), name


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_processes():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "multi_worker.py")], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "weights identical on every worker: True" in done.stdout, done.stdout


# ---------------------------------------------------------------------------------------------
# mixed precision

@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", ["sparse", "dense", "sigmoid"])
def test_mixed_precision_policies_train(kind, policy, rng):
    x, y, loss = _keras_case(kind, rng)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
        assert model.layers[-1].compute_dtype == policy.split("_")[1]
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        history = model.fit(x, y, batch_size=32, epochs=8, verbose=0).history["loss"]
    finally:
        keras.config.set_dtype_policy(previous)
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.8 * history[0], history


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=["f16", "bf16"])
def test_16_bit_logits_are_float32_math_rounded_once_and_never_overflow(dtype):
    """Logits far beyond where a 16-bit exp overflows (exp(12) > 65504): the fused op computes in
    float32 and rounds the loss once, so it equals the float32 op's loss rounded to 16 bits."""
    logits16 = tf.cast(tf.constant([[3e4, 2.999e4, -3e4], [100.0, 120.0, -50.0], [-2e3, 0.0, 2e3]]), dtype)
    labels = tf.constant([1, 0, 1])
    one_hot = tf.one_hot(labels, 3)
    calls = (lambda z, **kw: focal_op.sparse_softmax_focal_loss(labels, z, **kw),
             lambda z, **kw: focal_op.softmax_focal_loss(tf.cast(one_hot, z.dtype), z, **kw),
             lambda z, **kw: focal_op.sigmoid_focal_loss(tf.cast(one_hot, z.dtype), z, alpha=0.25, **kw))
    for fn in calls:
        for extra in ({}, dict(gamma=0.5)):
            compare_16_bit_with_float32(fn, logits16, dtype, extra)


def compare_16_bit_with_float32(fn, logits16, dtype, extra):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits16)
        logits32 = tf.cast(logits16, tf.float32)
        tape.watch(logits32)
        loss16 = fn(logits16, **extra)
        loss32 = fn(logits32, **extra)
    np.testing.assert_array_equal(loss16.numpy(), tf.cast(loss32, dtype).numpy())
    grad16 = tape.gradient(loss16, logits16)
    grad32 = tape.gradient(loss32, logits32)
    assert np.all(np.isfinite(tf.cast(grad16, tf.float32).numpy()))
    np.testing.assert_allclose(tf.cast(grad16, tf.float32).numpy(), tf.cast(tf.cast(grad32, dtype), tf.float32),
                               rtol=1e-2, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# determinism

DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import os, hashlib
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf, keras, focal_op
    tf.config.experimental.enable_op_determinism()
    def digest(*arrays):
        h = hashlib.sha256()
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.standard_normal((4096, 300)), tf.float32)
    labels = tf.constant(rng.integers(0, 300, 4096))
    for run in range(2):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = focal_op.sparse_softmax_focal_loss(labels, logits, label_smoothing=0.1)
            sig = focal_op.sigmoid_focal_loss(tf.one_hot(labels, 300), logits, alpha=0.25)
            total = tf.reduce_sum(loss) + tf.reduce_sum(sig)
        grad = tape.gradient(total, logits)
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((300,)), keras.layers.Dense(300)])
        model.compile(optimizer="adam", loss=focal_op.losses.SparseCategoricalFocalLoss(from_logits=True))
        model.fit(logits, labels, batch_size=256, epochs=1, verbose=0)
        print("RUN", run, digest(loss.numpy(), sig.numpy(), grad.numpy()), digest(*model.get_weights()))
    """
)


def test_outputs_and_gradients_are_bitwise_reproducible(rng):
    logits = tf.constant(rng.standard_normal((8192, 200)), tf.float32)
    labels = tf.constant(rng.integers(0, 200, 8192))
    results = []
    for _ in range(3):
        results.append(value_and_gradient(focal_op.sparse_softmax_focal_loss, labels, logits, alpha=0.25))
    for loss, grad in results[1:]:
        np.testing.assert_array_equal(loss, results[0][0])
        np.testing.assert_array_equal(grad, results[0][1])


@pytest.mark.slow
def test_bitwise_reproducible_with_op_determinism_enabled():
    done = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [line.split()[2:] for line in done.stdout.splitlines() if line.startswith("RUN")]
    assert len(runs) == 2 and runs[0] == runs[1], done.stdout


# ---------------------------------------------------------------------------------------------
# in-place gradients

@pytest.mark.parametrize("kind", list(LOSSES))
def test_gradient_through_a_matmul_in_a_graph(kind, rng):
    """In a graph whose logits come from a matmul, the gradient op may write into the logits'
    buffer (forward_input_or_allocate_output); the result must not change."""
    x = tf.constant(rng.standard_normal((257, 8)), tf.float32)
    w = tf.Variable(rng.standard_normal((8, 33)).astype(np.float32))
    labels, _ = loss_inputs(kind, rng, (257, 33), tf.float32)
    reference = {"sparse": focal_op.reference.sparse_softmax_focal_loss,
                 "dense": focal_op.reference.softmax_focal_loss,
                 "sigmoid": focal_op.reference.sigmoid_focal_loss}[kind]

    def weight_gradient(loss_fn):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(loss_fn(labels, tf.matmul(x, w), gamma=2.0, alpha=0.25))
            return tape.gradient(loss, w)

        return step().numpy()

    np.testing.assert_allclose(weight_gradient(LOSSES[kind]), weight_gradient(reference), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# focal_op relies on TensorFlow behaviour that TensorFlow does not promise; these are the versions
# it was checked on. On another version this test says what to re-check.
CHECKED_TF_VERSIONS = ("2.21.",)


def test_private_tensorflow_behaviour_holds_for_this_version():
    assert tf.__version__.startswith(CHECKED_TF_VERSIONS), (
        f"TensorFlow {tf.__version__}: re-check ops._broadcast_source (the gradient of reduce_sum arrives as "
        "Tile(Reshape(g))) and _loader.in_xla_context (control_flow_util.GraphOrParentsInXlaContext), then add the "
        "version to CHECKED_TF_VERSIONS")
    from focal_op import _loader

    # the private XLA-context probe: True only while tracing a jit-compiled function
    seen = {}
    tf.function(lambda: seen.setdefault("xla", _loader.in_xla_context()) or tf.constant(0.0), jit_compile=True)()
    tf.function(lambda: seen.setdefault("graph", _loader.in_xla_context()) or tf.constant(0.0))()
    assert seen == {"xla": True, "graph": False}
    # the graph pattern ops._broadcast_source matches: the sigmoid gradient op gets a scalar upstream
    # gradient for reduce_sum and one value per row for reduce_sum over the last axis
    logits = tf.random.normal([8, 5])
    labels = tf.cast(logits > 0, tf.float32)
    for reduce, rank in ((tf.reduce_sum, 0), (lambda t: tf.reduce_sum(t, axis=-1), 2)):
        @tf.function
        def step(z):
            with tf.GradientTape() as tape:
                tape.watch(z)
                total = reduce(focal_op.sigmoid_focal_loss(labels, z, alpha=0.25))
            return tape.gradient(total, z)

        graph = step.get_concrete_function(tf.TensorSpec([8, 5])).graph
        grad_ops = [op for op in graph.get_operations() if op.type == "FocalOp>SigmoidFocalLossGrad"]
        assert len(grad_ops) == 1
        assert grad_ops[0].inputs[5].shape.rank == rank


def test_a_build_without_the_xla_lowering_fails_at_trace_time(monkeypatch):
    """Without the lowering (FOCAL_OP_WITH_XLA=OFF, or a TensorFlow without tf2xla headers) a
    function traced for XLA raises a named error instead of running anything else."""
    from focal_op import _build_info
    monkeypatch.setattr(_build_info, "WITH_XLA", False)
    logits = tf.zeros([2, 3])
    for fn in (lambda z: focal_op.sparse_softmax_focal_loss([0, 1], z),
               lambda z: focal_op.softmax_focal_loss(tf.ones([2, 3]) / 3, z),
               lambda z: focal_op.sigmoid_focal_loss(tf.ones([2, 3]), z)):
        with pytest.raises(focal_op.FocalOpXlaError, match="has no XLA lowering"):
            tf.function(fn, jit_compile=True)(logits)
        np.testing.assert_array_equal(tf.function(fn)(logits).numpy(), fn(logits).numpy())  # graphs still run
