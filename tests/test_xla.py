"""The ops inside XLA (jit_compile=True): each lowers to a typed-FFI custom call of the same
kernels (csrc/tf/xla_ops.cc, csrc/xla/). Checked here: the compiled HLO holds the custom calls and
no composite, results bitwise equal to the ops outside XLA, run-time hyper-parameters (tf.Variable),
errors, SavedModel and TensorFlow's auto-clustering."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import loss_inputs

import focal_op
from focal_op import _build_info

pytestmark = pytest.mark.skipif(not _build_info.WITH_XLA, reason="built without the XLA lowering")

TARGETS = {
    "sparse": ("focal_op_softmax_forward", "focal_op_softmax_backward"),
    "dense": ("focal_op_softmax_forward", "focal_op_softmax_backward"),
    "sigmoid": ("focal_op_sigmoid_forward", "focal_op_sigmoid_backward"),
}


def _loss_fn(kind, **kwargs):
    if kind == "sparse":
        return lambda y, z: focal_op.sparse_softmax_focal_loss(y, z, **kwargs)
    if kind == "dense":
        return lambda y, z: focal_op.softmax_focal_loss(y, z, **kwargs)
    return lambda y, z: focal_op.sigmoid_focal_loss(y, z, **kwargs)


def _step(loss_fn):
    """loss and its vector-Jacobian product with an upstream gradient that weighs every loss
    element differently (made outside the step, so the step holds nothing but the ops)."""

    def step(labels, logits, upstream):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = loss_fn(labels, logits)
        return loss, tape.gradient(loss, logits, output_gradients=upstream)

    return step


def _upstream(loss_fn, labels, logits):
    shape = loss_fn(labels, logits).shape
    return tf.cast(tf.reshape(tf.range(1, shape.num_elements() + 1) % 7 + 1, shape), logits.dtype) / 8


def _run(step, loss_fn, labels, logits, **function_options):
    upstream = _upstream(loss_fn, labels, logits)
    return [t.numpy() for t in tf.function(step, **function_options)(labels, logits, upstream)]


@pytest.mark.parametrize("kind", list(TARGETS))
def test_compiled_hlo_calls_the_kernels_and_holds_no_composite(kind, rng):
    labels, logits = loss_inputs(kind, rng, (8, 5), tf.float32)
    loss_fn = _loss_fn(kind, gamma=2.0, alpha=0.25)
    compiled = tf.function(_step(loss_fn), jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(labels, logits, _upstream(loss_fn, labels, logits))(stage="hlo")
    calls = [line for line in hlo.splitlines() if "custom-call(" in line]
    for target in TARGETS[kind]:
        assert any(f'custom_call_target="{target}"' in line for line in calls), (target, hlo)
    assert all("API_VERSION_TYPED_FFI" in line for line in calls)
    # the composite would need exp and log of the logits; the fused step computes neither outside the calls
    for opcode in (" exponential(", " log(", " log-plus-one(", " logistic(", " power("):
        assert opcode not in hlo, (opcode, hlo)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
@pytest.mark.parametrize("kind", list(TARGETS))
def test_values_and_gradients_are_bitwise_those_outside_xla(kind, dtype, rng):
    cases = [dict(), dict(gamma=0.5, alpha=0.25, label_smoothing=0.1), dict(gamma=5.0, alpha="vector"),
             dict(gamma=1.7, epsilon=1e-3), dict(ignore_class=1)]
    # 4099 x 33 rows are split over XLA's intra-op threads (and TensorFlow's outside XLA)
    for shape in [(16, 10), (6, 1000), (2, 3, 4), (4099, 33)]:
        labels, logits = loss_inputs(kind, rng, shape, dtype)
        for case in cases:
            kwargs = dict(case)
            if kwargs.get("alpha") == "vector":
                kwargs["alpha"] = rng.uniform(0.1, 0.9, shape[-1])
            if kind != "sparse" and "ignore_class" in kwargs or kind == "sigmoid" and "epsilon" in kwargs:
                continue
            loss_fn = _loss_fn(kind, **kwargs)
            graph = _run(_step(loss_fn), loss_fn, labels, logits)
            xla = _run(_step(loss_fn), loss_fn, labels, logits, jit_compile=True)
            for a, b in zip(xla, graph):
                np.testing.assert_array_equal(a, b, err_msg=f"{kind} {dtype.name} {shape} {kwargs}")


@pytest.mark.parametrize("reduction", ["sum_over_classes", "mean_over_classes", "sum", "mean"])
def test_sigmoid_reductions_under_xla(reduction, rng):
    labels, logits = loss_inputs("sigmoid", rng, (33, 7), tf.float32)
    loss_fn = _loss_fn("sigmoid", reduction=reduction, alpha=0.25)
    graph = _run(_step(loss_fn), loss_fn, labels, logits)
    xla = _run(_step(loss_fn), loss_fn, labels, logits, jit_compile=True)
    if reduction in ("sum", "mean"):  # the per-row sums are the kernels' bits; TF and XLA add them in other orders
        np.testing.assert_allclose(xla[0], graph[0], rtol=1e-6)
    else:
        np.testing.assert_array_equal(xla[0], graph[0])
    np.testing.assert_array_equal(xla[1], graph[1])


@pytest.mark.parametrize("kind", list(TARGETS))
def test_a_variable_gamma_is_read_at_every_call(kind, rng):
    labels, logits = loss_inputs(kind, rng, (40, 6), tf.float32)
    gamma = tf.Variable(2.0, dtype=tf.float64)
    compiled = tf.function(_step(_loss_fn(kind, gamma=gamma)), jit_compile=True)
    upstream = _upstream(_loss_fn(kind), labels, logits)
    for value in (2.0, 0.0, 0.5):
        gamma.assign(value)
        expected = [t.numpy() for t in _step(_loss_fn(kind, gamma=value))(labels, logits, upstream)]
        for a, b in zip(compiled(labels, logits, upstream), expected):
            np.testing.assert_array_equal(a.numpy(), b, err_msg=f"gamma = {value}")
    hlo = compiled.experimental_get_compiler_ir(labels, logits, upstream)(stage="hlo")
    forward = next(line for line in hlo.splitlines() if f'custom_call_target="{TARGETS[kind][0]}"' in line)
    assert ("f64[2]" if kind == "sigmoid" else "f64[3]") in forward  # the hyper-parameters as a run-time operand
    gamma.assign(-1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="gamma must be a finite number >= 0"):
        compiled(labels, logits, upstream)


def test_run_time_alpha_and_smoothing_are_checked():
    logits = tf.constant(np.random.default_rng(0).standard_normal((5, 4)), tf.float32)
    labels = tf.constant([0, 1, 2, 3, 0])
    alpha = tf.Variable([0.25, 0.5, 1.0, 1.0], dtype=tf.float64)
    smoothing = tf.Variable(0.1, dtype=tf.float64)
    compiled = tf.function(lambda z: focal_op.sparse_softmax_focal_loss(labels, z, alpha=alpha,
                                                                        label_smoothing=smoothing), jit_compile=True)
    np.testing.assert_array_equal(
        compiled(logits).numpy(),
        focal_op.sparse_softmax_focal_loss(labels, logits, alpha=alpha.numpy(), label_smoothing=0.1).numpy())
    alpha.assign([0.25, np.nan, 1.0, 1.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"alpha\[1\] = nan"):
        compiled(logits)
    alpha.assign([0.25, 0.5, 1.0, 1.0])
    smoothing.assign(1.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label_smoothing must be in"):
        compiled(logits)


def test_out_of_range_labels_raise_under_xla():
    logits = tf.constant(np.random.default_rng(0).standard_normal((3, 4)), tf.float32)
    for labels in ([0, 9, 2], [0, -1, 2]):
        compiled = tf.function(lambda z: focal_op.sparse_softmax_focal_loss(tf.constant(labels), z), jit_compile=True)
        with pytest.raises(tf.errors.InvalidArgumentError, match="outside the valid range of \\[0, 4\\)"):
            compiled(logits)


def test_constant_bad_tensors_fail_when_compiled():
    """A bad hyper-parameter that is a constant tensor is caught when XLA compiles the call."""
    logits = tf.zeros([2, 3])
    compiled = tf.function(lambda z: focal_op.sparse_softmax_focal_loss(
        [0, 1], z, gamma=tf.constant(-2.0, tf.float64)), jit_compile=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="gamma must be a finite number >= 0"):
        compiled(logits)


def test_saved_model_of_a_jit_compiled_function(tmp_path, rng):
    labels, logits = loss_inputs("sparse", rng, (12, 5), tf.float32)

    class Module(tf.Module):
        @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None], tf.int64),
                                                        tf.TensorSpec([None, 5], tf.float32),
                                                        tf.TensorSpec([None], tf.float32)])
        def step(self, labels, logits, upstream):
            return _step(_loss_fn("sparse", gamma=1.5, alpha=0.5))(labels, logits, upstream)

    module = Module()
    upstream = tf.linspace(0.5, 2.0, 12)
    expected = [t.numpy() for t in module.step(labels, logits, upstream)]
    tf.saved_model.save(module, str(tmp_path / "model"))
    restored = tf.saved_model.load(str(tmp_path / "model"))
    for a, b in zip(restored.step(labels, logits, upstream), expected):
        np.testing.assert_array_equal(a.numpy(), b)


AUTO_CLUSTERING = textwrap.dedent("""
    import numpy as np, tensorflow as tf, focal_op
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((64, 8)), tf.float32)
    w = tf.Variable(rng.standard_normal((8, 10)), dtype=tf.float32)
    labels = tf.constant(np.arange(64) % 10)

    def step():  # a linear layer's training step around the loss
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(focal_op.sparse_softmax_focal_loss(labels, tf.nn.relu(x @ w) * 2.0 - 1.0))
        return loss, tape.gradient(loss, w)

    expected = [t.numpy() for t in step()]
    for _ in range(3):
        result = [t.numpy() for t in tf.function(step)()]
    # the layer's matmuls sum in another order in XLA than in oneDNN: gradient entries that
    # cancel to ~1e-4 keep an absolute error relative to the gradient's scale
    for a, b in zip(result, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())
    print("ok")
""")



@pytest.mark.slow
def test_auto_clustering_compiles_the_ops(tmp_path):
    dump = tmp_path / "xla_dump"
    env = dict(os.environ, TF_XLA_FLAGS="--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit",
               XLA_FLAGS=f"--xla_dump_to={dump} --xla_dump_hlo_as_text", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", AUTO_CLUSTERING], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
    texts = [p.read_text() for p in pathlib.Path(dump).glob("*.txt")]
    assert any('custom_call_target="focal_op_softmax_forward"' in t for t in texts), sorted(os.listdir(dump))
    assert any('custom_call_target="focal_op_softmax_backward"' in t for t in texts)


@pytest.mark.skipif(not tf.config.list_physical_devices("GPU") or not _build_info.WITH_CUDA,
                    reason="needs TensorFlow with a GPU and a CUDA build")
@pytest.mark.parametrize("kind", list(TARGETS))
def test_on_the_gpu_xla_runs_the_cuda_kernels(kind, rng):
    """XLA:GPU calls the "CUDA" handlers: the same values as the GPU op outside XLA, a run-time
    gamma read from device memory, NaN rows for out-of-range labels (no host synchronisation)."""
    with tf.device("GPU:0"):
        labels, logits = loss_inputs(kind, rng, (300, 17), tf.float32)
        gamma = tf.Variable(2.0, dtype=tf.float64)
        loss_fn = _loss_fn(kind, gamma=gamma, alpha=0.25)
        upstream = _upstream(loss_fn, labels, logits)
        compiled = tf.function(_step(loss_fn), jit_compile=True)
        hlo = compiled.experimental_get_compiler_ir(labels, logits, upstream)(stage="hlo")
        assert f'custom_call_target="{TARGETS[kind][0]}"' in hlo
        for value in (2.0, 0.5):
            gamma.assign(value)
            graph = _run(_step(loss_fn), loss_fn, labels, logits)
            xla = [t.numpy() for t in compiled(labels, logits, upstream)]
            for a, b in zip(xla, graph):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        if kind == "sparse":
            bad = tf.tensor_scatter_nd_update(labels, [[3]], tf.constant([99], labels.dtype))
            loss = tf.function(lambda z: focal_op.sparse_softmax_focal_loss(bad, z), jit_compile=True)(logits)
            assert np.isnan(loss.numpy()[3]) and np.all(np.isfinite(np.delete(loss.numpy(), 3)))
