"""The confusion-matrix plot of a training run."""

from __future__ import annotations

import io

import numpy as np

from genaug.io import atomic_write_bytes


def plot_confusion_matrix(matrix, class_names, path, *, title: str = "") -> None:
    """Two labelled panels, counts and row-normalised (recall per true class), to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    k = len(class_names)
    side = max(4.0, 0.45 * k + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, data, label, fmt in ((axes[0], matrix, "count", "d"),
                                 (axes[1], normalised, "share of true class", ".2f")):
        image = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() or 1)
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
        if k <= 30:
            top = data.max() or 1
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center",
                            fontsize=8, color="white" if data[i, j] > top / 2 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
