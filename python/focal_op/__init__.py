"""focal_op: fused, NaN-safe focal loss ops for TensorFlow.

    import focal_op
    loss = focal_op.sparse_softmax_focal_loss(labels, logits, gamma=2.0)   # [N, C] logits, int labels
    loss = focal_op.softmax_focal_loss(one_hot, logits)                     # dense or soft labels
    loss = focal_op.sigmoid_focal_loss(targets, logits, alpha=0.25)         # binary / multi-label
    model.compile(loss=focal_op.losses.SparseCategoricalFocalLoss(from_logits=True))

Importing focal_op loads its TensorFlow op library after checking that the installed
TensorFlow is the one it was built against (otherwise it warns, and the ops raise
FocalOpBuildError). Without TensorFlow, the kernel core ``focal_op._focal_core``, the JAX
functions ``focal_op.jax`` and (on Keras's JAX backend) ``focal_op.losses`` work.
"""

from __future__ import annotations

try:
    from focal_op._build_info import VERSION as __version__
except ImportError:  # a source tree that was never built
    __version__ = "0+unbuilt"

try:
    import tensorflow as _tf  # noqa: F401
except ImportError:  # no TensorFlow: the kernel core, focal_op.jax, and the Keras losses on JAX
    try:
        from focal_op import losses
    except ImportError:  # no Keras, or Keras without a backend to load
        pass
else:
    from focal_op import losses, reference
    from focal_op._loader import FocalOpBuildError, FocalOpBuildWarning, FocalOpXlaError, load_at_import, op_library
    from focal_op.ops import sigmoid_focal_loss, softmax_focal_loss, sparse_softmax_focal_loss

    load_at_import()

from focal_op.weights import class_weights

__all__ = [
    "sparse_softmax_focal_loss",
    "softmax_focal_loss",
    "sigmoid_focal_loss",
    "class_weights",
    "losses",
    "reference",
    "op_library",
    "FocalOpBuildError",
    "FocalOpBuildWarning",
    "FocalOpXlaError",
]
