"""focal_op.jax: the fused kernels as JAX FFI calls — values and gradients against the
jax.numpy reference and float64 numeric gradients, bitwise equality with the TensorFlow ops,
jit/grad/vmap, run-time hyper-parameters, errors, and the Keras losses on Keras's JAX backend."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from focal_op import _build_info

pytestmark = pytest.mark.skipif(not getattr(_build_info, "WITH_JAX", False), reason="built without the JAX extension")

jax = pytest.importorskip("jax")
jnp = jax.numpy

import focal_op.jax as fj  # noqa: E402

KINDS = ["sparse", "dense", "sigmoid"]


@pytest.fixture(autouse=True)
def on_the_cpu(request):
    """Every test but the GPU ones runs on the CPU handlers (also on a machine with a GPU)."""
    if "gpu" in request.node.name:
        yield
        return
    with jax.default_device(jax.devices("cpu")[0]):
        yield


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)


def _inputs(kind, rng, shape, dtype):
    logits = jnp.asarray(rng.standard_normal(shape) * 3, dtype)
    if kind == "sparse":
        return jnp.asarray(rng.integers(0, shape[-1], shape[:-1]), jnp.int32), logits
    if kind == "dense":
        return jnp.asarray(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]), dtype), logits
    return jnp.asarray(rng.uniform(size=shape) < 0.3, dtype), logits


def _functions(kind):
    name = {"sparse": "sparse_softmax_focal_loss", "dense": "softmax_focal_loss", "sigmoid": "sigmoid_focal_loss"}[kind]
    return getattr(fj, name), getattr(fj.reference, name)


CASES = [dict(), dict(gamma=0.5, alpha=0.25, label_smoothing=0.1), dict(gamma=3.0, alpha="vector"),
         dict(gamma=1.7, epsilon=1e-3), dict(gamma=0.0), dict(ignore_class=1)]


def _kwargs(kind, case, classes, rng):
    kwargs = dict(case)
    if kwargs.get("alpha") == "vector":
        kwargs["alpha"] = rng.uniform(0.1, 0.9, classes)
    if kind != "sparse":
        kwargs.pop("ignore_class", None)
    if kind == "sigmoid":
        kwargs.pop("epsilon", None)
    return kwargs


def _value_and_grad(fn, labels, logits, **kwargs):
    """The loss and the gradient of a weighted sum of it (every element weighs differently)."""
    loss = fn(labels, logits, **kwargs)
    weights = jnp.arange(1, loss.size + 1, dtype=loss.dtype).reshape(loss.shape) / (loss.size + 1)
    grad = jax.grad(lambda z: jnp.sum(fn(labels, z, **kwargs) * weights))(logits)
    return np.asarray(loss), np.asarray(grad)


@pytest.mark.parametrize("kind", KINDS)
def test_values_and_gradients_match_the_jax_reference(kind, rng, x64):
    fused_fn, reference_fn = _functions(kind)
    for dtype, rtol, atol in ((jnp.float32, 2e-5, 1e-6), (jnp.float64, 1e-11, 1e-13)):
        for shape in [(16, 10), (5, 300), (2, 3, 4)]:
            labels, logits = _inputs(kind, rng, shape, dtype)
            for case in CASES:
                kwargs = _kwargs(kind, case, shape[-1], rng)
                fused = _value_and_grad(fused_fn, labels, logits, **kwargs)
                expected = _value_and_grad(reference_fn, labels, logits, **kwargs)
                for a, b in zip(fused, expected):
                    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{kind} {shape} {dtype} {kwargs}")


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_float64_central_differences(kind, rng, x64):
    fused_fn, _ = _functions(kind)
    labels, logits = _inputs(kind, rng, (3, 5), jnp.float64)
    kwargs = dict(gamma=1.5, alpha=0.3)
    total = lambda z: float(jnp.sum(fused_fn(labels, z, **kwargs)))  # noqa: E731
    grad = np.asarray(jax.grad(lambda z: jnp.sum(fused_fn(labels, z, **kwargs)))(logits))
    z0, h = np.asarray(logits), 1e-6
    numeric = np.zeros_like(z0)
    for index in np.ndindex(z0.shape):
        up, down = z0.copy(), z0.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (total(jnp.asarray(up)) - total(jnp.asarray(down))) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("kind", KINDS)
def test_bitwise_equal_to_the_tensorflow_ops(kind, dtype, rng):
    tf = pytest.importorskip("tensorflow")
    import focal_op

    tf_fn = {"sparse": focal_op.sparse_softmax_focal_loss, "dense": focal_op.softmax_focal_loss,
             "sigmoid": focal_op.sigmoid_focal_loss}[kind]
    fused_fn, _ = _functions(kind)
    labels, logits = _inputs(kind, rng, (257, 33), jnp.dtype(dtype))
    kwargs = dict(gamma=2.0, alpha=0.25, label_smoothing=0.05)
    upstream = jnp.asarray(rng.uniform(0.5, 2.0, labels.shape[:logits.ndim - 1] if kind != "sigmoid" else logits.shape),
                           logits.dtype)
    loss, vjp = jax.vjp(lambda z: fused_fn(labels, z, **kwargs), logits)
    (grad,) = vjp(upstream)
    tf_logits = tf.constant(np.asarray(logits.astype(jnp.float32)), tf.as_dtype(dtype))
    tf_labels = tf.constant(np.asarray(labels if kind == "sparse" else labels.astype(jnp.float32)))
    if kind != "sparse":
        tf_labels = tf.cast(tf_labels, tf_logits.dtype)
    with tf.GradientTape() as tape:
        tape.watch(tf_logits)
        tf_loss = tf_fn(tf_labels, tf_logits, **kwargs)
    tf_grad = tape.gradient(tf_loss, tf_logits, output_gradients=tf.constant(np.asarray(upstream.astype(jnp.float32)),
                                                                             tf_logits.dtype))
    as_float = lambda t: np.asarray(t, np.float32)  # noqa: E731 - the same 16-bit values, comparable
    np.testing.assert_array_equal(as_float(loss.astype(jnp.float32)), as_float(tf.cast(tf_loss, tf.float32)))
    np.testing.assert_array_equal(as_float(grad.astype(jnp.float32)), as_float(tf.cast(tf_grad, tf.float32)))


def test_jit_vmap_and_leading_dims(rng):
    labels, logits = _inputs("sparse", rng, (4, 6, 9), jnp.float32)
    direct = fj.sparse_softmax_focal_loss(labels, logits, alpha=0.25)
    jitted = jax.jit(lambda y, z: fj.sparse_softmax_focal_loss(y, z, alpha=0.25))(labels, logits)
    mapped = jax.vmap(lambda y, z: fj.sparse_softmax_focal_loss(y, z, alpha=0.25))(labels, logits)
    flat = fj.sparse_softmax_focal_loss(labels.reshape(-1), logits.reshape(-1, 9), alpha=0.25).reshape(4, 6)
    for other in (jitted, mapped, flat):
        np.testing.assert_array_equal(np.asarray(other), np.asarray(direct))
    grads = jax.vmap(jax.grad(lambda z, y: jnp.sum(fj.sparse_softmax_focal_loss(y, z))))(logits, labels)
    np.testing.assert_array_equal(np.asarray(grads),
                                  np.asarray(jax.grad(lambda z: jnp.sum(fj.sparse_softmax_focal_loss(labels, z)))(logits)))


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_time_gamma_equals_the_same_number(kind, rng):
    fused_fn, _ = _functions(kind)
    labels, logits = _inputs(kind, rng, (40, 7), jnp.float32)
    for value in (2.0, 0.0, 0.5):
        compiled = jax.jit(jax.grad(lambda z, g: jnp.sum(fused_fn(labels, z, gamma=g, alpha=jnp.full(7, 0.25)))))
        expected = jax.grad(lambda z: jnp.sum(fused_fn(labels, z, gamma=value, alpha=[0.25] * 7)))(logits)
        np.testing.assert_array_equal(np.asarray(compiled(logits, jnp.float32(value))), np.asarray(expected))
    with pytest.raises(Exception, match="gamma must be a finite number >= 0"):
        jax.block_until_ready(jax.jit(lambda z, g: fused_fn(labels, z, gamma=g))(logits, jnp.float32(-1.0)))


def test_errors():
    logits = jnp.zeros((3, 4))
    with pytest.raises(Exception, match=r"outside the valid range of \[0, 4\)"):
        jax.block_until_ready(fj.sparse_softmax_focal_loss(jnp.array([0, 7, 1]), logits))
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        fj.sparse_softmax_focal_loss(jnp.array([0, 1, 1]), logits, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha must be a scalar or a vector of length C = 4; got length 3"):
        fj.softmax_focal_loss(jnp.ones((3, 4)) / 4, logits, alpha=jnp.ones(3))
    with pytest.raises(TypeError, match="sparse labels must be int32 or int64"):
        fj.sparse_softmax_focal_loss(jnp.array([0.0, 1.0, 1.0]), logits)
    with pytest.raises(TypeError, match="gamma must be a real number"):
        fj.sigmoid_focal_loss(jnp.ones((3, 4)), logits, gamma=True)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fj.sigmoid_focal_loss(jnp.ones((3, 4)), logits, reduction="average")


@pytest.mark.parametrize("reduction", ["none", "sum_over_classes", "mean_over_classes", "sum", "mean"])
def test_sigmoid_reductions(reduction, rng):
    labels, logits = _inputs("sigmoid", rng, (33, 7), jnp.float32)
    fused = _value_and_grad(fj.sigmoid_focal_loss, labels, logits, alpha=0.25, reduction=reduction)
    expected = _value_and_grad(fj.reference.sigmoid_focal_loss, labels, logits, alpha=0.25, reduction=reduction)
    for a, b in zip(fused, expected):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_importing_focal_op_jax_needs_no_tensorflow():
    script = textwrap.dedent("""
        import sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow fails
        import jax.numpy as jnp
        import focal_op.jax as fj
        loss = fj.sparse_softmax_focal_loss(jnp.array([1, 0]), jnp.array([[0.0, 1.0], [2.0, 0.0]]), gamma=0.0)
        print(float(loss.sum()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-2.0))  # softmax cross-entropy at gamma = 0
    np.testing.assert_allclose(float(out.stdout.split()[-1]), expected, rtol=1e-6)


def test_keras_losses_refuse_a_backend_without_kernels(monkeypatch):
    keras = pytest.importorskip("keras")

    from focal_op import losses

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(NotImplementedError, match="TensorFlow and JAX backends; the active backend is 'torch'"):
        losses.SparseCategoricalFocalLoss()


KERAS_FIT = textwrap.dedent("""
    import json, os, sys
    import numpy as np, keras
    import focal_op.losses as L
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 6)).astype(np.float32)
    cases = [
        ("sparse", rng.integers(0, 4, 96), L.SparseCategoricalFocalLoss(from_logits=True, alpha=0.25, ignore_class=3)),
        ("dense", np.eye(4, dtype=np.float32)[rng.integers(0, 4, 96)], L.CategoricalFocalLoss(from_logits=True,
                                                                                               label_smoothing=0.1)),
        ("binary", (rng.uniform(size=(96, 4)) < 0.3).astype(np.float32), L.BinaryFocalLoss(from_logits=True, alpha=0.25)),
    ]
    weights = [rng.standard_normal((6, 4)).astype(np.float32) * 0.5, np.zeros(4, np.float32)]
    result = {}
    for name, y, loss in cases:
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.set_weights(weights)  # the same start on both backends (their initialisers differ)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
        path = os.path.join(sys.argv[1], name + ".keras")
        model.save(path)
        restored = keras.models.load_model(path)
        result[name] = {"history": history, "evaluate": model.evaluate(x, y, verbose=0),
                        "restored": restored.evaluate(x, y, verbose=0),
                        "restored_loss": type(restored.loss).__name__}
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Activation("linear", dtype="float32")])
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L.SparseCategoricalFocalLoss(from_logits=True))
    result["mixed_float16"] = model.fit(x, cases[0][1] % 3, batch_size=32, epochs=1, shuffle=False,
                                        verbose=0).history["loss"]
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_keras_fit_save_and_load_on_the_jax_backend_match_the_tensorflow_backend(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    results = {}
    for backend in ("jax", "tensorflow"):
        folder = tmp_path / backend
        folder.mkdir()
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run([sys.executable, "-c", KERAS_FIT, str(folder)], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("sparse", "dense", "binary"):
        jax_result, tf_result = results["jax"][name], results["tensorflow"][name]
        np.testing.assert_allclose(jax_result["history"], tf_result["history"], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(jax_result["restored"], jax_result["evaluate"], rtol=1e-6, err_msg=name)
        assert jax_result["restored_loss"] == tf_result["restored_loss"]
    assert np.all(np.isfinite(results["jax"]["mixed_float16"]))
    np.testing.assert_allclose(results["jax"]["mixed_float16"], results["tensorflow"]["mixed_float16"], rtol=1e-2)


@pytest.mark.skipif(not fj._has_cuda_backend(), reason="needs jax with a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("kind", KINDS)
def test_on_the_gpu_the_cuda_kernels_match_the_reference(kind, rng):
    """The "CUDA" handlers: values and gradients against the jax.numpy reference on the GPU, a
    run-time gamma read from device memory (NaN when out of range), NaN rows for bad labels."""
    fused_fn, reference_fn = _functions(kind)
    with jax.default_device(jax.devices("cuda")[0]):
        for shape in [(16, 10), (300, 33), (8, 5000), (2, 3, 4)]:
            labels, logits = _inputs(kind, rng, shape, jnp.float32)
            for case in CASES:
                kwargs = _kwargs(kind, case, shape[-1], rng)
                fused = _value_and_grad(fused_fn, labels, logits, **kwargs)
                expected = _value_and_grad(reference_fn, labels, logits, **kwargs)
                for a, b in zip(fused, expected):
                    np.testing.assert_allclose(a, b, rtol=5e-5, atol=1e-6, err_msg=f"{kind} {shape} {kwargs}")
        labels, logits = _inputs(kind, rng, (64, 7), jnp.float32)
        compiled = jax.jit(jax.grad(lambda z, g: jnp.sum(fused_fn(labels, z, gamma=g))))
        static = jax.grad(lambda z: jnp.sum(fused_fn(labels, z, gamma=0.5)))(logits)
        np.testing.assert_allclose(np.asarray(compiled(logits, jnp.float32(0.5))), np.asarray(static), rtol=1e-6)
        bad_gamma = jax.jit(lambda z, g: fused_fn(labels, z, gamma=g))(logits, jnp.float32(-1.0))
        assert np.all(np.isnan(np.asarray(bad_gamma)))
        if kind == "sparse":
            loss = np.asarray(fused_fn(labels.at[5].set(99), logits))
            assert np.isnan(loss[5]) and np.all(np.isfinite(np.delete(loss, 5)))
