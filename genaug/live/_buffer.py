"""A bounded per-class buffer of fresh images, each usable a bounded number of times."""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np


class FreshBuffer:
    """Thread-safe per-class queues of images with a use counter.

    ``take`` hands out the least-used image of a class and retires it once it has been used
    ``max_reuse`` times; ``put`` blocks nobody: when a class is full its oldest image is
    dropped, so the buffer always holds the freshest ``capacity`` images per class.
    """

    def __init__(self, num_classes: int, *, capacity: int, max_reuse: int):
        if capacity < 1 or max_reuse < 1:
            raise ValueError("capacity and max_reuse must be at least 1")
        self.capacity = int(capacity)
        self.max_reuse = int(max_reuse)
        self._queues = [deque() for _ in range(num_classes)]
        self._condition = threading.Condition()
        self.uses = Counter()  # how many times handed-out images had been used (histogram)
        self.dropped_unused = 0

    def put(self, label: int, image: np.ndarray) -> None:
        with self._condition:
            queue = self._queues[label]
            if len(queue) >= self.capacity:
                _, uses = queue.popleft()
                self.dropped_unused += uses == 0
            queue.append([image, 0])
            self._condition.notify_all()

    def take(self, label: int, timeout: float = 0.0) -> np.ndarray | None:
        """The least-used image of class ``label``, waiting at most ``timeout`` seconds."""
        with self._condition:
            queue = self._queues[label]
            if not queue and timeout > 0:
                self._condition.wait_for(lambda: bool(queue), timeout=timeout)
            if not queue:
                return None
            entry = min(queue, key=lambda item: item[1])
            entry[1] += 1
            self.uses[entry[1]] += 1
            if entry[1] >= self.max_reuse:
                queue.remove(entry)
            self._condition.notify_all()  # wakes an idle producer
            return entry[0]

    def remaining_uses(self) -> np.ndarray:
        """Per class, how many more draws the buffered images can serve."""
        with self._condition:
            return np.array([sum(self.max_reuse - uses for _, uses in queue)
                             for queue in self._queues])

    def sizes(self) -> list[int]:
        with self._condition:
            return [len(queue) for queue in self._queues]

    def wait_for_room(self, timeout: float) -> None:
        """Sleep until a take happens or ``timeout`` passes (the producer's idle wait)."""
        with self._condition:
            self._condition.wait(timeout=timeout)
