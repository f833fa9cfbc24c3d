"""The stages of ``generate``: sample, prepare, commit, overlapped.

::

    WorkQueue ──job──> producer.submit(job) ──Future[list[Candidate]]──> ordered consumer
    (retries first,     sampling: the backend,                           (one thread: stateful
     then round-robin   in the calling thread;                            gates in plan order,
     first attempts)    preparing: a thread pool                          writes, retry requests)
        ^                                                                      |
        └──────────────────────────── retry(item, attempt) ────────────────────┘

The producer is the seam for other ways of sampling: anything with ``submit(job)``, which
returns a ``concurrent.futures.Future`` of the job's prepared candidates, ``abandon()``,
``close()`` and ``depth`` (the jobs it keeps in flight) can replace :class:`LocalProducer`;
:class:`genaug.generation._ray.RayProducer` sends each job, a list of plan entries with their
own seeds, to the workers of a Ray cluster, which sample and prepare it there
(:class:`Preparation`). The consumer stays single and decides every class in plan order, so
the cache is the same however and wherever the candidates were made.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from genaug.data import encode_png
from genaug.generation._gates import GateChain, Prepared
from genaug.generation._plan import PlanItem
from genaug.generation._utils import normalize_image

#: one plan entry's attempt: the unit of work (its seed is ``item.seed_for(attempt)``)
Work = tuple[PlanItem, int]
#: jobs sampled ahead of the ordered consumer (double buffering, plus one being prepared)
PIPELINE_DEPTH = 2


@dataclass
class Candidate:
    """A generated image of one attempt, ready for its decision: the PNG file to write, the
    provenance and the order-independent verdict (and the normalised pixels, when it was made
    in this process: the decision itself needs only the verdict)."""

    item: PlanItem
    attempt: int
    png: bytes
    provenance: dict
    prepared: Prepared
    image: np.ndarray | None = None

    @property
    def key(self) -> tuple[int, int]:
        return self.item.index, self.attempt


@dataclass
class Preparation:
    """The order-independent work on a generated batch, the same wherever it runs (a thread
    of this process or a remote worker): normalise each image to the output size and colour
    mode, score it with the stateless gates and compute what the stateful gates will compare
    (:meth:`GateChain.prepare`), and encode its PNG file.

    Calling it returns ``(image, png, prepared)`` per generated image, in order.
    """

    image_size: tuple[int, int]
    color_mode: str
    gates: GateChain

    def __call__(self, made: Sequence, class_names: Sequence[str]) -> list[tuple]:
        images = [normalize_image(m.image, self.image_size, self.color_mode) for m in made]
        prepared = self.gates.prepare(images, list(class_names))
        return [(image, encode_png(image), p) for image, p in zip(images, prepared)]


def interleave(pending: Mapping[str, Sequence[Any]]) -> list[Any]:
    """The entries of every class merged so that each prefix holds the classes in proportion
    to what each still needs (a run stopped early leaves every class partly filled).

    Entry ``j`` of a class with ``n`` entries is due at ``(j + 0.5) / n``; ties go to the
    class listed first. Within a class the order is kept.
    """
    keyed = [((j + 0.5) / len(entries), rank, j, entry)
             for rank, entries in enumerate(pending.values()) for j, entry in enumerate(entries)]
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


class StageTimes:
    """Seconds spent per stage, added from any thread."""

    NAMES = ("sampling", "gates", "writing", "waiting")

    def __init__(self):
        self._lock = threading.Lock()
        self._seconds = Counter()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] += seconds

    def timed(self, stage: str):
        return _Timed(self, stage)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {name: round(self._seconds[name], 3) for name in self.NAMES}

    def postfix(self) -> str:
        split = self.as_dict()
        return " ".join(f"{name} {split[name]:.1f}s" for name in self.NAMES)


class _Timed:
    def __init__(self, times: StageTimes, stage: str):
        self.times, self.stage = times, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.times.add(self.stage, time.perf_counter() - self.start)


class WorkQueue:
    """What to sample next, shared by the sampling loop and the ordered consumer.

    A job takes the requested retries first (each holds up its class's decisions), then
    first attempts in the order given. ``outstanding`` counts jobs handed out and not yet
    decided; :meth:`next_job` waits while only they can bring more work.
    """

    def __init__(self, first_attempts: Sequence[Work], *, job_size: int):
        self.job_size = int(job_size)
        self._first = deque(first_attempts)
        self._retries: deque[Work] = deque()
        self._outstanding = 0
        self._closed = False
        self._condition = threading.Condition()

    def next_job(self, *, stop: Callable[[], bool] = lambda: False,
                 times: StageTimes | None = None) -> list[Work] | None:
        """The next job, or None when everything is handed out and decided, on ``stop()``
        and after :meth:`close`."""
        started = time.perf_counter()
        with self._condition:
            while not self._closed and not stop():
                if self._retries or self._first:
                    job = []
                    while self._retries and len(job) < self.job_size:
                        job.append(self._retries.popleft())
                    while self._first and len(job) < self.job_size:
                        job.append(self._first.popleft())
                    self._outstanding += 1
                    break
                if not self._outstanding:
                    job = None
                    break
                self._condition.wait(timeout=0.5)
            else:
                job = None
        if times is not None:
            times.add("waiting", time.perf_counter() - started)
        return job

    def retry(self, work: Work) -> None:
        with self._condition:
            self._retries.append(work)
            self._condition.notify_all()

    def job_done(self) -> None:
        with self._condition:
            self._outstanding -= 1
            self._condition.notify_all()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class LocalProducer:
    """Samples each job with ``sample`` in the calling thread (a backend is used from one
    thread) and prepares its candidates with ``prepare`` on a pool of ``workers`` threads, so
    the next job samples while this one is prepared.

    Parameters
    ----------
    sample : callable
        ``sample(job) -> made``: the generated images of a job (the device's work).
    prepare : callable
        ``prepare(job, made) -> list[Candidate]`` (CPU work: normalising, stateless gates,
        hashes); must be safe to run on several threads at once.
    workers : int
    times : StageTimes
    """

    #: jobs handed to the consumer before the sampling loop waits for it
    depth = PIPELINE_DEPTH

    def __init__(self, sample: Callable, prepare: Callable, *, workers: int,
                 times: StageTimes):
        self.sample, self.prepare, self.times = sample, prepare, times
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(workers)),
                                        thread_name_prefix="genaug-prepare")

    def submit(self, job: list[Work]) -> Future:
        with self.times.timed("sampling"):
            made = self.sample(job)
        return self._pool.submit(self._prepare, job, made)

    def _prepare(self, job, made):
        with self.times.timed("gates"):
            return self.prepare(job, made)

    def abandon(self) -> None:
        """Nothing to drop: a job handed out is sampled already, and preparing it is quick, so
        the consumer decides it (the run stops after the batch in hand)."""

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class OrderedConsumer:
    """One thread that takes each job's candidates as its future completes and hands them to
    ``commit``, which decides them in plan order whatever order they arrive in; at most
    ``depth`` jobs wait for it (the sampling loop blocks on :meth:`put` beyond that, and the
    wait is counted as ``waiting``).

    Taking jobs as they complete, not as they were submitted, keeps fast workers busy while a
    slow one (or one being restarted) holds its job. A cancelled future (work the producer
    abandoned) is skipped: nothing of it is written, and a later run makes it again. An error
    in a future or in ``commit`` stops the consumer and closes ``work``; it is re-raised by
    :meth:`check` and :meth:`close` in the caller's thread.
    """

    def __init__(self, commit: Callable[[list[Candidate]], None], *, work: WorkQueue,
                 depth: int, times: StageTimes):
        self.commit, self.work, self.times = commit, work, times
        self.depth = max(1, int(depth))
        self._pending: list[Future] = []  # handed over, not yet committed, in submission order
        self._arrived: queue.Queue = queue.Queue()
        self._condition = threading.Condition()
        self._closing = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="genaug-commit", daemon=True)
        self._thread.start()

    def put(self, future: Future) -> None:
        with self.times.timed("waiting"), self._condition:
            while self.error is None and len(self._pending) >= self.depth:
                self._condition.wait(timeout=0.5)  # the consumer is behind
            if self.error is None:
                self._pending.append(future)
        if self.error is None:
            future.add_done_callback(self._arrived.put)
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            with self._condition:
                if self.error is not None or (self._closing and not self._pending):
                    return
            future = self._arrived.get()
            if future is None:  # woken by close()
                continue
            try:
                if not future.cancelled():
                    self.commit(future.result())
                    self.work.job_done()
            except BaseException as error:  # re-raised in the sampling thread
                self.error = error
                self.work.close()
            with self._condition:
                self._pending.remove(future)
                self._condition.notify_all()

    def close(self) -> None:
        """Decide every job already handed over (those not cancelled), then stop; re-raise a
        consumer error."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._arrived.put(None)
        self._thread.join()
        self.check()
