"""``SubprocessWorker``: the live producer's work in a child process of its own.

Sampling, gating and PNG encoding are Python-heavy; in a thread they would hold the training
process's GIL while ``model.fit`` decodes batches and dispatches its step. A spawned child
keeps all of that off the training process: a job goes out as two small arrays (labels and
seeds) and its accepted images come back as one :class:`LiveBatch` (one uint8 array), so the
training process does no per-image work to produce. The child samples the next job while it
gates and writes the previous one. ``concurrent.futures.ProcessPoolExecutor`` is not used:
its initializer failure surfaces without its cause, and it has no way to stop a job in
progress.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import time
import traceback

from genaug.exceptions import GenerationError
from genaug.live._worker import LiveJob

_POLL_S = 0.1


class RemoteTraceback(Exception):
    """The child's traceback, attached as the ``__cause__`` of an error it raised."""

    def __str__(self) -> str:
        return self.args[0]


class _ChildExited(GenerationError):
    pass


class SubprocessWorker:
    """Runs the :class:`GenerationWorker` built by ``factory`` in a spawned child process.

    Same interface as :class:`GenerationWorker` (``producible``, ``batch_size``, ``run``,
    ``close``), so :class:`LiveSource` schedules either. The child ignores Ctrl-C (the
    training process handles it and stops the child), exits when the training process
    disappears, and closes its cache writer itself, so no orphan process and no
    half-written file remain. The child is started with ``spawn`` (CUDA cannot be used in a
    forked child): a script starting one needs the usual ``if __name__ == "__main__":``
    guard.

    Parameters
    ----------
    factory : picklable callable
        Builds the worker in the child (e.g. ``functools.partial(build_worker, ...)``).
    start_timeout : float
        Longest wait for the child to load its generator, in seconds.

    Raises
    ------
    Exception
        Whatever building the worker raised in the child (its traceback as the cause).
    """

    #: where the work runs, reported in the live statistics
    producer = "process"

    def __init__(self, factory, *, start_timeout: float = 600.0):
        context = multiprocessing.get_context("spawn")
        self._jobs = context.Queue()
        self._results = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(target=_serve, name="genaug-live-producer",
                                        args=(factory, self._jobs, self._results, self._stop),
                                        daemon=True)
        self._process.start()
        try:
            self._producible, self._batch_size = self._receive(time.monotonic()
                                                               + start_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def producible(self) -> list[bool]:
        return list(self._producible)

    def submit(self, job: LiveJob, should_stop=lambda: False) -> None:
        """Send a job to the child (it samples, gates and writes it there)."""
        self._check_alive()
        self._jobs.put(job)

    def collect(self, timeout: float = 0.0) -> list:
        """The :class:`LiveBatch` results the child sent (waits up to ``timeout`` for one)."""
        batches = []
        message = self._get(timeout)
        while message is not None:
            batches.append(message)
            message = self._get(0.0)
        if not batches and not self._process.is_alive():
            # What the child sent just before it exited (its own error above all) may still be
            # in the pipe: read it before reporting the exit.
            message = self._get(_POLL_S)
            if message is not None:
                return [message]
            self._check_alive()
        return batches

    def run(self, label: int, requests, should_stop=lambda: False):
        """One job of class ``label``, waited for: ``(accepted images, generated count)``;
        once ``should_stop()`` is true the child stops between images and sends what it
        has."""
        import numpy as np

        try:
            self._check_alive()
            self._jobs.put(LiveJob(np.full(len(requests), label),
                                   np.array([r.seed for r in requests])))
            batch = self._receive(should_stop=should_stop)
        except _ChildExited:
            if self._stop.is_set():  # told to stop before it took the job: a clean stop
                return [], 0
            raise
        return list(batch.of(label)), int(batch.generated[label])

    def _check_alive(self) -> None:
        if not self._process.is_alive():
            raise _ChildExited("the live generator process exited unexpectedly "
                               f"(exit code {self._process.exitcode})")

    def _get(self, timeout: float):
        """The next message's payload, or None after ``timeout``; raises a child's error."""
        try:
            kind, payload = (self._results.get(timeout=timeout) if timeout > 0
                             else self._results.get_nowait())
        except queue.Empty:
            return None
        if kind == "error":
            error, remote = payload
            raise error from RemoteTraceback(remote)
        return payload

    def _receive(self, deadline: float | None = None, should_stop=lambda: False):
        while True:
            payload = self._get(_POLL_S)
            if payload is not None:
                return payload
            if should_stop():
                self._stop.set()
            if not self._process.is_alive():
                payload = self._get(_POLL_S)  # its last message, an error above all
                if payload is not None:
                    return payload
                self._check_alive()
            if deadline is not None and time.monotonic() > deadline:
                raise GenerationError("the live generator process did not start in "
                                      "time") from None

    def close(self, timeout: float = 30.0) -> None:
        """Stop the child after the image in hand and wait for it, all within ``timeout``
        seconds: it is asked to stop, then (past three quarters of the time) sent SIGTERM,
        which it also turns into "stop after this image", and killed only when the whole
        deadline has passed."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._process.is_alive():
            self._jobs.put(None)
            self._process.join(max(0.0, deadline - time.monotonic() - timeout / 4))
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(max(0.0, deadline - time.monotonic()))
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._jobs.cancel_join_thread()
        self._jobs.close()
        self._results.close()


def _portable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling, else a GenerationError naming it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return GenerationError(f"{type(error).__name__}: {error}")
    return error


def _serve(factory, jobs, results, stop) -> None:
    """The child's loop: build the worker, then take jobs (sampling each as it comes, the
    worker gating the previous one meanwhile) and send back finished batches, until told to
    stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    # SIGTERM (close's second step, multiprocessing's exit handler) stops the loop after the
    # image in hand, so it never lands between an image's rename and its record.
    terminated = []
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))

    def stopping() -> bool:
        return bool(terminated) or stop.is_set()

    parent = multiprocessing.parent_process()
    worker = None
    try:
        worker = factory()
        results.put(("ready", (worker.producible(), worker.batch_size)))
        in_flight = 0
        while not stopping():
            try:
                job = jobs.get(timeout=_POLL_S if not in_flight else 0.005)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    break
                job = False
            if job is None:
                break
            if job is not False:
                worker.submit(job, stopping)
                in_flight += 1
            for batch in worker.collect(timeout=_POLL_S if job is False and in_flight
                                        else 0.0):
                results.put(("batch", batch))
                in_flight -= 1
    except BaseException as error:
        results.put(("error", (_portable(error), traceback.format_exc())))
    finally:
        if worker is not None:
            worker.close()
        if stopping():  # nobody may read what is left: exit without flushing it
            results.cancel_join_thread()
