"""The held-out scores of a classifier, in the layout ``metrics.json`` and every comparison read."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


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


def per_class_table(metrics: dict) -> str:
    """The per-class table printed at the end of a run."""
    names = metrics["class_names"]
    width = max(12, *(len(n) for n in names))
    counts = metrics.get("train_counts", {})
    lines = [f"{'class':<{width}} {'train':>6} {'support':>7} {'precision':>9} {'recall':>7} "
             f"{'f1':>6}"]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}} {counts.get(name, 0):>6} {row['support']:>7} "
                     f"{row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f}")
    lines.append(f"accuracy {metrics['accuracy']:.3f}  balanced accuracy "
                 f"{metrics['balanced_accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
                 f"kappa {metrics['cohen_kappa']:.3f}")
    return "\n".join(lines)
