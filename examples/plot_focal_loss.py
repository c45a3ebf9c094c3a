"""Draws the focal loss against the probability of the true class for γ in {0, 0.5, 1, 2, 5}
(Lin et al., Figure 1) by running focal_op's fused op. Needs matplotlib.

    python examples/plot_focal_loss.py [docs/focal_loss_vs_probability.png]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import focal_op  # noqa: E402


def main(path="docs/focal_loss_vs_probability.png"):
    p_true = np.linspace(1e-3, 1.0, 500)
    # two classes whose softmax gives exactly p_true for class 0
    logits = np.stack([np.log(p_true), np.log1p(-p_true)], axis=-1)
    labels = np.zeros(len(p_true), np.int64)
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
        loss = focal_op.sparse_softmax_focal_loss(labels, logits, gamma=gamma).numpy()
        ax.plot(p_true, loss, label=f"γ = {gamma:g}" + (" (cross-entropy)" if gamma == 0 else ""))
    ax.set_xlabel("probability of ground truth class")
    ax.set_ylabel("loss")
    ax.set_ylim(0, 5)
    ax.set_xlim(0, 1)
    ax.set_title("focal_op.sparse_softmax_focal_loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print("wrote", path)


if __name__ == "__main__":
    main(*sys.argv[1:])
