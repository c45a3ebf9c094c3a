"""Loading of focal_op's TensorFlow op library, guarded by a TensorFlow version check.

``import focal_op`` calls :func:`load_at_import`: when the installed TensorFlow is the one the
library was built against, the library is loaded (about 15 ms) so that graphs and SavedModels
containing focal_op ops can be loaded right after the import. Otherwise nothing native is
loaded: the import warns with one sentence saying what to rebuild, and the first use of an op
raises :class:`FocalOpBuildError` with that sentence.
"""

from __future__ import annotations

import functools
import os
import warnings

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
    try:
        return tf.load_op_library(path)
    except Exception as err:  # e.g. an undefined symbol from a TensorFlow built differently
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FocalOpBuildError(
            f"focal_op's op library could not be loaded into TensorFlow {tf.__version__} ({first_line}). "
            + _rebuild_hint()
        ) from err


class FocalOpBuildWarning(UserWarning):
    """Warned at import when the op library cannot be used with the installed TensorFlow."""


def load_at_import() -> None:
    """Loads the op library if it matches the installed TensorFlow; otherwise warns once."""
    try:
        op_library()
    except FocalOpBuildError as err:
        warnings.warn(str(err), FocalOpBuildWarning, stacklevel=3)
