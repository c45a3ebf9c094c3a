"""Bad input gives a clear, named error and never takes the process down."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import focal_op

LOGITS = np.zeros((3, 4), np.float32)
LABELS = np.array([0, 1, 2])


@pytest.mark.parametrize("bad_label", [4, 100, -1])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_label_out_of_range_names_value_and_range(bad_label, label_dtype):
    labels = np.array([0, bad_label, 2], label_dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"label value of {bad_label} .*\[0, 4\)"):
        focal_op.sparse_softmax_focal_loss(labels, LOGITS)


def test_label_out_of_range_inside_tf_function():
    fn = tf.function(lambda y, z: focal_op.sparse_softmax_focal_loss(y, z))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label value of 9"):
        fn(tf.constant([0, 9, 1]), tf.constant(LOGITS))


def test_ignore_class_outside_the_range_is_allowed():
    loss = focal_op.sparse_softmax_focal_loss(np.array([0, -1, 2]), LOGITS, ignore_class=-1)
    assert loss.numpy()[1] == 0 and np.all(np.isfinite(loss.numpy()))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label value of -1"):
        focal_op.sparse_softmax_focal_loss(np.array([0, -1, 2]), LOGITS, ignore_class=0)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(gamma=-0.5), ValueError, "gamma must be a finite number >= 0"),
        (dict(gamma=float("nan")), ValueError, "gamma"),
        (dict(epsilon=0.5), ValueError, r"epsilon must be None or a number in \[0, 0.5\)"),
        (dict(epsilon=-1e-3), ValueError, "epsilon"),
        (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
        (dict(alpha=[0.1, 0.2, 0.3]), ValueError, r"alpha must be a scalar or a vector of length C = 4; got length 3"),
        (dict(alpha=np.ones((2, 2))), ValueError, "alpha must be"),
        (dict(alpha=float("inf")), ValueError, r"alpha must be in \[0, "),
        (dict(ignore_class=1.5), TypeError, "ignore_class"),
    ],
)
def test_bad_arguments_are_named_before_any_kernel(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        focal_op.sparse_softmax_focal_loss(LABELS, LOGITS, **kwargs)
    with pytest.raises(error, match=pattern):
        focal_op.reference.sparse_softmax_focal_loss(LABELS, LOGITS, **kwargs)


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="labels must have the shape of logits without its last axis"):
        focal_op.sparse_softmax_focal_loss(np.zeros((3, 1), np.int64), LOGITS)
    with pytest.raises(ValueError, match="labels must have the shape"):
        focal_op.sparse_softmax_focal_loss(np.zeros((2,), np.int64), LOGITS)
    with pytest.raises(ValueError, match="rank >= 1"):
        focal_op.sparse_softmax_focal_loss(0, 1.0)
    with pytest.raises(TypeError, match="int32 or int64"):
        focal_op.sparse_softmax_focal_loss(LABELS.astype(np.float32), LOGITS)
    with pytest.raises(TypeError, match="logits must be float16, bfloat16, float32 or float64"):
        focal_op.sparse_softmax_focal_loss(LABELS, LOGITS.astype(np.int32))


def test_tensor_hyper_parameters_are_checked_by_the_kernel():
    with pytest.raises(tf.errors.InvalidArgumentError, match="gamma must be a finite number >= 0"):
        focal_op.sparse_softmax_focal_loss(LABELS, LOGITS, gamma=tf.constant(-1.0))


def test_alpha_length_checked_when_shapes_are_unknown():
    fn = tf.function(
        lambda y, z, a: focal_op.sparse_softmax_focal_loss(y, z, alpha=a),
        input_signature=[tf.TensorSpec(None, tf.int64), tf.TensorSpec(None, tf.float32),
                         tf.TensorSpec(None, tf.float64)],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha must be a scalar or a vector of length C = 4"):
        fn(LABELS, LOGITS, np.ones(3))


# Raw op calls that bypass the Python checks: each must raise, none may crash the process.
RAW_OP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf, focal_op
    lib = focal_op.op_library()
    f64 = lambda v: tf.constant(v, tf.float64)
    z = tf.zeros([3, 4]); y = tf.constant([0, 1, 2], tf.int64)
    good = dict(labels=y, logits=z, alpha=f64(1.0), gamma=f64(2.0), epsilon=f64(0.0), label_smoothing=f64(0.0))
    loss, stats = lib.focal_op_sparse_softmax_focal_loss(**good)
    cases = {
        "negative gamma": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "gamma": f64(-1.0)}),
        "epsilon 0.5": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "epsilon": f64(0.5)}),
        "vector gamma": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "gamma": f64([1.0, 2.0])}),
        "alpha length": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "alpha": f64([1.0, 2.0])}),
        "alpha nan": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "alpha": f64(float("nan"))}),
        "rank mismatch": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "labels": tf.zeros([3, 1], tf.int64)}),
        "scalar logits": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "logits": tf.zeros([]), "labels": tf.zeros([], tf.int64)}),
        "huge label": lambda: lib.focal_op_sparse_softmax_focal_loss(**{**good, "labels": tf.constant([0, 2**62, 1], tf.int64)}),
        "stats dtype": lambda: lib.focal_op_sparse_softmax_focal_loss(**good, Tstats=tf.float64),
        "grad stats shape": lambda: lib.focal_op_sparse_softmax_focal_loss_grad(**good, row_stats=tf.zeros([3, 2]), loss_grad=tf.ones([3])),
        "grad loss_grad shape": lambda: lib.focal_op_sparse_softmax_focal_loss_grad(**good, row_stats=stats, loss_grad=tf.ones([5])),
        "dense labels shape": lambda: lib.focal_op_softmax_focal_loss(**{**good, "labels": tf.zeros([3, 5])}),
        "dense stats dtype": lambda: lib.focal_op_softmax_focal_loss(**{**good, "labels": z}, Tstats=tf.float64),
        "dense grad stats": lambda: lib.focal_op_softmax_focal_loss_grad(**{**good, "labels": z}, row_stats=tf.zeros([2, 4]), loss_grad=tf.ones([3])),
        "sigmoid alpha": lambda: lib.focal_op_sigmoid_focal_loss(labels=z, logits=z, alpha=f64([1.0, 2.0]), gamma=f64(2.0), label_smoothing=f64(0.0)),
        "sigmoid gamma": lambda: lib.focal_op_sigmoid_focal_loss(labels=z, logits=z, alpha=f64(0.25), gamma=f64(-2.0), label_smoothing=f64(0.0)),
        "sigmoid labels": lambda: lib.focal_op_sigmoid_focal_loss(labels=tf.zeros([4, 3]), logits=z, alpha=f64(0.25), gamma=f64(2.0), label_smoothing=f64(0.0)),
        "sigmoid grad shape": lambda: lib.focal_op_sigmoid_focal_loss_grad(labels=z, logits=z, alpha=f64(0.25), gamma=f64(2.0), label_smoothing=f64(0.0), loss_grad=tf.ones([3])),
        "grad bad label": lambda: lib.focal_op_sparse_softmax_focal_loss_grad(**{**good, "labels": tf.constant([0, 7, 1], tf.int64)}, row_stats=stats, loss_grad=tf.ones([3])),
    }
    for name, call in cases.items():
        try:
            call()
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            print("raised:", name, "|", str(err).splitlines()[0][:200])
        else:
            print("NO ERROR:", name)
            sys.exit(1)
    print("all raised")
    """
)


@pytest.mark.slow
def test_raw_op_misuse_raises_in_a_subprocess():
    result = subprocess.run([sys.executable, "-c", RAW_OP_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all raised" in result.stdout
    assert "raised: huge label | " in result.stdout and "label value of 4611686018427387904" in result.stdout


ISA_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf, focal_op
    rng = np.random.default_rng(7)
    out = {}

    def record(key, fn, labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = fn(labels, logits)
        out["loss_" + key] = loss.numpy()
        out["grad_" + key] = tape.gradient(loss, logits).numpy()

    # 37 rows: whole blocks of 4, 8 and 16 short rows (one per vector lane) and a remainder
    for c in (3, 10, 21, 32, 33, 37, 1000):
        z = tf.constant(rng.standard_normal((37, c)).astype(np.float32) * 4)
        y = tf.constant(rng.integers(0, c, 37))
        one_hot = tf.one_hot(y, c)
        soft = tf.constant(rng.dirichlet(np.ones(c), 37).astype(np.float32))
        for smoothing in (0.0, 0.1):
            for gamma in (0.5, 2.0):
                for name, module in (("op", focal_op), ("ref", focal_op.reference)):
                    dtype = tf.float32 if name == "op" else tf.float64
                    zz = tf.cast(z, dtype)
                    record(f"{name}_sparse{c}_{smoothing}_{gamma}", lambda y_, z_: module.sparse_softmax_focal_loss(
                        y_, z_, gamma=gamma, alpha=0.25, label_smoothing=smoothing), y, zz)
                    for labels_name, labels in (("onehot", one_hot), ("soft", soft)):
                        record(f"{name}_{labels_name}{c}_{smoothing}_{gamma}", lambda y_, z_: module.softmax_focal_loss(
                            y_, z_, gamma=gamma, label_smoothing=smoothing), tf.cast(labels, dtype), zz)
    np.savez(sys.argv[1], **out)
    """
)


@pytest.mark.slow
def test_every_cpu_instruction_set_gives_the_same_result(tmp_path):
    """Each instruction set's kernels (generic: 4 short rows per vector, avx2: 8, avx512: 16) against
    the float64 reference and against each other."""
    import os

    results = {}
    for isa in ("generic", "avx2", "best"):
        env = dict(os.environ)
        if isa != "best":
            env["FOCAL_OP_CPU_ISA"] = isa
        path = tmp_path / f"{isa}.npz"
        done = subprocess.run([sys.executable, "-c", ISA_SCRIPT, str(path)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        results[isa] = np.load(path)
    keys = [key for key in results["generic"].files if "_op_" in key]
    assert len(keys) == 2 * 7 * 2 * 2 * 3
    for isa in ("generic", "avx2", "best"):
        for key in keys:
            reference = results[isa][key.replace("_op_", "_ref_")]
            scale = np.max(np.abs(reference))
            np.testing.assert_allclose(results[isa][key], reference, rtol=2e-5, atol=2e-6 * scale,
                                       err_msg=f"{isa} {key} vs float64 reference")
            if isa != "generic":
                np.testing.assert_allclose(results[isa][key], results["generic"][key], rtol=1e-5, atol=1e-7,
                                           err_msg=f"{isa} {key}")


GUARD_SCRIPT = textwrap.dedent(
    """
    import os, warnings
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import focal_op
    for w in caught:
        if issubclass(w.category, focal_op.FocalOpBuildWarning):
            print("WARNED:", w.message)
    with open("/proc/self/maps") as maps:
        print("NATIVE LOADED:", "_focal_op_tf.so" in maps.read())
    try:
        focal_op.sparse_softmax_focal_loss([0], [[0.0, 1.0]])
    except focal_op.FocalOpBuildError as err:
        print("GUARD:", err)
    print("REFERENCE:", float(focal_op.reference.sparse_softmax_focal_loss([0], [[0.0, 1.0]])[0]))
    """
)


@pytest.mark.slow
def test_a_tensorflow_version_mismatch_is_one_clear_error(tmp_path):
    """A copy of the installed package that claims another TensorFlow: the import warns with one
    sentence and loads nothing native; the first op use raises it; the reference still works."""
    package = pathlib.Path(focal_op.__file__).parent
    copy = tmp_path / "focal_op"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    info = copy / "_build_info.py"
    info.write_text(re.sub(r'TF_VERSION = ".*"', 'TF_VERSION = "1.0.0"', info.read_text()))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", GUARD_SCRIPT], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    warned = [line for line in out.splitlines() if line.startswith("WARNED:")]
    guard = [line for line in out.splitlines() if line.startswith("GUARD:")]
    assert warned and guard, out + done.stderr
    for line in (warned[0], guard[0]):
        assert "built against TensorFlow 1.0.0" in line and tf.__version__ in line
        assert "pip install --no-build-isolation" in line
    assert "NATIVE LOADED: False" in out
    assert "REFERENCE:" in out


SAVED_MODEL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    if sys.argv[2] == "import":
        import focal_op
    try:
        module = tf.saved_model.load(sys.argv[1])
    except Exception as err:
        print("LOAD ERROR:", type(err).__name__, str(err).splitlines()[0])
        raise SystemExit(0)
    print("LOADED")
    """
)


@pytest.mark.slow
def test_loading_a_saved_model_without_import_names_the_missing_op(tmp_path):
    """What the README documents: without `import focal_op` the loader cannot find the op."""
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 3], tf.float32)])
        def loss(self, labels, logits):
            return focal_op.sparse_softmax_focal_loss(labels, logits)

    path = str(tmp_path / "saved")
    tf.saved_model.save(Module(), path)
    outputs = {}
    for mode in ("import", "no-import"):
        done = subprocess.run([sys.executable, "-c", SAVED_MODEL_SCRIPT, path, mode], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[mode] = done.stdout
    assert "LOADED" in outputs["import"]
    assert "Op type not registered 'FocalOp>SparseSoftmaxFocalLoss'" in outputs["no-import"], outputs["no-import"]


def test_cuda_entry_points_without_a_gpu_raise_a_clear_error():
    """A CUDA build on a machine without GPU (this CI): the device entry points say so."""
    from focal_op import _focal_core as core

    if not core.WITH_CUDA or core.cuda_device_count() > 0:
        pytest.skip("needs a CUDA build on a machine without GPU")

    class FakeDeviceArray:
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}

    fake = FakeDeviceArray()
    with pytest.raises(RuntimeError, match="no CUDA device"):
        core.sparse_softmax_forward_cuda(fake, fake, fake, fake)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        core.sigmoid_forward_cuda(fake, fake, fake)


def test_cuda_build_registers_gpu_kernels_for_every_op():
    """With CUDA, every op has GPU kernels for every dtype, the float64 scalars in host memory."""
    from focal_op import _build_info
    from tensorflow.python.framework import kernels

    if not _build_info.WITH_CUDA:
        pytest.skip("built without CUDA")
    focal_op.op_library()
    for op, scalars, per_dtype in [
        ("SparseSoftmaxFocalLoss", {"gamma", "epsilon", "label_smoothing"}, 2),
        ("SparseSoftmaxFocalLossGrad", {"gamma", "epsilon", "label_smoothing"}, 2),
        ("SoftmaxFocalLoss", {"gamma", "epsilon", "label_smoothing"}, 1),
        ("SoftmaxFocalLossGrad", {"gamma", "epsilon", "label_smoothing"}, 1),
        ("SigmoidFocalLoss", {"gamma", "label_smoothing"}, 1),
        ("SigmoidFocalLossGrad", {"gamma", "label_smoothing"}, 1),
    ]:
        gpu = [k for k in kernels.get_registered_kernels_for_op("FocalOp>" + op).kernel if k.device_type == "GPU"]
        assert len(gpu) == 4 * per_dtype, op  # half, bfloat16, float, double (x int32/int64 labels)
        for kernel in gpu:
            assert set(kernel.host_memory_arg) == scalars, op
