"""Class weights for ``model.fit(class_weight=...)``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genaug.exceptions import DatasetError


def compute_class_weights(y, class_names: Sequence[str]) -> dict[int, float]:
    """scikit-learn's ``"balanced"`` weights, ``n_samples / (n_classes * count)``, per class index.

    Parameters
    ----------
    y : array-like
        Labels, as class indices or as class names.
    class_names : sequence of str
        All classes, in index order.

    Returns
    -------
    dict
        ``{class_index: weight}``, ready for ``model.fit(class_weight=...)``.

    Raises
    ------
    DatasetError
        If a class has no samples (its weight would be infinite).
    """
    class_names = list(class_names)
    y = np.asarray(y)
    if y.size and y.dtype.kind in "USO":
        position = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({str(v) for v in y} - set(position))
        if unknown:
            raise DatasetError(f"labels not in class_names: {', '.join(unknown)}")
        y = np.asarray([position[str(v)] for v in y])
    counts = np.bincount(y.astype(np.int64), minlength=len(class_names)) if y.size else \
        np.zeros(len(class_names), dtype=int)
    if len(counts) > len(class_names):
        raise DatasetError(
            f"label {len(counts) - 1} is out of range for {len(class_names)} classes")
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DatasetError(
            f"cannot compute class weights: no samples for class(es) {', '.join(empty)}"
        )
    # Imported here: scikit-learn costs most of a second to import, and every genaug process
    # (each command, live child and worker) loads this module whether it weights or not.
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.arange(len(class_names)), y=y)
    return {i: float(w) for i, w in enumerate(weights)}


def delivered_class_weights(delivered_counts, class_names: Sequence[str]) -> dict[int, float]:
    """Balanced weights for the class distribution a loader actually delivers per epoch.

    Used when balanced sampling and class weights are combined: weighting by the raw dataset
    counts would correct the imbalance a second time.
    """
    counts = np.asarray(delivered_counts, dtype=np.int64)
    return compute_class_weights(np.repeat(np.arange(len(counts)), counts), class_names)
