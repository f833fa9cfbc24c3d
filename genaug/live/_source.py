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

    The producer thread asks its worker for batches of the class whose need is least covered
    (need: synthetic draws per epoch, set by the loader from the ramp schedule and the caps;
    cover: buffered uses left). The worker generates, gates and persists the images (in this
    process, or in a child process with :class:`SubprocessWorker`) and the accepted ones go
    into the buffer. The consumer never waits longer than ``timeout``: when a class has
    nothing fresh, :meth:`take` returns None and the loader falls back to cached images of
    that class, then to real oversampling.

    Parameters
    ----------
    worker : GenerationWorker or SubprocessWorker
        Where batches are made: ``producible()``, ``batch_size``,
        ``run(label, requests, should_stop) -> (accepted images, generated count)``,
        ``close()`` and ``producer`` (``"thread"`` or ``"process"``, for the statistics).
    class_names : sequence of str
    capacity : int
        Buffered images per class.
    max_reuse : int
        Draws one fresh image may serve.
    timeout : float
        Longest wait of a training step for a fresh image, in seconds.
    batch_size : int, optional
        Images per generator call (default: the worker's).
    seed : int
        First seed of the live stream; class ``c``'s k-th request uses ``seed + k * K + c``.

    Examples
    --------
    A producer in a child process, from a ``genaug fit-generator`` directory::

        worker = SubprocessWorker(functools.partial(
            build_worker, "models/generator", device="cuda", class_names=names,
            image_size=(32, 32), color_mode="rgb", cache_dir="cache"))
        with LiveSource(worker, class_names=names) as live:
            model.fit(BalancedBatchGenerator(data, synthetic_ratio=0.25, live_source=live))
    """

    def __init__(self, worker, *, class_names: Sequence[str], capacity: int = 256,
                 max_reuse: int = 4, timeout: float = 0.05, batch_size: int | None = None,
                 seed: int = 0):
        self.worker = worker
        self.class_names = tuple(class_names)
        self.timeout = float(timeout)
        self.batch_size = int(batch_size or worker.batch_size)
        self.seed = int(seed)
        k = len(self.class_names)
        self.buffer = FreshBuffer(k, capacity=capacity, max_reuse=max_reuse)
        self.producible = np.array(worker.producible(), dtype=bool)
        self._need = np.zeros(k)
        self._requests = np.zeros(k, dtype=np.int64)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._starved: set[int] = set()  # classes whose last wait came up empty
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
        A class whose last wait came up empty is not waited for again until the producer
        delivers it an image: a producer that falls behind (or whose images the gates keep
        rejecting) costs a few waits, not one per step.
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
            with self._lock:
                starved = label in self._starved
            wait = 0.0 if starved or not self.running else max(0.0, deadline - started)
            image = self.buffer.take(label, timeout=wait)
            if image is None and wait > 0:
                with self._lock:
                    self._starved.add(label)
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
                start = self._requests[label]
                self._requests[label] += self.batch_size
                requests = [GenerationRequest(class_name=self.class_names[label],
                                              seed=self.seed + int(start + i) * k + label)
                            for i in range(self.batch_size)]
                images, generated = self.worker.run(label, requests, self._stop.is_set)
                with self._lock:
                    self.stats["generated"] += generated
                    self.stats["accepted"] += len(images)
                    self.stats["rejected"] += generated - len(images)
                for image in images:
                    self.buffer.put(label, image)
                if images:
                    with self._lock:
                        self._starved.discard(label)
        except Exception as error:  # the loader falls back; the run goes on
            self.error = f"{type(error).__name__}: {error}"
            warnings.warn(f"live generator stopped: {self.error}\n{traceback.format_exc()}",
                          stacklevel=1)
        finally:
            self._stopped = time.perf_counter()
            self._close_worker()

    def _close_worker(self) -> None:
        with self._lock:
            closed, self._closed = self._closed, True
        if not closed:
            self.worker.close()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the producer and wait for it (it finishes the image in hand, then closes the
        worker: the cache writer and, for a subprocess, the child), so nothing is left
        half-written."""
        self._stop.set()
        if self._thread is None:
            self._close_worker()
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            warnings.warn("live generator still finishing a batch; it stops by itself",
                          stacklevel=2)

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
            "producer": self.worker.producer,
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

