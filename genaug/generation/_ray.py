"""Generation on a Ray cluster: the generator loaded once on each of several workers, and the
producer that hands ``generate_cache``'s jobs to them.

Ray core actors behind the producer seam, not Ray Data. Ray Data's ``map_batches`` with a
callable class per actor is Ray's documented pattern for batch inference over a dataset that
flows one way; a generate run is not that. Its ordered consumer asks for retries of rejected
images while the run goes on (new work that depends on earlier verdicts), the run stops on
``max_seconds`` or Ctrl-C with every class partly filled, and decisions must be taken in plan
order on one process. Actors keep all of that as it is: :class:`RayProducer` is one more
producer whose ``submit(job)`` returns a ``concurrent.futures.Future`` (from
``ObjectRef.future()``), the work queue and the single ordered consumer (the one writer of the
cache) stay on the driver, and Ray's actor fault tolerance (``max_restarts``,
``max_task_retries``) runs a job again on a restarted worker when its worker died. A job is a
list of plan entries with their own seeds, so the second run makes the same images, and
nothing of the first was written: there is nothing to duplicate or lose.

Nothing here imports Ray at module level; :func:`require_ray` does, when ``ray=`` is used.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from genaug.exceptions import ConfigError, GenaugError, GenerationError
from genaug.generation._backends import PLACEMENTS, backend_kind
from genaug.generation._base import GeneratedImage, GenerationRequest, GeneratorBackend
from genaug.generation._pipeline import PIPELINE_DEPTH, Candidate, Preparation, StageTimes, Work

#: times Ray restarts a worker that died (its jobs run again each time)
MAX_RESTARTS = 3
#: backend options that name files: made absolute, since workers do not share our directory
PATH_OPTIONS = ("lora", "compile_cache_dir")
#: Test hook: a path. The first worker that finds this file after sampling a job removes it
#: and exits at once, as a worker killed mid-batch would (only the tests set it).
KILL_SWITCH: str | None = None


def require_ray():
    """The ``ray`` module, or a one-line error naming the extra that brings it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("ray is not installed; install the extra: "
                          'pip install "genaug[ray]"') from None
    return ray


class RayBackend(GeneratorBackend):
    """A generator loaded once on each of ``ray_workers`` Ray actors (use
    ``load_backend(path, ray=...)``).

    On the driver it answers what a backend is asked (``info()``, the native size, the
    classes, the settings) from what the workers loaded; ``generate_cache`` sends its jobs to
    the workers through :meth:`make_producer`, and :meth:`generate_batch` runs one batch on a
    worker. The model directory (and a LoRA adapter) must be at the same path on every node.

    Parameters
    ----------
    path : path-like
        A generator directory that ``load_backend`` accepts.
    ray : True or str
        ``True``: join the Ray instance this machine runs (``RAY_ADDRESS``, or one started
        with ``ray start``), else start a local one; a string is the address passed to
        ``ray.init`` (``"auto"``, or the head node's ``host:6379``). When Ray is already
        initialised in this process, that connection is used as it is.
    ray_workers : int, optional
        Actors, each with its own copy of the model (default: as many as the cluster's
        resources hold).
    ray_gpus_per_worker : float, optional
        GPUs per actor (default: 1 when the cluster has GPUs, else 0; a fraction shares a GPU).
    ray_cpus_per_worker : float, optional
        CPUs per actor (default 1; a CPU worker runs that many torch threads).
    kind, device, precision, **options
        As for :func:`load_backend`, applied on every worker (``device="auto"`` takes the
        worker's GPU when it has one).
    """

    def __init__(self, path, *, ray=True, ray_workers: int | None = None,
                 ray_gpus_per_worker: float | None = None,
                 ray_cpus_per_worker: float | None = None, kind: str = "auto", device=None,
                 precision: str = "auto", **options):
        ray_module = require_ray()
        # 1. What to load: the kind is checked here, paths made absolute for the workers.
        detected = backend_kind(path)
        if kind not in ("auto", detected):
            raise ConfigError(f"{path} holds a {detected} generator, not {kind}")
        for name in PATH_OPTIONS:
            if options.get(name) is not None:
                options[name] = str(Path(options[name]).resolve())
        load = dict(path=str(Path(path).resolve()), kind=detected, device=device,
                    precision=precision, **options)
        # 2. Join (or start) Ray, and size the workers to the cluster.
        self._started_ray = not ray_module.is_initialized()
        if self._started_ray:
            # a run sends nothing anywhere: no usage report from a Ray instance it starts
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray_module.init(address=None if ray is True else str(ray))
        try:
            self.ray_workers, self.ray_gpus_per_worker, self.ray_cpus_per_worker = _size(
                ray_module.cluster_resources(), workers=ray_workers, gpus=ray_gpus_per_worker,
                cpus=1.0 if ray_cpus_per_worker is None else ray_cpus_per_worker)
            # 3. One actor per worker; each loads the model once, then describes it.
            actor = ray_module.remote(_GenerationWorker).options(
                num_cpus=self.ray_cpus_per_worker, num_gpus=self.ray_gpus_per_worker,
                max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, max_concurrency=2)
            self.actors = [actor.remote(i, load) for i in range(self.ray_workers)]
            try:
                self.workers = ray_module.get([a.describe.remote() for a in self.actors])
            except Exception as error:
                raise _library_error(error) from None
        except BaseException:
            self.close()
            raise
        self.address = ray_module.get_runtime_context().gcs_address
        # 4. Answer for the workers: they must all have loaded the same generator.
        first = self.workers[0]
        different = [w for w in self.workers if w["info"] != first["info"]]
        if different:
            self.close()
            raise ConfigError(
                f"the Ray workers loaded different generators ({first['node']}: "
                f"{first['info'].get('model_hash')}, {different[0]['node']}: "
                f"{different[0]['info'].get('model_hash')}); put the model at one path that "
                "every node sees, with the same files")
        for name in ("backend_name", "uses_prompts", "supports_source_images", "batch_size",
                     "device", "native_color_mode", "dtype", "runtime"):
            setattr(self, name, first[name])
        self.native_size = None if first["native_size"] is None else tuple(first["native_size"])
        for name, value in first["settings"].items():
            setattr(self, name, value)
        self._class_names = (None if first["class_names"] is None
                             else tuple(first["class_names"]))
        self._next = 0

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self._class_names

    def info(self) -> dict:
        return dict(self.workers[0]["info"])

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedImage]:
        """One batch on one worker (the workers take turns)."""
        ray = require_ray()
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        try:
            return ray.get(actor.sample.remote(list(requests)))
        except Exception as error:
            raise _library_error(error) from None

    def make_producer(self, *, requests: Callable[[list[Work]], list[GenerationRequest]],
                      preparation: Preparation, times: StageTimes) -> RayProducer:
        """The producer ``generate_cache`` uses instead of sampling in its own process."""
        return RayProducer(self, requests=requests, preparation=preparation, times=times)

    def close(self) -> None:
        """Stop the workers (and the Ray instance, when this backend started it)."""
        import ray

        for actor in getattr(self, "actors", ()):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()


PLACEMENTS["ray"] = RayBackend


def _size(resources: dict, *, workers, gpus, cpus) -> tuple[int, float, float]:
    """Workers, GPUs and CPUs per worker: the defaults filled in from the cluster's
    resources, and a request the cluster cannot hold refused (it would wait forever)."""
    have_gpus, have_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if gpus is None:
        gpus = 1.0 if have_gpus >= 1 else 0.0
    gpus, cpus = float(gpus), float(cpus)
    if gpus < 0 or cpus < 0:
        raise ConfigError("`ray_gpus_per_worker` and `ray_cpus_per_worker` must not be negative")
    if workers is not None and workers < 1:
        raise ConfigError(f"`ray_workers` must be at least 1, got {workers}")
    fits = min(int(have_gpus // gpus) if gpus else 1 << 30,
               int(have_cpus // cpus) if cpus else 1 << 30)
    if workers is None:
        if fits == 1 << 30:
            raise ConfigError("give `ray_workers` when workers ask for no CPU and no GPU")
        workers = fits
    if workers < 1 or workers > fits:
        raise ConfigError(
            f"the Ray cluster has {have_cpus:g} CPU(s) and {have_gpus:g} GPU(s): "
            f"{max(workers, 1)} worker(s) of {cpus:g} CPU and {gpus:g} GPU do not fit; lower "
            "`ray_workers`, `ray_cpus_per_worker` or `ray_gpus_per_worker`, or add nodes")
    return int(workers), gpus, cpus


def _library_error(error: BaseException) -> BaseException:
    """A genaug error raised on a worker, as it was raised there (one line for the CLI)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, GenaugError) else error


class RayProducer:
    """Sends each job to the least busy worker; the worker samples it, prepares it
    (:class:`Preparation`: normalising, stateless gates, hashes, PNG encoding) and returns the
    PNG files with their verdicts. ``depth`` keeps two jobs in flight per worker, so each
    samples one while it prepares the other.

    The preparation (with the gate chain) goes to the object store once per run; each worker
    fetches it once. Per-worker counts feed the progress bar and the summary.
    """

    def __init__(self, backend: RayBackend, *, requests: Callable, preparation: Preparation,
                 times: StageTimes):
        import ray

        self.backend, self.requests, self.times = backend, requests, times
        self.depth = max(PIPELINE_DEPTH, 2 * len(backend.actors))
        self._preparation = [ray.put(preparation)]  # in a list: the workers fetch it once
        self._lock = threading.Lock()
        self._in_flight: dict[Future, object] = {}
        self._load = [0] * len(backend.actors)
        self._started = time.perf_counter()
        self._stats = [{"worker": w["worker"], "node": w["node"], "device": w["device"],
                        "gpu_ids": w["gpu_ids"], "jobs": 0, "images": 0, "busy_seconds": 0.0,
                        "pids": {w["pid"]}} for w in backend.workers]

    def submit(self, job: list[Work]) -> Future:
        requests = self.requests(job)
        with self._lock:
            index = min(range(len(self._load)), key=lambda i: (self._load[i], i))
            self._load[index] += 1
        ref = self.backend.actors[index].run.remote(
            requests, self._preparation, fixed_shape=self.backend.fixed_shape,
            kill_switch=KILL_SWITCH)
        result: Future = Future()
        with self._lock:
            self._in_flight[result] = ref
        ref.future().add_done_callback(
            lambda done: self._arrived(index, job, result, done))
        return result

    def _arrived(self, index: int, job: list[Work], result: Future, done: Future) -> None:
        with self._lock:
            self._load[index] -= 1
            self._in_flight.pop(result, None)
        if not result.set_running_or_notify_cancel():
            return  # abandoned
        try:
            out = done.result()
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            result.set_exception(_job_error(error, self._stats[index]))
            return
        stats = self._stats[index]
        with self._lock:
            stats["jobs"] += 1
            stats["images"] += len(out["made"])
            stats["busy_seconds"] += out["sampling"] + out["preparing"]
            stats["pids"].add(out["pid"])
        self.times.add("sampling", out["sampling"])
        self.times.add("gates", out["preparing"])
        result.set_result([Candidate(item, attempt, png, provenance, prepared)
                           for (item, attempt), (png, provenance, prepared)
                           in zip(job, out["made"])])

    def rates(self) -> str:
        """Images per second of each worker so far, for the progress bar."""
        seconds = max(time.perf_counter() - self._started, 1e-9)
        return " ".join(f"w{s['worker']} {s['images'] / seconds:.1f}/s" for s in self._stats)

    def report(self) -> dict:
        """The cluster's share of the summary: per worker, where it ran and what it made."""
        seconds = max(time.perf_counter() - self._started, 1e-9)
        with self._lock:
            workers = [{**{k: v for k, v in s.items() if k != "pids"},
                        "busy_seconds": round(s["busy_seconds"], 3),
                        "images_per_second": round(s["images"] / seconds, 3),
                        "restarts": len(s["pids"]) - 1} for s in self._stats]
        return {"ray_address": self.backend.address, "ray_workers": len(workers),
                "ray_gpus_per_worker": self.backend.ray_gpus_per_worker,
                "ray_cpus_per_worker": self.backend.ray_cpus_per_worker,
                "workers": workers}

    def abandon(self) -> None:
        """Drop the jobs not back yet (Ctrl-C): their futures are cancelled, so the consumer
        skips them, and their remote work is cancelled where it has not started."""
        import ray

        with self._lock:
            in_flight = list(self._in_flight.items())
        for result, ref in in_flight:
            if result.cancel():
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - finished meanwhile
                    pass

    def close(self) -> None:
        self.abandon()
        self._preparation = []


def _job_error(error: BaseException, stats: dict) -> BaseException:
    """What a failed job raises on the driver: a genaug error as the worker raised it; a
    worker that kept dying (Ray gave up restarting it) as one line; anything else as is."""
    from ray.exceptions import RayActorError

    if not isinstance(error, RayActorError):
        return _library_error(error)
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return GenerationError(
        f"Ray worker {stats['worker']} on {stats['node']} died and was restarted "
        f"{MAX_RESTARTS} times without finishing a job ({detail}); a batch too large for its "
        "memory is the usual cause: lower `batch_size`")


class _GenerationWorker:
    """One Ray actor: loads the generator once, then samples and prepares whole jobs. Two
    calls may run at once (``max_concurrency=2``): one samples on the device (a lock keeps
    the backend to one thread) while the other prepares its images.

    A load error is kept and raised by every call, so the driver sees it as it was raised.
    """

    def __init__(self, index: int, load: dict):
        from genaug.generation._backends import load_backend

        self.index, self.pid = index, os.getpid()
        self._device = threading.Lock()
        self._fetching = threading.Lock()
        self._preparation: tuple[str | None, Preparation | None] = (None, None)
        self.backend, self.error = None, None
        try:
            self.backend = load_backend(**load)
        except Exception as error:  # noqa: BLE001 - raised by every call
            self.error = error

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def describe(self) -> dict:
        import ray

        from genaug.generation._generate import _backend_settings
        from genaug.generation._utils import device_report
        from genaug.io import package_versions

        self._check()
        backend = self.backend
        native = backend.native_size
        return {
            "worker": self.index, "pid": self.pid, "node": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "info": backend.info(),
            "backend_name": backend.backend_name, "uses_prompts": backend.uses_prompts,
            "supports_source_images": backend.supports_source_images,
            "batch_size": backend.batch_size, "device": backend.device,
            "native_size": None if native is None else list(native),
            "native_color_mode": backend.native_color_mode,
            "class_names": None if backend.class_names is None else list(backend.class_names),
            "dtype": str(getattr(backend, "dtype", None)).replace("torch.", ""),
            "runtime": getattr(backend, "runtime", "eager"),
            "settings": _backend_settings(backend),
            "device_report": device_report(backend.device), "versions": package_versions(),
        }

    def sample(self, requests: list[GenerationRequest]) -> list[GeneratedImage]:
        self._check()
        with self._device:
            return self.backend.generate_batch(requests)

    def run(self, requests: list[GenerationRequest], preparation: list, *,
            fixed_shape: bool = False, kill_switch: str | None = None) -> dict:
        """Sample one job and prepare it: ``{"made": [(png, provenance, prepared)], ...}``.

        ``fixed_shape`` comes with every job (not once per run): a restarted worker has
        loaded its backend afresh."""
        self._check()
        prepare = self._fetch(preparation[0])
        with self._device:  # the other call may be sampling: not counted as this one's
            started = time.perf_counter()
            self.backend.fixed_shape = fixed_shape
            made = self.backend.generate_batch(requests)
            sampled = time.perf_counter()
        if kill_switch:
            _die_once(kill_switch)
        prepared = prepare(made, [r.class_name for r in requests])
        return {"pid": self.pid, "sampling": sampled - started,
                "preparing": time.perf_counter() - sampled,
                "made": [(png, m.provenance, verdict)
                         for m, (_, png, verdict) in zip(made, prepared)]}

    def _fetch(self, ref) -> Preparation:
        """The run's preparation, fetched from the object store once per run."""
        import ray

        with self._fetching:
            if self._preparation[0] != ref.hex():
                self._preparation = (ref.hex(), ray.get(ref))
            return self._preparation[1]


def _die_once(path: str) -> None:
    try:
        os.unlink(path)  # only one worker wins the file
    except FileNotFoundError:
        return
    os._exit(1)
