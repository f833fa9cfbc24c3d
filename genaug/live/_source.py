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
from genaug.live._worker import LiveJob

#: jobs handed to the worker and not yet back (one sampling while the other is gated)
PRODUCER_DEPTH = 2
#: a job covers this many seconds of the training's demand for fresh images
JOB_SECONDS = 0.5
#: the largest job, in bytes of images (host memory, and one message for a child process)
MAX_JOB_BYTES = 64 * 2**20
#: The share of a close's time left to the worker (and a child) to stop in.
CLOSE_WORKER_SHARE = 0.5
#: Seconds close() gives the whole shutdown unless told otherwise.
DEFAULT_CLOSE_TIMEOUT = 30.0


def producer_batch_size(*, slots_per_second: float | None, max_reuse: int, default: int,
                        image_bytes: int, room: int, seconds: float = JOB_SECONDS,
                        max_bytes: int = MAX_JOB_BYTES) -> int:
    """Images per producer job: the fresh images ``seconds`` of demand need (synthetic slots
    per step x steps per second, each image serving ``max_reuse`` slots), at least one and at
    most what ``max_bytes`` of images and the buffer's ``room`` hold; ``default`` (the
    backend's batch size) until the demand has been measured."""
    if slots_per_second is None:
        wanted = default
    else:
        wanted = int(np.ceil(slots_per_second / max_reuse * seconds))
    largest = max(1, min(room, max_bytes // max(1, image_bytes)))
    return int(min(max(wanted, 1), largest))


def allocate(n: int, *, need: np.ndarray, have: np.ndarray, room: np.ndarray,
             max_reuse: int) -> np.ndarray:
    """Split ``n`` images among classes so every class's supply (``have``: draws its buffered
    and requested images can serve) reaches the same multiple of its ``need`` (draws per
    epoch): water-filling, capped by each class's ``room``; classes with no need get none."""
    need, have = np.asarray(need, float), np.asarray(have, float)
    room = np.where(need > 0, np.maximum(np.asarray(room), 0), 0)
    n = int(min(n, room.sum()))
    if n <= 0:
        return np.zeros(len(need), np.int64)

    def images(level):
        return np.minimum(np.maximum(level * need - have, 0) / max_reuse, room)

    low, high = 0.0, 1.0
    while images(high).sum() < n:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if images(middle).sum() < n else (low, middle)
    share = images(high)
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    for label in order[:n - counts.sum()]:
        counts[label] += 1
    return counts


class LiveSource:
    """A background producer feeding a per-class buffer, and the consumer side the loader uses.

    The producer thread asks its worker for batches of the class whose need is least covered
    (need: synthetic draws per epoch, set by the loader from the ramp schedule and the caps;
    cover: buffered uses left). The worker generates, gates and persists the images (in this
    process, or in a child process with :class:`SubprocessWorker`) and the accepted ones go
    into the buffer. The consumer never waits longer than ``timeout``: when a class has
    nothing fresh, :meth:`take` returns None and the loader falls back to cached images of
    that class, then to real oversampling.

    Jobs are sized from the measured demand (:func:`producer_batch_size`) and split among the
    classes by how far each one's supply falls short of its need (:func:`allocate`); two
    jobs are out at a time, so the worker samples one while it gates the other.

    Parameters
    ----------
    worker : GenerationWorker or SubprocessWorker
        Where jobs are made: ``producible()``, ``batch_size``, ``submit(job, should_stop)``,
        ``collect(timeout) -> [LiveBatch]``, ``close()`` and ``producer`` (``"thread"`` or
        ``"process"``, for the statistics).
    class_names : sequence of str
    capacity : int
        Buffered images per class.
    max_reuse : int
        Draws one fresh image may serve.
    timeout : float
        Longest wait of a training step for a fresh image, in seconds.
    batch_size : int, optional
        Images per job, fixed (default: sized from the demand, the worker's batch size
        until it is measured).
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
        self.batch_size = None if batch_size is None else int(batch_size)
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
        # Set by close(); a producer that stops on its own (an error) closes the worker
        # within the default close timeout.
        self._close_started = self._close_deadline = None
        self._starved: set[int] = set()  # classes whose last wait came up empty
        self._first_take: float | None = None
        self._image_bytes: int | None = None
        self.error: str | None = None
        self.stats = Counter()
        self.rejected_by_class: dict[str, Counter] = {}
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
        if self._first_take is None:
            self._first_take = started
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

    def slots_per_second(self) -> float | None:
        """Synthetic slots the training asked for per second, once a second of it is seen."""
        with self._lock:
            first, slots = self._first_take, self.stats["consumed"] + self.stats["misses"]
        elapsed = time.perf_counter() - first if first is not None else 0.0
        return slots / elapsed if elapsed >= 1.0 and slots else None

    def _next_job(self, in_flight: np.ndarray) -> LiveJob | None:
        """The next job: sized from the demand, split among the classes that fall short."""
        with self._lock:
            need = np.where(self.producible, self._need, 0.0)
        if not need.any():
            need = self.producible.astype(float)  # no plan yet: keep every class warm
        room = self.buffer.capacity - np.asarray(self.buffer.sizes()) - in_flight
        size = self.batch_size or producer_batch_size(
            slots_per_second=self.slots_per_second(), max_reuse=self.buffer.max_reuse,
            default=self.worker.batch_size, image_bytes=self._image_bytes or 1,
            room=int(np.maximum(room, 0)[need > 0].sum()))
        have = self.buffer.remaining_uses() + in_flight * self.buffer.max_reuse
        counts = allocate(size, need=need, have=have, room=room,
                          max_reuse=self.buffer.max_reuse)
        if not counts.any():
            return None
        k = len(self.class_names)
        labels = np.repeat(np.arange(k), counts)
        starts = np.repeat(self._requests, counts)
        offsets = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
        self._requests += counts
        return LiveJob(labels=labels, seeds=self.seed + (starts + offsets) * k + labels)

    def _produce(self) -> None:
        in_flight = np.zeros(len(self.class_names), np.int64)  # images asked for, not back
        jobs = 0
        try:
            while not self._stop.is_set():
                job = self._next_job(in_flight) if jobs < PRODUCER_DEPTH else None
                if job is not None:
                    self.worker.submit(job, self._stop.is_set)  # a thread worker samples here
                    in_flight += np.bincount(job.labels, minlength=len(in_flight))
                    jobs += 1
                    continue
                if not jobs:
                    self.buffer.wait_for_room(timeout=0.1)
                    continue
                for batch in self.worker.collect(timeout=0.1):
                    jobs -= 1
                    in_flight = np.maximum(in_flight - batch.generated, 0)
                    self._deliver(batch)
            # Stopping: wait for the jobs out (a thread worker's job in hand stops between
            # images), so their errors are reported, what they wrote to the cache is counted,
            # and the worker closes with nothing in progress.
            while jobs and time.monotonic() < self._drain_deadline():
                for batch in self.worker.collect(timeout=0.1):
                    jobs -= 1
                    self._deliver(batch)
        except Exception as error:  # the loader falls back; the run goes on
            self.error = f"{type(error).__name__}: {error}"
            warnings.warn(f"live generator stopped: {self.error}\n{traceback.format_exc()}",
                          stacklevel=1)
        finally:
            self._stopped = time.perf_counter()
            self._close_worker()

    def _deliver(self, batch) -> None:
        """Put a job's accepted images into the buffer, one copy per class."""
        generated, accepted = int(batch.generated.sum()), len(batch.labels)
        with self._lock:
            self.stats["generated"] += generated
            self.stats["accepted"] += accepted
            self.stats["rejected"] += generated - accepted
            for name, counts in batch.rejected_by_class.items():
                self.rejected_by_class.setdefault(name, Counter()).update(counts)
        if accepted:
            self._image_bytes = int(batch.images[0].nbytes)
        for label in np.unique(batch.labels).tolist():
            self.buffer.put_batch(label, batch.of(label))
            with self._lock:
                self._starved.discard(label)

    def _drain_deadline(self) -> float:
        """Until when the jobs out are waited for: half of what is left before close's
        deadline, the other half being the worker's to stop in."""
        return self._close_deadline - CLOSE_WORKER_SHARE * (self._close_deadline
                                                            - self._close_started)

    def _close_worker(self) -> None:
        with self._lock:
            closed, self._closed = self._closed, True
        if not closed:
            deadline = self._close_deadline or time.monotonic() + DEFAULT_CLOSE_TIMEOUT
            self.worker.close(timeout=max(1.0, deadline - time.monotonic()))

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Stop the producer and wait for it (it finishes the image in hand, then closes the
        worker: the cache writer and, for a subprocess, the child), so nothing is left
        half-written. Every wait of the shutdown (the jobs out, the worker, the child) is
        derived from this one ``timeout``."""
        self._close_started = time.monotonic()
        self._close_deadline = self._close_started + timeout
        self._stop.set()
        if self._thread is None:
            self._close_worker()
            return
        self._thread.join(max(0.0, self._close_deadline - time.monotonic()))
        if self._thread.is_alive():
            warnings.warn("live generator still finishing a batch; it stops by itself",
                          stacklevel=2)

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def statistics(self) -> dict:
        """Throughput, reuse, fallbacks, the share of synthetic slots served fresh and waits,
        for ``metrics.json`` under ``live``."""
        end = self._stopped or time.perf_counter()
        elapsed = max(end - (self._started or end), 1e-9)
        with self._lock:
            stats = dict(self.stats)
            rejected_by_class = {name: dict(sorted(counts.items()))
                                 for name, counts in sorted(self.rejected_by_class.items())}
        rejected_by_gate = dict(sorted(sum(map(Counter, rejected_by_class.values()),
                                           Counter()).items()))
        slots = sum(stats.get(k, 0) for k in ("consumed", "fallback_cache", "fallback_real"))
        return {
            "producer": self.worker.producer,
            "generated": stats.get("generated", 0),
            "accepted": stats.get("accepted", 0),
            "rejected": stats.get("rejected", 0),
            "rejected_by_gate": rejected_by_gate,
            "rejected_by_class": rejected_by_class,
            "consumed": stats.get("consumed", 0),
            "produced_per_s": stats.get("accepted", 0) / elapsed,
            "consumed_per_s": stats.get("consumed", 0) / elapsed,
            "reuse_counts": {str(k): v for k, v in sorted(self.buffer.uses.items())},
            "dropped_unused": self.buffer.dropped_unused,
            "fallbacks": {"cache": stats.get("fallback_cache", 0),
                          "real": stats.get("fallback_real", 0)},
            "fresh_share": stats.get("consumed", 0) / slots if slots else None,
            "slots_per_s": self.slots_per_second(),
            "consumer_wait_s": stats.get("consumer_wait_s", 0.0),
            "misses": stats.get("misses", 0),
            "producer_error": self.error,
            "elapsed_s": elapsed,
            "warning": _starved_warning(stats, slots, self.error),
        }


def _starved_warning(stats: dict, slots: int, error: str | None) -> str | None:
    """One line when the producer served none of the synthetic slots it was planned for (a
    run that trained on real images only, while its user asked for live ones)."""
    if not slots or stats.get("consumed", 0):
        return None
    why = f" (producer stopped: {error})" if error else " (it produced too slowly)"
    return (f"the live generator served no fresh image: all {slots} synthetic slots fell "
            f"back ({stats.get('fallback_cache', 0)} to the cache, "
            f"{stats.get('fallback_real', 0)} to real images){why}")
