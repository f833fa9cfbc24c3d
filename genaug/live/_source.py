"""``LiveSource``: fresh synthetic images from a generator running beside ``model.fit``."""

from __future__ import annotations

import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from genaug.live._buffer import FreshBuffer


class LiveSource:
    """A background producer feeding a per-class buffer, and the consumer side the loader uses.

    The producer thread asks the generator backend for batches of the class whose need is least
    covered (need: synthetic draws per epoch, set by the loader from the ramp schedule and the
    caps; cover: buffered uses left), passes each image through the quality gates, persists the
    accepted ones into the synthetic cache with full records (so the next run reuses them) and
    pushes them into the buffer. The consumer never waits longer than ``timeout``: when a class
    has nothing fresh, :meth:`take` returns None and the loader falls back to cached images of
    that class, then to real oversampling.

    Parameters
    ----------
    backend : GeneratorBackend
        ``generate_batch(requests)`` producing images with provenance.
    class_names : sequence of str
    image_size : (height, width)
    color_mode : str
    gates : object with ``check(image, class_name) -> (passed, quality)``, optional
    cache_writer : CacheWriter, optional
        Where accepted images are persisted; the producer closes it when it stops.
    capacity : int
        Buffered images per class.
    max_reuse : int
        Draws one fresh image may serve.
    timeout : float
        Longest wait of a training step for a fresh image, in seconds.
    batch_size : int, optional
        Images per generator call (default: the backend's).
    seed : int
        First seed of the live stream; class ``c``'s k-th request uses ``seed + k * K + c``.
    """

    def __init__(self, backend, *, class_names: Sequence[str], image_size, color_mode: str,
                 gates=None, cache_writer=None, capacity: int = 256, max_reuse: int = 4,
                 timeout: float = 0.05, batch_size: int | None = None, seed: int = 0):
        self.backend = backend
        self.class_names = tuple(class_names)
        self.image_size = tuple(image_size)
        self.color_mode = color_mode
        self.gates = gates
        self.writer = cache_writer
        self.timeout = float(timeout)
        self.batch_size = int(batch_size or getattr(backend, "batch_size", 8))
        self.seed = int(seed)
        k = len(self.class_names)
        self.buffer = FreshBuffer(k, capacity=capacity, max_reuse=max_reuse)
        self.producible = np.array([backend.can_generate(n) for n in self.class_names])
        self._need = np.zeros(k)
        self._requests = np.zeros(k, dtype=np.int64)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.stats = Counter()
        self._started = self._stopped = None

    @property
    def live_classes(self) -> list[str]:
        return [n for n, ok in zip(self.class_names, self.producible) if ok]

    # -- consumer side -------------------------------------------------------------------
    def set_need(self, synthetic_draws_per_class) -> None:
        """Synthetic draws per class in the coming epoch (the producer's priorities)."""
        with self._lock:
            self._need = np.asarray(synthetic_draws_per_class, dtype=float)

    def take(self, label: int, *, deadline: float | None = None,
             block: bool = False) -> np.ndarray | None:
        """A fresh image of class ``label``, or None once ``deadline`` (a
        ``time.perf_counter()`` value; default: ``timeout`` from now) has passed. The loader
        sets one deadline per batch, so a training step waits at most ``timeout`` in all.
        ``block``: wait until one arrives or the producer stops (for classes nothing else can
        supply)."""
        started = time.perf_counter()
        if block:
            image = None
            while image is None and self.running:
                image = self.buffer.take(label, timeout=0.5)
        else:
            if deadline is None:
                deadline = started + self.timeout
            wait = max(0.0, deadline - started) if self.running else 0.0
            image = self.buffer.take(label, timeout=wait)
        with self._lock:
            self.stats["consumer_wait_s"] += time.perf_counter() - started
            self.stats["consumed" if image is not None else "misses"] += 1
        return image

    def record_fallback(self, kind: str) -> None:
        """Count a slot served by the cache or by real oversampling instead."""
        with self._lock:
            self.stats[f"fallback_{kind}"] += 1

    # -- producer side -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LiveSource:
        if self._thread is None:
            self._started = time.perf_counter()
            self._thread = threading.Thread(target=self._produce, name="genaug-live",
                                            daemon=True)
            self._thread.start()
        return self

    def _pick_class(self) -> int | None:
        with self._lock:
            need = np.where(self.producible, self._need, 0.0)
        if not need.any():
            need = self.producible.astype(float)  # no plan yet: keep every class warm
        cover = self.buffer.remaining_uses() / np.maximum(need, 1e-9)
        sizes = np.asarray(self.buffer.sizes())
        candidates = np.flatnonzero((need > 0) & (sizes < self.buffer.capacity))
        if not len(candidates):
            return None
        return int(candidates[np.argmin(cover[candidates])])

    def _produce(self) -> None:
        from genaug.generation import GenerationRequest

        k = len(self.class_names)
        try:
            while not self._stop.is_set():
                label = self._pick_class()
                if label is None:
                    self.buffer.wait_for_room(timeout=0.1)
                    continue
                name = self.class_names[label]
                start = self._requests[label]
                self._requests[label] += self.batch_size
                requests = [GenerationRequest(class_name=name,
                                              seed=self.seed + int(start + i) * k + label)
                            for i in range(self.batch_size)]
                for generated in self.backend.generate_batch(requests):
                    if self._stop.is_set():
                        break
                    self._accept(label, generated)
        except Exception as error:  # the loader falls back; the run goes on
            self.error = f"{type(error).__name__}: {error}"
            warnings.warn(f"live generator stopped: {self.error}\n{traceback.format_exc()}",
                          stacklevel=1)
        finally:
            self._stopped = time.perf_counter()
            if self.writer is not None:
                self.writer.close()

    def _accept(self, label: int, generated) -> None:
        from genaug.generation import normalize_image

        name = self.class_names[label]
        image = normalize_image(generated.image, self.image_size, self.color_mode)
        quality, passed = {}, True
        if self.gates is not None:
            passed, quality = self.gates.check(image, name)
        with self._lock:
            self.stats["generated"] += 1
            self.stats["accepted" if passed else "rejected"] += 1
        if not passed:
            return
        if self.writer is not None:
            seed = generated.provenance.get("seed")
            self.writer.add(image, class_name=name, record_id=f"live-{name}-{seed}",
                            **{**generated.provenance, "quality": quality, "attempts": 1})
        self.buffer.put(label, image)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the producer and wait for it (it finishes the image in hand, then closes the
        cache writer, so nothing is left half-written)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                warnings.warn("live generator still finishing a batch; it stops by itself",
                              stacklevel=2)
        elif self.writer is not None:
            self.writer.close()
        close = getattr(self.backend, "close", None)
        if close is not None and not self.running:
            close()

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def statistics(self) -> dict:
        """Throughput, reuse, fallbacks and waits, for ``metrics.json`` under ``live``."""
        end = self._stopped or time.perf_counter()
        elapsed = max(end - (self._started or end), 1e-9)
        with self._lock:
            stats = dict(self.stats)
        return {
            "generated": stats.get("generated", 0),
            "accepted": stats.get("accepted", 0),
            "rejected": stats.get("rejected", 0),
            "consumed": stats.get("consumed", 0),
            "produced_per_s": stats.get("accepted", 0) / elapsed,
            "consumed_per_s": stats.get("consumed", 0) / elapsed,
            "reuse_counts": {str(k): v for k, v in sorted(self.buffer.uses.items())},
            "dropped_unused": self.buffer.dropped_unused,
            "fallbacks": {"cache": stats.get("fallback_cache", 0),
                          "real": stats.get("fallback_real", 0)},
            "consumer_wait_s": stats.get("consumer_wait_s", 0.0),
            "misses": stats.get("misses", 0),
            "producer_error": self.error,
            "elapsed_s": elapsed,
        }

