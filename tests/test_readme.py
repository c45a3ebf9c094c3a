"""The README's Python examples run as written (in order, in one namespace)."""

import pathlib
import re

import keras
import numpy as np
import tensorflow as tf

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _gpu_available():
    from focal_op import _focal_core as core

    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return core.WITH_CUDA and core.cuda_device_count() > 0


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    # names the snippets take from the reader's own program
    namespace = {
        "model": keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)]),
        "alpha": np.linspace(0.5, 1.5, 10),
        "soft_targets": tf.nn.softmax(tf.random.normal([32, 10])),
        "counts": [500, 50, 5],
    }
    for block in blocks:
        if block.startswith("# needs a CUDA GPU") and not _gpu_available():
            continue
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own examples
    assert namespace["loss"].shape == (32, 5)
