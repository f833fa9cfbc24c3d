"""``GenerationWorker``: the live producer's work, a job of requests at a time, overlapped.

A job is sampled in the thread that submits it (the device's work) and then normalised,
gated and persisted on the worker's own thread, so the next job samples meanwhile. The
accepted images of a job come back as one :class:`LiveBatch`: one uint8 array and one label
array, which cross a process boundary as one message.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: jobs sampled ahead of the gating thread
WORKER_DEPTH = 2
#: share of the free device memory a job's forward passes may use
DEVICE_MEMORY_SHARE = 0.8


@dataclass
class LiveJob:
    """What to make: one image per (label, seed) pair (arrays, so a job is one small
    message whatever its size)."""

    labels: np.ndarray
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class LiveBatch:
    """A job's result: the accepted images ``(N, H, W, C)`` uint8 with their labels, how
    many images of each class were generated (accepted or not), and how many candidates of
    each class each gate rejected (``{class: {gate: count}}``)."""

    images: np.ndarray
    labels: np.ndarray
    generated: np.ndarray
    rejected_by_class: dict = field(default_factory=dict)

    def of(self, label: int) -> np.ndarray:
        return self.images[self.labels == label]


class GenerationWorker:
    """Generate a job, normalise each image, gate it and persist the accepted ones.

    The same worker runs in a thread of the training process or in a child process
    (:class:`SubprocessWorker`); :class:`LiveSource` only schedules its jobs.

    Parameters
    ----------
    backend : GeneratorBackend
    class_names : sequence of str
        The training classes; jobs name classes by label.
    image_size : (height, width)
    color_mode : str
    gates : GateChain (or an object with ``check(image, class_name) -> (passed,
        quality)``), optional
    cache_writer : CacheWriter, optional
        Where accepted images are persisted with full records; closed by :meth:`close`.
    """

    #: where the work runs, reported in the live statistics
    producer = "thread"

    def __init__(self, backend, *, class_names: Sequence[str], image_size, color_mode: str,
                 gates=None, cache_writer=None):
        self.backend = backend
        self.class_names = tuple(class_names)
        self.image_size = tuple(image_size)
        self.color_mode = color_mode
        self.gates = gates
        self.writer = cache_writer
        self._sampled: queue.Queue = queue.Queue(maxsize=WORKER_DEPTH)
        self._done: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._default_batch = self.batch_size
        self._bytes_per_image: float | None = None

    @property
    def batch_size(self) -> int:
        return int(getattr(self.backend, "batch_size", 8))

    def producible(self) -> list[bool]:
        """Per class, whether the backend can make it."""
        return [bool(self.backend.can_generate(name)) for name in self.class_names]

    # -- the pipeline --------------------------------------------------------------------------
    def submit(self, job: LiveJob, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Sample ``job`` now, in this thread, and queue its gating and writing on the
        worker's thread (waits while :data:`WORKER_DEPTH` jobs are queued)."""
        from genaug.generation import GenerationRequest

        self._check()
        requests = [GenerationRequest(class_name=self.class_names[label], seed=int(seed))
                    for label, seed in zip(job.labels.tolist(), job.seeds.tolist())]
        made = self._sample(requests)
        if self._thread is None:
            self._thread = threading.Thread(target=self._gate_loop, name="genaug-live-gates",
                                            daemon=True)
            self._thread.start()
        while True:
            self._check()
            try:
                self._sampled.put((job, made, should_stop), timeout=0.1)
                return
            except queue.Full:
                continue

    def collect(self, timeout: float = 0.0) -> list[LiveBatch]:
        """The jobs gated and written since the last call (waits up to ``timeout`` for one)."""
        batches = []
        try:
            batches.append(self._done.get(timeout=timeout) if timeout > 0
                           else self._done.get_nowait())
            while True:
                batches.append(self._done.get_nowait())
        except queue.Empty:
            pass
        self._check()
        return batches

    def run(self, label: int, requests, should_stop: Callable[[], bool] = lambda: False
            ) -> tuple[list[np.ndarray], int]:
        """One job of class ``label``, waited for: its accepted images and how many were
        generated (``should_stop`` is checked between images, so a stop lands within one)."""
        if not len(requests):
            return [], 0
        job = LiveJob(np.full(len(requests), label), np.array([r.seed for r in requests]))
        self.submit(job, should_stop)
        batches = []
        while not batches:
            batches = self.collect(timeout=0.1)
        return list(batches[0].of(label)), int(batches[0].generated[label])

    def _sample(self, requests):
        """``generate_batch``; on CUDA a job runs in as few forward passes as fit in the
        memory the training leaves (measured per image on the first job)."""
        device = str(getattr(self.backend, "device", "cpu"))
        if not device.startswith("cuda") or not requests:
            return self.backend.generate_batch(requests)
        import torch

        if self._bytes_per_image is not None:
            free, _ = torch.cuda.mem_get_info(device)
            self.backend.batch_size = forward_batch_size(
                len(requests), default=self._default_batch, free_bytes=free,
                bytes_per_image=self._bytes_per_image)
            return self.backend.generate_batch(requests)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        made = self.backend.generate_batch(requests)
        rows = min(len(requests), self.batch_size)
        self._bytes_per_image = max(1.0, (torch.cuda.max_memory_allocated(device) - before)
                                    / rows)
        return made

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _gate_loop(self) -> None:
        try:
            while True:
                entry = self._sampled.get()
                if entry is None:
                    return
                self._done.put(self._gate(*entry))
        except BaseException as error:  # raised in the submitting thread
            self._error = error

    def _gate(self, job: LiveJob, made, should_stop) -> LiveBatch:
        """Normalise, gate (the batch's order-independent part at once) and persist."""
        from genaug.generation import normalize_image

        names = [self.class_names[label] for label in job.labels.tolist()]
        images = [normalize_image(m.image, self.image_size, self.color_mode) for m in made]
        prepared = (self.gates.prepare(images, names) if hasattr(self.gates, "prepare")
                    else [None] * len(images))
        keep = np.zeros(len(images), bool)
        generated = np.zeros(len(self.class_names), np.int64)
        rejected: dict[str, Counter] = {}
        for i, (image, name, m) in enumerate(zip(images, names, made)):
            if should_stop():
                break
            generated[job.labels[i]] += 1
            if self.gates is None:
                passed, quality = True, {}
            elif prepared[i] is None:
                passed, quality = self.gates.check(image, name)
            else:
                passed, quality = self.gates.finish(image, name, prepared[i])
            if not passed:
                rejected.setdefault(name, Counter()).update(
                    gate for gate, result in quality.items() if not result["passed"])
                continue
            if self.writer is not None:
                seed = m.provenance.get("seed")
                self.writer.add(image, class_name=name, record_id=f"live-{name}-{seed}",
                                **{**m.provenance, "quality": quality, "attempts": 1})
            keep[i] = True
        stack = (np.stack(images) if images
                 else np.zeros((0, *self.image_size, 1), np.uint8))
        return LiveBatch(images=stack[keep], labels=job.labels[keep], generated=generated,
                         rejected_by_class={name: dict(counts)
                                            for name, counts in rejected.items()})

    def close(self, timeout: float | None = None) -> None:
        """Stop the gating thread after the job in hand, then close the cache writer (whole
        files and records only) and the backend. ``timeout`` is accepted for the worker
        protocol: a thread cannot be stopped from outside, so it is always waited for."""
        try:
            if self._thread is not None and self._thread.is_alive():
                try:
                    while True:  # jobs not gated yet are dropped
                        self._sampled.get_nowait()
                except queue.Empty:
                    pass
                self._sampled.put(None)
                self._thread.join()
            if self.writer is not None:
                self.writer.close()
        finally:
            close = getattr(self.backend, "close", None)
            if close is not None:
                close()


def forward_batch_size(job: int, *, default: int, free_bytes: float,
                       bytes_per_image: float) -> int:
    """Images per forward pass for a job of ``job`` images: the whole job when it fits in
    :data:`DEVICE_MEMORY_SHARE` of the free device memory, else as many as fit (never below
    ``default``, the backend's own batch size, which is known to fit)."""
    fits = int(DEVICE_MEMORY_SHARE * free_bytes / max(bytes_per_image, 1.0))
    return int(max(min(job, fits), min(job, default), 1))
