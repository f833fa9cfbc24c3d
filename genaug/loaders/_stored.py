"""A loader's ``cache`` argument: the sources' images decoded once into an image store.

``cache="auto"`` (the default) keeps the decoded images in memory when they fit
:func:`~genaug.data.memory_budget`, else streams them from their files as ``cache=None`` does;
``"memory"`` always stores them in memory; a path keeps a memory-mapped store there.
"""

from __future__ import annotations

import os
import threading
from functools import partial

import numpy as np

from genaug.data import COLOR_MODES, ImageStore, build_store, decoded_bytes, memory_budget
from genaug.exceptions import ConfigError

CACHE_CHOICES = ("auto", "memory", "none")


def check_cache(cache):
    """``cache`` as the loaders take it: ``"auto"``, ``"memory"``, None or a path."""
    if cache is None or (isinstance(cache, str) and cache.lower() == "none"):
        return None
    if isinstance(cache, str) and cache in CACHE_CHOICES:
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    raise ConfigError(f"cache must be 'auto', 'memory', None or a store directory, "
                      f"got {cache!r}")


class StoredSource:
    """A :class:`~genaug.sources.Source` of files whose pixels come from an image store.

    It has the wrapped source's labels, paths, ids and classes; ``load`` returns the stored
    row, and raises for a file the store could not decode, so the slot reader replaces it
    exactly as it replaces a file that breaks while streaming. The store is built when the
    first image is asked for (a loader that is never iterated decodes nothing), once, however
    many threads ask.
    """

    def __init__(self, source, build, *, image_size, color_mode, interpolation):
        self.source = source
        self._build = build
        self._store: ImageStore | None = None
        self._lock = threading.Lock()
        self.format = (tuple(image_size), color_mode, interpolation)
        for name in ("labels", "paths", "ids", "class_names"):
            setattr(self, name, getattr(source, name))

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    store = self._build()
                    self.readable = store.readable
                    self._store = store
        return self._store

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return self.source.counts()

    def load(self, i: int, *, image_size, color_mode, interpolation: str = "bilinear"):
        if (tuple(image_size), color_mode, interpolation) != self.format:
            return self.source.load(i, image_size=image_size, color_mode=color_mode,
                                    interpolation=interpolation)
        store = self.store
        if not self.readable[i]:
            raise OSError(store.errors[i])
        return store.images[i]


def store_builder(paths, cache, *, image_size, color_mode, interpolation, decoder=None):
    """A function that builds the image store of ``paths`` as ``cache`` asks, or None where
    the images stream from their files (no cache, no files, a set over the memory budget with
    ``"auto"``). ``decoder``: a :class:`~genaug.data.StoreDecoder`, default Pillow's."""
    cache = check_cache(cache)
    if cache is None or paths is None or image_size is None or len(paths) == 0 \
            or color_mode not in COLOR_MODES:
        # An unknown colour mode streams: the decoder reports it, as it always has.
        return None
    dtype = np.uint8 if decoder is None else decoder.dtype
    if cache == "auto" and decoded_bytes(len(paths), image_size, color_mode,
                                         dtype) > memory_budget():
        return None
    return partial(build_store, paths, image_size=image_size, color_mode=color_mode,
                   interpolation=interpolation, decoder=decoder,
                   directory=None if cache in ("auto", "memory") else cache)


def stored(source, cache, *, image_size, color_mode, interpolation):
    """``source`` backed by an image store as ``cache`` asks, or ``source`` itself (no cache,
    in-memory arrays, a set over the memory budget with ``"auto"``)."""
    if source is None:
        return None
    build = store_builder(getattr(source, "paths", None), cache, image_size=image_size,
                          color_mode=color_mode, interpolation=interpolation)
    if build is None:
        return source
    return StoredSource(source, build, image_size=image_size, color_mode=color_mode,
                        interpolation=interpolation)
