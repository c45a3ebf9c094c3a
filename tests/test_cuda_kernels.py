"""The CUDA kernels through focal_op._focal_core's GPU entry points, on CuPy arrays, against the
float64 NumPy oracle (numpy_oracle.py) and the CPU kernels. Needs no TensorFlow; skipped where
the core was built without CUDA, CuPy is missing or no GPU is visible."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numpy_oracle
from focal_op import _focal_core as core

if not getattr(core, "WITH_CUDA", False):
    pytest.skip("focal_op was built without CUDA", allow_module_level=True)
if core.cuda_device_count() == 0:
    pytest.skip("no CUDA device", allow_module_level=True)
cp = pytest.importorskip("cupy")

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
DTYPES = ["float16", "bfloat16", "float32", "float64"]
# (rtol, atol) against the float64 oracle evaluated on the same (rounded) inputs
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (2e-5, 2e-6), "float16": (2e-3, 2e-4), "bfloat16": (1.6e-2, 2e-3)}
# classes around every change of the threads-per-row layout, and the usual shapes
SHAPES = [(7, 1), (9, 2), (16, 4), (33, 5), (16, 10), (64, 32), (20, 33), (8, 128), (8, 129), (6, 1000),
          (3, 4096), (3, 4097), (2, 32000), (2, 3, 4, 5)]


def _storage_dtype(dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def _rounded(values, dtype):
    """values as the GPU sees them (rounded to dtype), in float64."""
    return np.asarray(values).astype(_storage_dtype(dtype)).astype(np.float64)


def _to_device(values, dtype):
    host = np.ascontiguousarray(np.asarray(values).astype(_storage_dtype(dtype)))
    return cp.asarray(host.view(np.uint16) if dtype == "bfloat16" else host)


def _from_device(array, dtype):
    host = cp.asnumpy(array)
    return (host.view(_storage_dtype(dtype)) if dtype == "bfloat16" else host).astype(np.float64)


def _alpha(alpha):
    return None if alpha is None else cp.asarray(np.atleast_1d(np.asarray(alpha, np.float64)))


def _dtype_arg(dtype):
    return "bfloat16" if dtype == "bfloat16" else None


def _stats_dtype(dtype):
    return np.float64 if dtype == "float64" else np.float32


def softmax_on_gpu(labels, logits, upstream, dtype, dense=False, alpha=None, **kwargs):
    """(loss, logits_grad) in float64 from the GPU forward and backward."""
    d_logits = _to_device(logits, dtype)
    d_labels = _to_device(labels, dtype) if dense else cp.asarray(labels)
    batch = logits.shape[:-1]
    loss = cp.empty(batch, d_logits.dtype)
    stats = cp.empty(batch + (core.ROW_STATS,), _stats_dtype(dtype))
    grad = cp.empty_like(d_logits)
    common = dict(alpha=_alpha(alpha), dtype=_dtype_arg(dtype), **kwargs)
    forward = core.dense_softmax_forward_cuda if dense else core.sparse_softmax_forward_cuda
    backward = core.dense_softmax_backward_cuda if dense else core.sparse_softmax_backward_cuda
    forward(d_labels, d_logits, loss, stats, **common)
    backward(d_labels, d_logits, stats, _to_device(upstream, dtype), grad, **common)
    return _from_device(loss, dtype), _from_device(grad, dtype)


def sigmoid_on_gpu(labels, logits, upstream, dtype, alpha=None, **kwargs):
    d_logits = _to_device(logits, dtype)
    d_labels = _to_device(labels, dtype)
    loss = cp.empty_like(d_logits)
    grad = cp.empty_like(d_logits)
    common = dict(alpha=_alpha(alpha), dtype=_dtype_arg(dtype), **kwargs)
    core.sigmoid_forward_cuda(d_labels, d_logits, loss, **common)
    core.sigmoid_backward_cuda(d_labels, d_logits, _to_device(upstream, dtype), grad, **common)
    return _from_device(loss, dtype), _from_device(grad, dtype)


def _assert_close(actual, expected, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    # gradients are compared relative to the row's scale (a class's gradient can cancel to ~0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * max(1.0, np.abs(expected).max()), err_msg=what)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("epsilon", [0.0, 1e-3], ids=["exact", "clip"])
def test_sparse_softmax_matches_oracle(epsilon, gamma, dtype):
    rng = np.random.default_rng(5)
    for shape in SHAPES:
        logits = _rounded(rng.standard_normal(shape) * 3.0, dtype)
        labels = rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
        upstream = _rounded(rng.uniform(0.5, 1.5, size=shape[:-1]), dtype)
        for alpha in (None, 0.25, rng.uniform(0.1, 1.0, shape[-1])):
            for smoothing in (0.0, 0.1):
                kwargs = dict(alpha=alpha, gamma=gamma, epsilon=epsilon, label_smoothing=smoothing)
                loss, grad = softmax_on_gpu(labels, logits, upstream, dtype, **kwargs)
                want_loss, want_grad = numpy_oracle.sparse_softmax(labels, logits, upstream=upstream, **kwargs)
                what = f"{shape} {kwargs}"
                _assert_close(loss, want_loss, dtype, what)
                _assert_close(grad, want_grad, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_dense_softmax_matches_oracle(gamma, dtype):
    rng = np.random.default_rng(6)
    for shape in SHAPES:
        logits = _rounded(rng.standard_normal(shape) * 3.0, dtype)
        soft = _rounded(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]), dtype)
        upstream = _rounded(rng.uniform(0.5, 1.5, size=shape[:-1]), dtype)
        for alpha in (None, rng.uniform(0.1, 1.0, shape[-1])):
            for epsilon, smoothing in ((0.0, 0.0), (1e-3, 0.1)):
                kwargs = dict(alpha=alpha, gamma=gamma, epsilon=epsilon, label_smoothing=smoothing)
                loss, grad = softmax_on_gpu(soft, logits, upstream, dtype, dense=True, **kwargs)
                want_loss, want_grad = numpy_oracle.dense_softmax(soft, logits, upstream=upstream, **kwargs)
                _assert_close(loss, want_loss, dtype, f"{shape} {kwargs}")
                _assert_close(grad, want_grad, dtype, f"{shape} {kwargs}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_matches_oracle(gamma, dtype):
    rng = np.random.default_rng(8)
    for shape in [(1,), (7, 13), (1000, 3), (2, 3, 32000)]:
        logits = _rounded(rng.standard_normal(shape) * 4.0, dtype)
        upstream = _rounded(rng.uniform(0.5, 1.5, size=shape), dtype)
        for labels in ((rng.uniform(size=shape) < 0.3).astype(np.float64), _rounded(rng.uniform(size=shape), dtype)):
            for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
                for smoothing in (0.0, 0.1):
                    kwargs = dict(alpha=alpha, gamma=gamma, label_smoothing=smoothing)
                    loss, grad = sigmoid_on_gpu(labels, logits, upstream, dtype, **kwargs)
                    want_loss, want_grad = numpy_oracle.sigmoid(labels, logits, upstream=upstream, **kwargs)
                    _assert_close(loss, want_loss, dtype, f"{shape} {kwargs}")
                    _assert_close(grad, want_grad, dtype, f"{shape} {kwargs}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_broadcast_upstream_matches_oracle(dtype):
    """loss_grad as one value for all elements ([]) or one per row ([..., 1]): read, not materialised."""
    rng = np.random.default_rng(18)
    for shape in [(7, 13), (1000, 3), (2, 3, 4097)]:
        logits = _rounded(rng.standard_normal(shape) * 4.0, dtype)
        labels = (rng.uniform(size=shape) < 0.3).astype(np.float64)
        for upstream in (np.array(0.75), _rounded(rng.uniform(0.5, 1.5, size=shape[:-1] + (1,)), dtype)):
            for alpha in (0.25, rng.uniform(0.1, 0.9, shape[-1])):
                _, grad = sigmoid_on_gpu(labels, logits, upstream, dtype, alpha=alpha, gamma=2.0)
                _, want = numpy_oracle.sigmoid(labels, logits, upstream=upstream, alpha=alpha, gamma=2.0)
                _assert_close(grad, want, dtype, f"{shape} upstream {upstream.shape}")
    with pytest.raises(ValueError, match="one value per row"):
        sigmoid_on_gpu(labels, logits, np.ones(shape[:-1]), dtype)


@pytest.mark.parametrize("shape", [(16, 10), (6, 1000), (2, 32000)], ids=str)
def test_float64_gpu_equals_cpu_kernels(shape):
    """Same math header on both sides: float64 results agree to rounding."""
    rng = np.random.default_rng(9)
    logits = rng.standard_normal(shape) * 5.0
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    upstream = rng.uniform(0.5, 1.5, size=shape[:-1])
    kwargs = dict(alpha=0.25, gamma=2.0, label_smoothing=0.1)
    cpu_loss, stats = core.sparse_softmax_forward(labels, logits, **kwargs)
    cpu_grad = core.sparse_softmax_backward(labels, logits, stats, upstream, **kwargs)
    loss, grad = softmax_on_gpu(labels, logits, upstream, "float64", **kwargs)
    np.testing.assert_allclose(loss, cpu_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, cpu_grad, rtol=1e-12, atol=1e-15)


def test_extreme_logits_stay_finite_and_exact():
    """±1e4 logits: the float32 GPU kernels agree with the float64 CPU kernels (tested against a
    50-digit oracle in the CPU suite), also where the plain formula gives NaN."""
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [30.0, 0.0, -30.0]])
    labels = np.array([0, 0, 2])
    upstream = np.ones(3)
    for gamma in (0.0, 0.5, 2.0):
        cpu_loss, stats = core.sparse_softmax_forward(labels, logits, gamma=gamma)
        cpu_grad = core.sparse_softmax_backward(labels, logits, stats, upstream, gamma=gamma)
        loss, grad = softmax_on_gpu(labels, logits, upstream, "float32", gamma=gamma)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        np.testing.assert_allclose(loss, cpu_loss, rtol=1e-6)
        np.testing.assert_allclose(grad, cpu_grad, rtol=1e-5, atol=1e-7)


def test_ignored_and_out_of_range_labels():
    rng = np.random.default_rng(10)
    logits = rng.standard_normal((6, 7))
    labels = np.array([0, -1, 3, 7, 6, -5])  # -1 ignored; 7 and -5 outside [0, 7)
    loss, grad = softmax_on_gpu(labels, logits, np.ones(6), "float32", ignore_class=-1)
    assert loss[1] == 0 and np.all(grad[1] == 0)
    assert np.isnan(loss[3]) and np.all(np.isnan(grad[3]))
    assert np.isnan(loss[5]) and np.all(np.isnan(grad[5]))
    valid = [0, 2, 4]
    want_loss, want_grad = numpy_oracle.sparse_softmax(labels[valid], logits[valid], upstream=np.ones(3))
    np.testing.assert_allclose(loss[valid], want_loss, rtol=2e-5)
    np.testing.assert_allclose(grad[valid], want_grad, rtol=2e-5, atol=2e-6)


def test_int32_labels_and_empty_batches():
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((5, 9))
    labels = rng.integers(0, 9, size=5)
    loss32, grad32 = softmax_on_gpu(labels.astype(np.int32), logits, np.ones(5), "float32")
    loss64, grad64 = softmax_on_gpu(labels.astype(np.int64), logits, np.ones(5), "float32")
    np.testing.assert_array_equal(loss32, loss64)
    np.testing.assert_array_equal(grad32, grad64)
    loss, grad = softmax_on_gpu(np.zeros(0, np.int64), np.zeros((0, 9)), np.zeros(0), "float32")
    assert loss.shape == (0,) and grad.shape == (0, 9)


def test_explicit_stream_gives_the_same_result():
    rng = np.random.default_rng(13)
    logits = cp.asarray(rng.standard_normal((300, 50)).astype(np.float32))
    labels = cp.asarray(rng.integers(0, 50, size=300))
    outputs = []
    for stream in (None, cp.cuda.Stream(non_blocking=True)):
        loss = cp.empty(300, cp.float32)
        stats = cp.empty((300, 4), cp.float32)
        core.sparse_softmax_forward_cuda(labels, logits, loss, stats, stream=stream)
        (stream or cp.cuda.Stream.null).synchronize()
        outputs.append(cp.asnumpy(loss))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_bad_arguments_raise_named_errors():
    logits = cp.zeros((4, 3), cp.float32)
    labels = cp.zeros(4, cp.int64)
    loss = cp.empty(4, cp.float32)
    stats = cp.empty((4, 4), cp.float32)
    with pytest.raises(ValueError, match="gamma"):
        core.sparse_softmax_forward_cuda(labels, logits, loss, stats, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        core.sparse_softmax_forward_cuda(labels, logits, loss, stats, alpha=cp.ones(2))
    with pytest.raises(ValueError, match="shape"):
        core.sparse_softmax_forward_cuda(labels, logits, cp.empty(3, cp.float32), stats)
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        core.sparse_softmax_forward_cuda(np.zeros(4, np.int64), logits, loss, stats)


def _free_gpu_bytes():
    return cp.cuda.Device().mem_info[0]


@pytest.mark.skipif("FOCAL_OP_SKIP_HUGE" in os.environ, reason="FOCAL_OP_SKIP_HUGE set")
def test_more_than_2_31_elements():
    """64-bit indexing: float16 [65538, 32768] (2^31 + 65536 elements); the last rows are checked."""
    rows, classes = 65538, 32768
    if _free_gpu_bytes() < 3 * rows * classes * 2 + (1 << 30):
        pytest.skip("not enough GPU memory for a > 2^31-element case")
    rng = np.random.default_rng(14)
    tail = rng.standard_normal((2, classes)).astype(np.float16)
    logits = cp.zeros((rows, classes), cp.float16)
    logits[-2:] = cp.asarray(tail)
    labels = cp.asarray(rng.integers(0, classes, size=rows))
    loss = cp.empty(rows, cp.float16)
    stats = cp.empty((rows, 4), cp.float32)
    core.sparse_softmax_forward_cuda(labels, logits, loss, stats)
    grad = cp.empty_like(logits)
    core.sparse_softmax_backward_cuda(labels, logits, stats, cp.ones(rows, cp.float16), grad)
    tail_labels = cp.asnumpy(labels[-2:])
    want_loss, want_grad = numpy_oracle.sparse_softmax(tail_labels, tail.astype(np.float64), upstream=np.ones(2))
    np.testing.assert_allclose(cp.asnumpy(loss[-2:]).astype(np.float64), want_loss, rtol=2e-3)
    np.testing.assert_allclose(cp.asnumpy(grad[-2:]).astype(np.float64), want_grad, rtol=2e-3, atol=1e-7)
    uniform = np.log(classes)  # the zero rows: p = 1/C for every class
    np.testing.assert_allclose(float(loss[0]), (1 - 1 / classes) ** 2 * uniform, rtol=2e-3)
    del grad, logits

    # sigmoid over the same number of elements
    x = cp.zeros(rows * classes, cp.float16)
    x[-3:] = cp.asarray(np.array([-2.0, 0.5, 3.0], np.float16))
    y = cp.zeros_like(x)
    y[-3:] = 1
    out = cp.empty_like(x)
    core.sigmoid_forward_cuda(y, x, out)
    want, _ = numpy_oracle.sigmoid(np.ones(3), np.array([-2.0, 0.5, 3.0]))
    np.testing.assert_allclose(cp.asnumpy(out[-3:]).astype(np.float64), want, rtol=2e-3)


SANITIZER_CASE = textwrap.dedent(
    """
    import cupy as cp, numpy as np
    from focal_op import _focal_core as core
    rng = np.random.default_rng(0)
    for rows, classes in [(37, 3), (37, 10), (19, 100), (5, 1000), (3, 5000)]:
        logits = cp.asarray(rng.standard_normal((rows, classes)).astype(np.float32))
        labels = cp.asarray(rng.integers(0, classes, size=rows))
        dense = cp.asarray(rng.dirichlet(np.ones(classes), size=rows).astype(np.float32))
        alpha = cp.asarray(rng.uniform(0.1, 1.0, classes))
        loss = cp.empty(rows, cp.float32); stats = cp.empty((rows, 4), cp.float32)
        grad = cp.empty_like(logits); upstream = cp.ones(rows, cp.float32)
        for smoothing in (0.0, 0.1):
            core.sparse_softmax_forward_cuda(labels, logits, loss, stats, alpha=alpha, label_smoothing=smoothing)
            core.sparse_softmax_backward_cuda(labels, logits, stats, upstream, grad, alpha=alpha,
                                              label_smoothing=smoothing)
        core.dense_softmax_forward_cuda(dense, logits, loss, stats, alpha=alpha)
        core.dense_softmax_backward_cuda(dense, logits, stats, upstream, grad, alpha=alpha)
        core.sigmoid_forward_cuda(dense, logits, grad, alpha=alpha)
        core.sigmoid_backward_cuda(dense, logits, cp.ones_like(logits), grad, alpha=alpha)
    cp.cuda.Device().synchronize()
    """
)


@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="compute-sanitizer not on PATH")
@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
def test_compute_sanitizer_clean(tool):
    result = subprocess.run(
        ["compute-sanitizer", "--tool", tool, "--error-exitcode", "9", sys.executable, "-c", SANITIZER_CASE],
        capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "ERROR SUMMARY: 0 errors" in output or "RACECHECK SUMMARY: 0 hazards" in output, output[-4000:]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_row_sums_match_oracle(dtype):
    """sum_over_classes on the GPU: a group of threads per row (as for softmax rows) sums the loss."""
    rng = np.random.default_rng(19)
    for shape in [(37, 10), (100, 100), (3, 5000), (2, 3, 40000), (4, 0)]:
        logits = _rounded(rng.standard_normal(shape) * 4.0, dtype)
        labels = _rounded(rng.uniform(size=shape), dtype)
        for alpha in (None, 0.25, rng.uniform(0.1, 0.9, shape[-1])):
            kwargs = dict(alpha=alpha, gamma=2.0, label_smoothing=0.1)
            want, _ = numpy_oracle.sigmoid(labels, logits, upstream=np.ones(shape), **kwargs)
            d_logits = _to_device(logits, dtype)
            sums = cp.empty(shape[:-1], dtype=d_logits.dtype)
            core.sigmoid_forward_cuda(_to_device(labels, dtype), d_logits, sums, sum_over_classes=True,
                                      alpha=_alpha(alpha), gamma=2.0, label_smoothing=0.1, dtype=_dtype_arg(dtype))
            _assert_close(_from_device(sums, dtype), want.sum(axis=-1), dtype, f"{shape} alpha={alpha}")
