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


class FocalOpXlaError(Exception):
    """This build of focal_op has no XLA lowering, and a function is being compiled by XLA.
    (Exception's own constructor, so tf.function's AutoGraph passes it on with its type.)"""


def require_xla_lowering_if_compiling() -> None:
    """Raises FocalOpXlaError while tracing a function for XLA (jit_compile=True) when this
    build has no XLA lowering of the ops (built with FOCAL_OP_WITH_XLA=OFF, or against a
    TensorFlow without the tf2xla headers): XLA could not compile the ops, and nothing else
    stands in for them."""
    from focal_op import _build_info

    if getattr(_build_info, "WITH_XLA", False) or not in_xla_context():
        return
    raise FocalOpXlaError(
        "this focal_op build has no XLA lowering (FOCAL_OP_WITH_XLA was off or TensorFlow lacked the tf2xla "
        "headers; see docs/design.md), so its ops cannot run inside jit_compile=True. Compile without XLA "
        "(e.g. Keras model.compile(..., jit_compile=False)) or rebuild focal_op with the lowering."
    )


def in_xla_context() -> bool:
    """True while tracing a function that XLA will compile (jit_compile=True). Uses a private
    TensorFlow helper (checked in tests/test_ecosystem.py for the versions it holds for)."""
    from tensorflow.python.framework import ops as framework_ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(framework_ops.get_default_graph())


class FocalOpBuildWarning(UserWarning):
    """Warned at import when the op library cannot be used with the installed TensorFlow."""


def load_at_import() -> None:
    """Loads the op library if it matches the installed TensorFlow; otherwise warns once."""
    try:
        op_library()
    except FocalOpBuildError as err:
        warnings.warn(str(err), FocalOpBuildWarning, stacklevel=3)
