"""A fixed set of kernel calls whose outputs' SHA-256 digests are kept, per CPU instruction set,
in tests/data/bitwise_<isa>.json: a change of the kernels' code that is meant to keep their results
(a refactoring, a move between files) must keep every bit. Regenerate only for an intended
change of results: `FOCAL_OP_CPU_ISA=<isa> python tests/bitwise_cases.py` (once per ISA)."""

import hashlib
import json
import os
import sys

import numpy as np

SHAPES = [(37, 3), (37, 10), (37, 21), (37, 33), (9, 100), (3, 1000), (2, 3, 17)]


def outputs(core):
    """Every launcher's outputs (sparse, dense, sigmoid; forward and backward) on fixed inputs."""
    rng = np.random.default_rng(2024)
    out = {}
    for shape in SHAPES:
        classes = shape[-1]
        for dtype in (np.float32, np.float64, np.float16):
            key = f"{'x'.join(map(str, shape))}_{np.dtype(dtype).name}"
            logits = (rng.standard_normal(shape) * 4).astype(dtype)
            labels = rng.integers(0, classes, shape[:-1])
            labels.reshape(-1)[::7] = -1
            one_hot = np.eye(classes, dtype=dtype)[np.maximum(labels, 0)]
            soft = rng.dirichlet(np.ones(classes), shape[:-1]).astype(dtype)
            upstream = rng.uniform(0.5, 1.5, shape[:-1]).astype(dtype)
            for name, kwargs in (("g2", dict(gamma=2.0)), ("g0", dict(gamma=0.0)), ("g1", dict(gamma=1.0, alpha=0.5)),
                                 ("g05a", dict(gamma=0.5, alpha=rng.uniform(0.1, 1.0, classes))),
                                 ("clip", dict(gamma=1.5, epsilon=1e-3, alpha=0.25)),
                                 ("smooth", dict(gamma=2.0, label_smoothing=0.1))):
                loss, stats = core.sparse_softmax_forward(labels, logits, ignore_class=-1, **kwargs)
                grad = core.sparse_softmax_backward(labels, logits, stats, upstream, ignore_class=-1, **kwargs)
                out[f"sparse_{name}_{key}"] = np.concatenate([loss.ravel(), stats.ravel(), grad.ravel()]
                                                             ).astype(np.float64)
                for labels_name, y in (("onehot", one_hot), ("soft", soft)):
                    loss, stats = core.dense_softmax_forward(y, logits, **kwargs)
                    grad = core.dense_softmax_backward(y, logits, stats, upstream, **kwargs)
                    out[f"dense_{labels_name}_{name}_{key}"] = np.concatenate(
                        [loss.ravel(), stats.ravel(), grad.ravel()]).astype(np.float64)
            y = (soft > 1.0 / classes).astype(dtype)
            for name, kwargs in (("g2", dict(gamma=2.0)), ("g1", dict(gamma=1.0)), ("a", dict(gamma=0.5, alpha=0.25)),
                                 ("acol", dict(gamma=3.0, alpha=rng.uniform(0.1, 0.9, classes), label_smoothing=0.1))):
                parts = [core.sigmoid_forward(y, logits, **kwargs),
                         core.sigmoid_forward(y, logits, sum_over_classes=True, **kwargs),
                         core.sigmoid_backward(y, logits, (upstream[..., None] * np.ones_like(logits)), **kwargs),
                         core.sigmoid_backward(y, logits, upstream[..., None], **kwargs),
                         core.sigmoid_backward(y, logits, np.asarray(0.75, dtype), **kwargs)]
                out[f"sigmoid_{name}_{key}"] = np.concatenate([p.ravel() for p in parts]).astype(np.float64)
    return out


def digests(core) -> dict:
    return {key: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            for key, value in outputs(core).items()}


def data_path(isa: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", f"bitwise_{isa}.json")


if __name__ == "__main__":
    from focal_op import _focal_core as core

    path = data_path(core.cpu_isa())
    with open(path, "w") as f:
        json.dump(digests(core), f, indent=0, sort_keys=True)
    print("wrote", path, file=sys.stderr)
