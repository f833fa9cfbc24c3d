"""Synthetic images from a cache, with the leakage guard applied."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from genaug.data import load_image
from genaug.synthetic import SyntheticCache


class CacheSource:
    """The usable synthetic images of a cache for one training run.

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
        excluded = {str(s) for s in exclude_source_ids}
        position = {name: i for i, name in enumerate(self.class_names)}
        kept, self.excluded_leakage = [], 0
        for record in cache.records:
            if record.get("source_id") is not None and str(record["source_id"]) in excluded:
                self.excluded_leakage += 1
            elif record["class"] in position:
                kept.append(record)
        self.records = kept
        self.labels = np.asarray([position[r["class"]] for r in kept], dtype=np.int64)
        self.paths = tuple(cache.path(r) for r in kept)
        self.modes = None
        self.formats = None  # written by genaug as PNG (L, RGB or RGBA)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))

    def load(self, i: int, *, image_size, color_mode: str, interpolation: str = "bilinear"):
        return load_image(self.paths[i], image_size=image_size, color_mode=color_mode,
                          interpolation=interpolation)
