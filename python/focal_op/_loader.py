"""Lazy loading of focal_op's TensorFlow op library, with a TensorFlow version check."""

from __future__ import annotations

import functools
import os

_LIBRARY_NAME = "_focal_op_tf.so"


class FocalOpBuildError(ImportError):
    """The compiled op library is missing or does not match the installed TensorFlow."""


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _rebuild_hint() -> str:
    return "Rebuild focal_op against it: `pip install --no-build-isolation --force-reinstall --no-deps .`"


@functools.lru_cache(maxsize=None)
def op_library():
    """Loads the op library on first use and returns its Python module of op wrappers."""
    import tensorflow as tf

    try:
        from focal_op import _build_info
    except ImportError as err:  # pragma: no cover - only in a source tree that was never built
        raise FocalOpBuildError(
            "focal_op's compiled ops are not built (no focal_op/_build_info.py). " + _rebuild_hint()
        ) from err
    if _build_info.TF_VERSION != tf.__version__:
        raise FocalOpBuildError(
            f"focal_op was built against TensorFlow {_build_info.TF_VERSION or '(none)'} but "
            f"TensorFlow {tf.__version__} is installed. " + _rebuild_hint()
        )
    path = os.path.join(_package_dir(), _LIBRARY_NAME)
    if not os.path.exists(path):
        raise FocalOpBuildError(f"focal_op's op library is missing: {path}. " + _rebuild_hint())
    return tf.load_op_library(path)
