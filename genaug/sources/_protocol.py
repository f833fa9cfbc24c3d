"""What a loader reads images from: indexed pools (real, cache) and fresh streams (live)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
    """A fixed pool of labelled images that a plan indexes: :class:`RealSource` and
    :class:`CacheSource`.

    A structural protocol: anything with these members is a source.

    Attributes
    ----------
    class_names : tuple of str
    labels : ndarray of int
        Class of every item.
    paths : tuple of str or None
        File of every item (None for in-memory arrays).
    ids : tuple of str
        Stable id of every item (a real image's relative path, a synthetic record's id).
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    paths: tuple[str, ...] | None
    ids: tuple[str, ...]

    def __len__(self) -> int: ...

    def counts(self) -> np.ndarray:
        """Items per class, in ``class_names`` order."""
        ...

    def load(self, i: int, *, image_size, color_mode: str | None,
             interpolation: str = "bilinear") -> np.ndarray:
        """Item ``i`` as an (H, W, C) array."""
        ...


@runtime_checkable
class FreshSource(Protocol):
    """A stream of new synthetic images per class, made while training runs
    (:class:`genaug.live.LiveSource`). It has no fixed items, so a plan cannot index it: the
    loader asks it first for a synthetic slot and falls back to the planned cached image.
    """

    timeout: float
    error: str | None

    @property
    def live_classes(self) -> Sequence[str]:
        """Classes it can produce."""
        ...

    def take(self, label: int, *, deadline: float | None = None,
             block: bool = False) -> np.ndarray | None:
        """A fresh image of class ``label``, or None when none came before ``deadline``."""
        ...

    def set_need(self, synthetic_draws_per_class) -> None:
        """Synthetic draws per class in the coming epoch."""
        ...

    def record_fallback(self, kind: str) -> None:
        """Count a synthetic slot served by ``"cache"`` or ``"real"`` instead."""
        ...
