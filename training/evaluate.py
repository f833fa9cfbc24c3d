"""Held-out evaluation: metrics for imbalanced classification and the confusion-matrix plot."""

from __future__ import annotations

import io

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from genaug.io import atomic_write_bytes


def classification_metrics(y_true, y_pred, class_names) -> dict:
    """Accuracy, balanced accuracy, macro/weighted F1, Cohen's kappa, per-class scores and the
    confusion matrix (rows: true class, columns: predicted), over all ``class_names``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    present = support > 0
    # Balanced accuracy is the mean recall of the classes the test set holds (as sklearn's
    # balanced_accuracy_score, which also warns about predicted classes absent from the test
    # set: silencing that would silence every thread's warnings for the while).
    balanced = float(recall[present].mean()) if present.any() else 0.0
    if len(np.union1d(y_true, y_pred)) <= 1:
        # Every true and predicted label is the same class: chance agreement is 1 and kappa is
        # 0/0. scikit-learn returns NaN, which is not valid JSON; the agreement is perfect.
        kappa = 1.0
    else:
        kappa = float(cohen_kappa_score(y_true, y_pred, labels=labels))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels[present], average="macro",
                                   zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                      zero_division=0)),
        "cohen_kappa": kappa,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f),
                   "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


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
