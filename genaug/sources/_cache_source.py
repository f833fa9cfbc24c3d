"""Synthetic images from a cache, with the leakage guard applied."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import numpy as np

from genaug.cache import SyntheticCache
from genaug.data import load_image


class CacheSource:
    """The usable synthetic images of a cache for one training run (a
    :class:`~genaug.sources.Source`).

    A record whose ``source_id`` names a validation or test image (it was derived from one) is
    left out, so nothing derived from held-out data reaches training; the number left out is
    :attr:`excluded_leakage`.

    Parameters
    ----------
    cache : SyntheticCache or path-like
    class_names : sequence of str
        The dataset's classes, in index order.
    exclude_source_ids : iterable of str
        Ids of held-out real images (relative paths, as in ``DatasetIndex.ids``); absolute
        paths are matched too.
    """

    def __init__(self, cache, *, class_names: Sequence[str],
                 exclude_source_ids: Iterable[str] = ()):
        if not isinstance(cache, SyntheticCache):
            cache = SyntheticCache(cache, class_names=class_names)
        self.cache = cache
        self.class_names = tuple(class_names)
        self.exclude_source_ids = frozenset(str(s) for s in exclude_source_ids)
        position = {name: i for i, name in enumerate(self.class_names)}
        kept, self.excluded_leakage = [], 0
        for record in cache.records:
            if record.get("source_id") is not None \
                    and str(record["source_id"]) in self.exclude_source_ids:
                self.excluded_leakage += 1
            elif record["class"] in position:
                kept.append(record)
        self.records = kept
        self.labels = np.asarray([position[r["class"]] for r in kept], dtype=np.int64)
        self.paths = tuple(cache.path(r) for r in kept)
        self.ids = tuple(str(r["id"]) for r in kept)
        self.modes = self.sizes = None
        self.formats = None  # written by genaug as PNG (L, RGB or RGBA)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def subset(self, indices) -> CacheSource:
        """The same source restricted to items ``indices`` (e.g. a capped pool)."""
        indices = np.asarray(indices, dtype=np.int64)
        part = copy.copy(self)
        part.records = [self.records[i] for i in indices]
        part.labels = self.labels[indices]
        part.paths = tuple(self.paths[i] for i in indices)
        part.ids = tuple(self.ids[i] for i in indices)
        return part

    def load(self, i: int, *, image_size, color_mode: str | None,
             interpolation: str = "bilinear"):
        return load_image(self.paths[i], image_size=image_size, color_mode=color_mode or "rgb",
                          interpolation=interpolation)


def as_cache_source(synthetic_cache, *, class_names: Sequence[str],
                    exclude_source_ids: Iterable[str] = ()) -> CacheSource | None:
    """The :class:`CacheSource` of a loader's ``synthetic_cache`` argument (a path, a
    :class:`SyntheticCache` or a source), with every id in ``exclude_source_ids`` left out.

    A given source is reused when it already fits (same classes, the ids already excluded),
    else rebuilt from its cache with the union of both exclusions.
    """
    if synthetic_cache is None:
        return None
    excluded = frozenset(str(s) for s in exclude_source_ids)
    if isinstance(synthetic_cache, CacheSource):
        if synthetic_cache.class_names == tuple(class_names) \
                and excluded <= synthetic_cache.exclude_source_ids:
            return synthetic_cache
        excluded |= synthetic_cache.exclude_source_ids
        synthetic_cache = synthetic_cache.cache
    return CacheSource(synthetic_cache, class_names=class_names, exclude_source_ids=excluded)
