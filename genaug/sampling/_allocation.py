"""Confusion-directed allocation: more synthetic draws for the classes a model gets wrong.

Filling every minority class to the same synthetic share spends images where the classifier is
already right (on long-tailed Fashion-MNIST synthetic images raised coat recall and cut shirt
recall). After a warm-up, the per-class recall on held-out real images says where the model
errs; each class's synthetic cap is scaled by its error relative to the mean error of the
classes that receive synthetic images, so that the average cap stays the recipe's cap:

    cap_c = clip(cap * e_c / mean(e), 0, 1),   e_c = 1 - (correct_c + 1) / (n_c + 2)

The recall is smoothed with a uniform Beta(1, 1) prior because validation splits of rare
classes are tiny (2 of 20 images): a class with no validation image counts as half right, a
class with 0 of 2 right as 0.25 right, not 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from genaug.exceptions import ConfigError


def check_cap(cap):
    """Validate ``synthetic_cap``: a share in [0, 1], or a dict of per-class shares."""
    if isinstance(cap, Mapping):
        checked = {}
        for name, share in cap.items():
            checked[str(name)] = check_cap(share)
        return checked
    if isinstance(cap, bool) or not isinstance(cap, (int, float, np.integer, np.floating)):
        raise ConfigError(f"synthetic_cap must be a number in [0, 1] or a dict of them, "
                          f"got {cap!r}")
    if not 0.0 <= float(cap) <= 1.0:
        raise ConfigError(f"synthetic_cap must be in [0, 1], got {cap}")
    return float(cap)


def class_caps(cap, class_names, *, default: float) -> np.ndarray:
    """Per class, the synthetic cap: ``cap`` for every class, or, for a dict, its share for
    the classes it names and ``default`` for the others."""
    cap = check_cap(cap)
    if not isinstance(cap, dict):
        return np.full(len(class_names), cap)
    unknown = sorted(set(cap) - set(class_names))
    if unknown:
        raise ConfigError(f"synthetic_cap names classes not in the dataset: "
                          f"{', '.join(unknown)}")
    return np.array([cap.get(name, default) for name in class_names], dtype=np.float64)


@dataclass(frozen=True)
class ConfusionAllocation:
    """Per-class synthetic caps from a confusion matrix (:func:`allocate_by_confusion`).

    Attributes
    ----------
    class_names : tuple of str
    caps : ndarray
        The new cap of every class (the recipe's cap for classes that get no synthetic
        images: they never use it).
    recall : ndarray
        Smoothed recall on the held-out images, per class.
    images : ndarray
        Held-out images per class the recall was measured on.
    eligible : ndarray of bool
        Classes that receive synthetic images (their mean error is the reference).
    base_cap : float
        The recipe's cap the per-class caps were scaled from.
    """

    class_names: tuple
    caps: np.ndarray
    recall: np.ndarray
    images: np.ndarray
    eligible: np.ndarray
    base_cap: float

    def as_cap(self) -> dict:
        """The caps as ``synthetic_cap`` takes them (a dict of per-class shares)."""
        return {name: float(cap) for name, cap in zip(self.class_names, self.caps)}

    def to_dict(self) -> dict:
        return {
            "rule": "confusion",
            "base_cap": self.base_cap,
            "per_class": {
                name: {"validation_images": int(n), "recall": round(float(r), 4),
                       "receives_synthetic": bool(e), "synthetic_cap": round(float(c), 4)}
                for name, n, r, e, c in zip(self.class_names, self.images, self.recall,
                                            self.eligible, self.caps)},
        }


def allocate_by_confusion(confusion, *, class_names, cap: float, eligible) -> ConfusionAllocation:
    """Scale ``cap`` per class by the class's error in ``confusion`` (rows: true class).

    Parameters
    ----------
    confusion : array-like of shape (k, k)
        Counts of held-out real images by true (row) and predicted (column) class.
    class_names : sequence of str
    cap : float
        The recipe's cap (``synthetic_cap``); the eligible classes' caps average to it
        (before clipping to 1).
    eligible : array-like of bool
        Classes that receive synthetic images.

    Returns
    -------
    ConfusionAllocation
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    eligible = np.asarray(eligible, dtype=bool)
    k = len(class_names)
    if confusion.shape != (k, k) or len(eligible) != k:
        raise ConfigError(f"a confusion matrix of {k} classes is {k}x{k}, got "
                          f"{confusion.shape}")
    cap = check_cap(cap)
    images = confusion.sum(axis=1)
    recall = (np.diag(confusion) + 1.0) / (images + 2.0)
    error = 1.0 - recall
    caps = np.full(k, cap)
    if eligible.any():
        mean_error = error[eligible].mean()
        caps[eligible] = np.clip(cap * error[eligible] / mean_error, 0.0, 1.0)
    return ConfusionAllocation(tuple(class_names), caps, recall, images.astype(np.int64),
                               eligible, cap)
