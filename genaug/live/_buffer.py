"""A bounded per-class buffer of fresh images, each usable a bounded number of times."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np


class FreshBuffer:
    """Thread-safe per-class stores of images with a use counter.

    ``take`` hands out (a copy of) the least-used image of a class, oldest first among equals,
    and retires it once it has been used ``max_reuse`` times; ``put_batch`` blocks nobody:
    when a class is full its oldest images make room, so the buffer always holds the freshest
    ``capacity`` images per class. A class's images live in one preallocated array, so a
    batch goes in with one copy, without per-image Python work.
    """

    def __init__(self, num_classes: int, *, capacity: int, max_reuse: int):
        if capacity < 1 or max_reuse < 1:
            raise ValueError("capacity and max_reuse must be at least 1")
        self.capacity = int(capacity)
        self.max_reuse = int(max_reuse)
        self._images: list[np.ndarray | None] = [None] * num_classes
        self._uses = np.zeros((num_classes, self.capacity), np.int64)
        self._order = np.zeros((num_classes, self.capacity), np.int64)  # insertion number
        self._valid = np.zeros((num_classes, self.capacity), bool)
        self._inserted = 0
        self._condition = threading.Condition()
        self.uses = Counter()  # how many times handed-out images had been used (histogram)
        self.dropped_unused = 0

    def put(self, label: int, image: np.ndarray) -> None:
        self.put_batch(label, np.asarray(image)[None])

    def put_batch(self, label: int, images: np.ndarray) -> None:
        """Add a stack of images ``(N, ...)`` of class ``label``."""
        images = np.asarray(images)
        if not len(images):
            return
        with self._condition:
            if len(images) > self.capacity:  # only the freshest fit
                self.dropped_unused += len(images) - self.capacity
                images = images[-self.capacity:]
            store = self._images[label]
            if store is None or store.shape[1:] != images.shape[1:] or \
                    store.dtype != images.dtype:
                store = self._images[label] = np.empty((self.capacity, *images.shape[1:]),
                                                       images.dtype)
                self._valid[label] = False
            valid, order = self._valid[label], self._order[label]
            free = np.flatnonzero(~valid)
            if len(free) < len(images):
                taken = np.flatnonzero(valid)
                oldest = taken[np.argsort(order[taken], kind="stable")][:len(images) - len(free)]
                self.dropped_unused += int((self._uses[label, oldest] == 0).sum())
                free = np.concatenate([free, oldest])
            slots = free[:len(images)]
            store[slots] = images
            self._uses[label, slots] = 0
            order[slots] = np.arange(self._inserted, self._inserted + len(images))
            self._inserted += len(images)
            valid[slots] = True
            self._condition.notify_all()

    def take(self, label: int, timeout: float = 0.0) -> np.ndarray | None:
        """The least-used image of class ``label``, waiting at most ``timeout`` seconds."""
        with self._condition:
            valid = self._valid[label]
            if not valid.any() and timeout > 0:
                self._condition.wait_for(lambda: bool(valid.any()), timeout=timeout)
            slots = np.flatnonzero(valid)
            if not len(slots):
                return None
            uses = self._uses[label]
            slot = slots[np.lexsort((self._order[label, slots], uses[slots]))[0]]
            uses[slot] += 1
            self.uses[int(uses[slot])] += 1
            if uses[slot] >= self.max_reuse:
                valid[slot] = False
            self._condition.notify_all()  # wakes an idle producer
            return self._images[label][slot].copy()

    def remaining_uses(self) -> np.ndarray:
        """Per class, how many more draws the buffered images can serve."""
        with self._condition:
            return np.where(self._valid, self.max_reuse - self._uses, 0).sum(axis=1)

    def sizes(self) -> list[int]:
        with self._condition:
            return self._valid.sum(axis=1).tolist()

    def wait_for_room(self, timeout: float) -> None:
        """Sleep until a take happens or ``timeout`` passes (the producer's idle wait)."""
        with self._condition:
            self._condition.wait(timeout=timeout)
