"""The fill threshold: which classes receive synthetic images, and how many, by their size.

DiffuLT (NeurIPS 2024) fills only the classes with fewer than ``N_t`` real images, each up to
``N_t`` images, instead of every class up to the largest. genaug's epochs draw a fixed number of
slots per class (the balance plan), so "filled up to ``N_t``" is applied to those draws: a class
with ``n < N_t`` real images draws synthetic images in at most the share ``(N_t - n) / N_t`` of
its slots, the share synthetic images would have in its training set filled to ``N_t``. A class
with ``n >= N_t`` receives none. The other classes' balance targets play no part.
"""

from __future__ import annotations

import numpy as np

from genaug.exceptions import ConfigError

#: Fill thresholds derived from the real training set: its mean or median images per class.
FILL_RULES = ("mean", "median")


def check_fill_to(fill_to):
    """Validate ``synthetic_fill_to``: None, a positive integer, ``"mean"`` or ``"median"``."""
    if fill_to is None or fill_to in FILL_RULES:
        return fill_to
    if isinstance(fill_to, str) and fill_to.strip().isdigit():
        fill_to = int(fill_to)
    if isinstance(fill_to, bool) or not isinstance(fill_to, (int, np.integer)) or fill_to < 1:
        raise ConfigError(f"synthetic_fill_to must be a positive integer, 'mean' or 'median', "
                          f"got {fill_to!r}")
    return int(fill_to)


def resolve_fill_to(fill_to, real_counts) -> int | None:
    """The threshold ``N_t`` in images: ``fill_to`` itself, or the mean / median real images
    per class over the classes that have real images (rounded, at least 1)."""
    fill_to = check_fill_to(fill_to)
    if fill_to is None or isinstance(fill_to, int):
        return fill_to
    counts = np.asarray(real_counts, dtype=np.float64)
    counts = counts[counts > 0]
    if not len(counts):
        return None
    value = counts.mean() if fill_to == "mean" else np.median(counts)
    return max(1, int(round(float(value))))


def fill_shares(real_counts, fill_to: int | None) -> np.ndarray:
    """Per class, the largest share of its draws that may be synthetic under ``fill_to``:
    ``max(0, (fill_to - n) / fill_to)`` (1 for every class without a threshold)."""
    counts = np.asarray(real_counts, dtype=np.float64)
    if fill_to is None:
        return np.ones(len(counts))
    return np.clip((fill_to - counts) / fill_to, 0.0, 1.0)
