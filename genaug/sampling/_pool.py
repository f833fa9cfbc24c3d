"""The pool cap: how many distinct synthetic images a class may train on over a whole run."""

from __future__ import annotations

import numpy as np

from genaug.exceptions import ConfigError
from genaug.sampling._plan import Stream, rng_for


def check_pool_cap(pool_cap):
    """Validate ``synthetic_pool_cap``: None or a float in (0, 1)."""
    if pool_cap is None:
        return None
    value = float(pool_cap)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"synthetic_pool_cap must be in (0, 1), got {pool_cap}")
    return value


def pool_limits(real_counts, pool_cap: float) -> np.ndarray:
    """Most synthetic images each class may use: ``floor(cap / (1 - cap) * n_real)``.

    Then at most ``cap`` of the class's training images (real + distinct synthetic) are
    synthetic. A class without real images has no limit (-1): it trains on synthetic images
    alone.

    Examples
    --------
    >>> pool_limits([75, 8, 0], 0.6).tolist()
    [112, 12, -1]
    """
    counts = np.asarray(real_counts, dtype=np.int64)
    # A small tolerance keeps exact ratios exact: 0.6 / 0.4 * 8 is 11.999... in floating point.
    limits = np.floor(pool_cap / (1.0 - pool_cap) * counts + 1e-9).astype(np.int64)
    return np.where(counts > 0, limits, -1)


def capped_pool(synthetic_labels, real_counts, pool_cap: float, *, seed: int) -> np.ndarray:
    """Indices of the synthetic images a run may use under ``pool_cap``, in pool order.

    A class with more synthetic images than :func:`pool_limits` allows keeps a seeded choice
    of them (the same seed keeps the same images); every other image is kept.
    """
    return quota_pool(synthetic_labels, pool_limits(real_counts, pool_cap), seed=seed)


def quota_pool(synthetic_labels, quotas, *, seed: int) -> np.ndarray:
    """Indices of the synthetic images kept when class ``c`` keeps at most ``quotas[c]``.

    A class with more images than its quota keeps a seeded choice of them (the same seed keeps
    the same images); a quota of -1 keeps the whole class. Returned in pool order.

    Examples
    --------
    >>> quota_pool([0, 0, 1, 1, 1], [-1, 0], seed=0).tolist()
    [0, 1]
    """
    labels = np.asarray(synthetic_labels, dtype=np.int64)
    keep = np.ones(len(labels), dtype=bool)
    for c, quota in enumerate(np.asarray(quotas, dtype=np.int64)):
        members = np.flatnonzero(labels == c)
        if 0 <= quota < len(members):
            keep[members] = False
            kept = rng_for(seed, Stream.POOL_QUOTA, c).choice(members, size=int(quota),
                                                              replace=False)
            keep[kept] = True
    return np.flatnonzero(keep)
