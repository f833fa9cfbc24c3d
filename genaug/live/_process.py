"""``SubprocessWorker``: the live producer's work in a child process of its own.

Sampling, gating and PNG encoding are Python-heavy; in a thread they would hold the training
process's GIL while ``model.fit`` decodes batches and dispatches its step. A spawned child
keeps all of that off the training process, which only receives the accepted images
(a few KB each). ``concurrent.futures.ProcessPoolExecutor`` is not used: its initializer
failure surfaces without its cause, and it has no way to stop a batch in progress.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import time
import traceback

from genaug.exceptions import GenerationError

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

    def run(self, label: int, requests, should_stop=lambda: False):
        """Send one batch to the child and wait for its accepted images; once
        ``should_stop()`` is true the child stops between images and sends what it has."""
        self._jobs.put((label, requests))
        try:
            return self._receive(should_stop=should_stop)
        except _ChildExited:
            if self._stop.is_set():  # told to stop before it took the job: a clean stop
                return [], 0
            raise

    def _receive(self, deadline: float | None = None, should_stop=lambda: False):
        while True:
            try:
                kind, payload = self._results.get(timeout=_POLL_S)
            except queue.Empty:
                if should_stop():
                    self._stop.set()
                if not self._process.is_alive():
                    raise _ChildExited("the live generator process exited unexpectedly "
                                       f"(exit code {self._process.exitcode})") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise GenerationError("the live generator process did not start in "
                                          "time") from None
                continue
            if kind == "error":
                error, remote = payload
                raise error from RemoteTraceback(remote)
            return payload

    def close(self, timeout: float = 30.0) -> None:
        """Stop the child after the image in hand and wait for it; terminate it if it does
        not stop within ``timeout`` seconds."""
        self._stop.set()
        if self._process.is_alive():
            self._jobs.put(None)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
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
    """The child's loop: build the worker, then run batches until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    parent = multiprocessing.parent_process()
    worker = None
    try:
        worker = factory()
        results.put(("ready", (worker.producible(), worker.batch_size)))
        while not stop.is_set():
            try:
                job = jobs.get(timeout=_POLL_S)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    break
                continue
            if job is None:
                break
            label, requests = job
            results.put(("batch", worker.run(label, requests, stop.is_set)))
    except BaseException as error:
        results.put(("error", (_portable(error), traceback.format_exc())))
    finally:
        if worker is not None:
            worker.close()
        if stop.is_set():  # nobody may read what is left: exit without flushing it
            results.cancel_join_thread()
