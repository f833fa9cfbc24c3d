"""The generate run: plan entries -> backend -> quality gates -> retries -> the cache.

Decisions are sequential in plan order within a class: an image is compared (near-duplicate
gate) with the images accepted before it, and a rejected image is retried with a new
deterministic seed before the class's next entry is decided. Images are produced in batches
that mix the classes round-robin (in proportion to what each still needs), while the
previous batch is gated and written (:mod:`genaug.generation._pipeline`). Because every
image depends only on its seed, the cache does not depend on the batching, and a run that
was interrupted, stopped by its time budget and started again makes exactly the decisions of
an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.cache import (
    ENV_REPORT,
    GENERATION_RUN,
    GENERATION_SUMMARY,
    REJECTIONS_LOG,
    CacheWriter,
    RejectionLog,
    SyntheticCache,
    read_rejections,
)
from genaug.exceptions import CacheError, ConfigError, GateAcceptanceWarning
from genaug.generation._base import GenerationRequest, GeneratorBackend
from genaug.generation._gates import GateChain, GateSpec, VerifierGate, real_image_loader
from genaug.generation._pipeline import (
    Candidate,
    LocalProducer,
    OrderedConsumer,
    Preparation,
    StageTimes,
    Work,
    WorkQueue,
    interleave,
)
from genaug.generation._plan import GenerationPlan, PlanItem, is_variation, split_like_train
from genaug.generation._summary import summarize
from genaug.generation._utils import (
    canonical_sha256,
    derive_seed,
    device_report,
    normalize_image,
    progress_bar,
)
from genaug.io import package_versions

SEED_RULE = ("attempt 0: sha256([plan_seed, class, index, 0]); retry k: "
             "sha256([plan_seed, class, index, k]); first 31 bits")


def generate_cache(
    plan: GenerationPlan | str | Path,
    *,
    backend: GeneratorBackend,
    cache_dir,
    gates: GateSpec | GateChain | None = None,
    max_retries: int = 3,
    image_size: tuple[int, int] | int | None = None,
    color_mode: str | None = None,
    batch_size: int | None = None,
    img2img_fraction: float = 0.0,
    data=None,
    max_seconds: float | None = None,
    workers: int | None = None,
    progress: bool = True,
    parameters: dict | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Generate the plan's images into a verified, resumable synthetic cache.

    Parameters
    ----------
    plan : GenerationPlan or path-like
    backend : GeneratorBackend
        From :func:`load_backend` (with ``ray=...``, the jobs run on the workers of a Ray
        cluster; the cache is the same as this process would make).
    cache_dir : path-like
        The cache (created if needed; an existing one is resumed).
    gates : GateSpec or GateChain, optional
        The settings of the standard chain (default: ``GateSpec()``), or a ready chain. The
        selection gate of ``select_model`` (feature distance or class margin) and the
        pixel-statistics gate measure against the real images of the plan's data (embedded
        once per class and run): its training split when the plan records one (a plan of
        variations), else all of them; give the plan a folder of training images only to
        keep held-out images out of these statistics.
    max_retries : int, default 3
        A rejected image is made again with a new deterministic seed at most this many times.
    image_size : int or (h, w), optional
        Output size (default: the real images' most common size, else the generator's).
    color_mode : {"grayscale", "rgb"}, optional
        Output colour mode (default: the real images' majority mode, else the generator's).
    batch_size : int, optional
        Images per generator call (default: the backend's, larger on CUDA). A batch mixes
        the classes in proportion to what each still needs.
    img2img_fraction : float, default 0
        Share of each class's images made as variations of its real images (``source_id``
        recorded); classes without real images are always generated from scratch.
    data : path-like, optional
        The real data, when it moved since the plan was made.
    max_seconds : float, optional
        Stop starting new batches after this many seconds; what is made by then is decided
        and written, every class partly filled, and a later run continues.
    workers : int, optional
        Threads that normalise, gate, hash and encode batches while the next one samples
        (default: up to 4, one per CPU core; on Ray the workers do this work).
    parameters : dict, optional
        Everything the caller wants in ``env_report.json`` (e.g. the command line options).
    echo : callable, optional
        Receives one-line messages (warnings are raised as Python warnings without it).

    Returns
    -------
    dict
        The summary also written to ``<cache>/generation_summary.json``, with the seconds
        spent sampling, gating, writing and waiting under ``time_split`` (on Ray, sampling
        and gating are summed over the workers, and ``cluster`` gives each worker's node,
        device, images and rate).
    """
    if not isinstance(plan, GenerationPlan):
        plan = GenerationPlan.load(plan)
    run = _GenerationRun(plan, backend=backend, cache_dir=Path(cache_dir),
                         gates=GateSpec() if gates is None else gates,
                         max_retries=max_retries, image_size=image_size,
                         color_mode=color_mode, batch_size=batch_size,
                         img2img_fraction=img2img_fraction, data=data,
                         max_seconds=max_seconds, workers=workers, progress=progress,
                         parameters=parameters, echo=echo)
    return run()


@dataclass
class _ClassState:
    """One class's pending entries, decided in plan order by the ordered consumer."""

    items: list[PlanItem]
    cursor: int = 0
    attempt: int = 0
    ready: dict[tuple[int, int], Candidate] = field(default_factory=dict)
    requested: set[tuple[int, int]] = field(default_factory=set)


@dataclass(frozen=True)
class _RealData:
    """Step 1's result: the output's size and colour mode, and the real images by class."""

    image_size: tuple[int, int]
    color_mode: str
    #: the classes the plan still asks images of
    todo_classes: tuple[str, ...]
    paths: dict[str, list[str]]
    ids: dict[str, list[str]]
    path_by_id: dict[str, str]
    #: the real images the selection and pixel-statistics gates measure against
    training_paths: dict[str, list[str]]
    #: each class's seeded order of the real images that variations start from
    source_order: dict[str, np.ndarray]


@dataclass(frozen=True)
class _OpenCache:
    """Step 3's result: the locked cache and what earlier runs decided."""

    writer: CacheWriter
    #: whether this run made the folder (removed again when the run writes nothing)
    created: bool
    existing: dict[str, dict]
    rejections: RejectionLog
    logged_before: int


class _GenerationRun:
    """One :func:`generate_cache` call. :meth:`__call__` lists its steps, each returning
    what the next ones need; the sampling loop runs in the calling thread, :meth:`_commit`
    in the ordered consumer's."""

    def __init__(self, plan: GenerationPlan, *, backend: GeneratorBackend, cache_dir: Path,
                 gates: GateSpec | GateChain, max_retries: int, image_size, color_mode,
                 batch_size, img2img_fraction: float, data, max_seconds, workers,
                 progress: bool, parameters, echo):
        if max_retries < 0:
            raise ConfigError(f"`max_retries` must not be negative, got {max_retries}")
        if not 0.0 <= img2img_fraction <= 1.0:
            raise ConfigError(f"`img2img_fraction` must be in [0, 1], got {img2img_fraction}")
        if img2img_fraction and not backend.supports_source_images:
            raise ConfigError(f"the {backend.backend_name} backend cannot make variations")
        if max_seconds is not None and not max_seconds > 0:
            raise ConfigError(f"`max_seconds` must be positive, got {max_seconds}")
        if workers is not None and workers < 1:
            raise ConfigError(f"`workers` must be at least 1, got {workers}")
        self.job_size = int(batch_size or backend.batch_size)
        if self.job_size < 1:
            raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
        self.plan, self.backend, self.cache_dir = plan, backend, cache_dir
        self.gate_settings = gates
        self.max_retries, self.img2img_fraction = int(max_retries), float(img2img_fraction)
        self.asked_size, self.asked_color_mode = image_size, color_mode
        self.data_source, self.max_seconds = data, max_seconds
        self.workers = int(workers or min(4, os.cpu_count() or 1))
        self.progress, self.parameters = progress, parameters
        self.echo = echo
        self.say = echo or (lambda message: None)
        self.started = datetime.now(timezone.utc)
        self.clock = time.perf_counter()
        self.times = StageTimes()
        self.messages: list[str] = []
        self.stopped_by: str | None = None
        self.producer = None
        self.accepted = self.rejected = 0

    def __call__(self) -> dict:
        # 1. Read the real data: output size and colour mode, the sources of variations.
        self.real = self._read_data()
        # 2. Build the gate chain and the fingerprint a resumed run must match.
        self.gates = self._build_gates(self.real)
        self.preparation = Preparation(self.real.image_size, self.real.color_mode, self.gates)
        self.fingerprint = self._fingerprint(self.real, self.gates)
        # 3. Open the cache: lock it, refuse other settings, read earlier runs' decisions.
        self.cache = self._open_cache(self.fingerprint)
        failed, interrupted = True, False
        try:
            # 4. Order what is left round-robin across classes (earlier images registered).
            self.classes, self.bar, first_attempts = self._order_work()
            # 5. Sample, prepare and commit, overlapped, until done or out of time.
            self._produce(first_attempts)
            failed = False
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            # 6. Close the cache and write the summary and the environment report.
            summary = self._close(failed=failed, interrupted=interrupted)
        return summary

    # -- 1. the real data ----------------------------------------------------------------
    def _read_data(self) -> _RealData:
        from genaug.data import DatasetIndex
        from genaug.generation._ddpm_fit import infer_color_mode

        plan, backend = self.plan, self.backend
        source = self.data_source if self.data_source is not None else plan.data
        index = None
        if source is not None:
            with warnings.catch_warnings():  # the plan chose its classes on purpose
                warnings.filterwarnings("ignore", message="folders not in class_names")
                index = DatasetIndex.load(source, class_names=plan.class_names, validate=True)
            changed = [f"{c} ({plan.classes[c]['current']} -> {int(n)})"
                       for c, n in zip(index.class_names, index.counts())
                       if c in plan.classes and int(n) != plan.classes[c]["current"]]
            if changed:
                self.say(f"warning: the data changed since the plan was made: "
                         f"{', '.join(changed)}")
        size = self.asked_size
        if isinstance(size, int):
            size = (size, size)
        size = tuple(size) if size else (_modal_size(index) or backend.native_size)
        if size is None:
            raise ConfigError("give `image_size`: neither real images nor the generator fix it")
        mode = self.asked_color_mode
        if mode is None:
            mode = (infer_color_mode(index) if index is not None and len(index)
                    else backend.native_color_mode)
        if mode not in ("grayscale", "rgb"):
            raise ConfigError(f"`color_mode` must be grayscale or rgb, got {mode!r}")
        todo = tuple(c for c in plan.class_names if plan.classes[c]["generate"] > 0)
        impossible = [c for c in todo if not backend.can_generate(c)]
        if impossible:
            raise ConfigError(
                f"the {backend.backend_name} generator cannot make class(es) "
                f"{', '.join(impossible)} (it knows {', '.join(backend.class_names or ())}); "
                "a class with no real image needs a prompt-driven generator (`sd_model`)")
        paths: dict[str, list[str]] = {c: [] for c in plan.class_names}
        ids: dict[str, list[str]] = {c: [] for c in plan.class_names}
        if index is not None:
            for path, label, rid in zip(index.paths, index.labels, index.ids):
                paths[index.class_names[label]].append(path)
                ids[index.class_names[label]].append(rid)
        path_by_id = {rid: path for class_paths, class_ids in zip(paths.values(), ids.values())
                      for path, rid in zip(class_paths, class_ids)}
        training_paths = self._training_paths(index, paths)
        self._check_variation_plan(todo, path_by_id)
        source_order = {
            c: np.random.default_rng(derive_seed(plan.seed, c, "sources")).permutation(
                len(class_paths)) for c, class_paths in paths.items() if class_paths}
        return _RealData(image_size=(int(size[0]), int(size[1])), color_mode=mode,
                         todo_classes=todo, paths=paths, ids=ids, path_by_id=path_by_id,
                         training_paths=training_paths, source_order=source_order)

    def _training_paths(self, index, paths: dict[str, list[str]]) -> dict[str, list[str]]:
        """Each class's real training images: the plan's training split when it records one
        (a plan of variations), else all of the real images."""
        split = (self.plan.variation or {}).get("split")
        if index is None or split is None:
            return paths
        train = split_like_train(index, val_split=split["val_split"],
                                 test_split=split["test_split"], seed=split["seed"]).train
        return {c: list(train.paths_by_class().get(c, ())) for c in self.plan.class_names}

    def _check_variation_plan(self, todo_classes: tuple[str, ...],
                              path_by_id: dict[str, str]) -> None:
        """A plan of variations needs its source images and a backend noising them as much
        as the plan says."""
        variation = self.plan.variation
        if variation is None:
            return
        if self.img2img_fraction:
            raise ConfigError("the plan already makes variations of real images; leave "
                              "`img2img_fraction` at 0")
        if not self.backend.supports_source_images:
            raise ConfigError(f"the plan makes variations of real images, which the "
                              f"{self.backend.backend_name} backend cannot")
        if getattr(self.backend, "strength", None) != float(variation["strength"]):
            raise ConfigError(f"the plan makes variations at strength {variation['strength']} "
                              f"but the backend noises them to {self.backend.strength}; load "
                              f"it with strength={variation['strength']}")
        missing = sorted({rid for name in todo_classes for rid in
                          self.plan.classes[name]["source_ids"]} - set(path_by_id))
        if missing:
            raise ConfigError(f"{len(missing)} source image(s) of the plan are not in the data "
                              f"(first: {missing[0]}); make the plan again")

    # -- 2. gates and fingerprint --------------------------------------------------------
    def _build_gates(self, real: _RealData) -> GateChain:
        gates = self.gate_settings
        if isinstance(gates, GateSpec):
            gates = gates.build(
                class_names=self.plan.class_names,
                reference_images=real_image_loader(real.paths, image_size=real.image_size,
                                                   color_mode=real.color_mode),
                training_images=real_image_loader(real.training_paths,
                                                  image_size=real.image_size,
                                                  color_mode=real.color_mode))
        for gate in gates.gates:
            if isinstance(gate, VerifierGate):
                gate.bind_classes(self.plan.class_names)
        return gates

    def _fingerprint(self, real: _RealData, gates: GateChain) -> dict:
        fingerprint = {
            "plan_sha256": self.plan.sha256,
            "generator": {k: self.backend.info().get(k) for k in ("backend", "model_hash")},
            "backend_settings": _backend_settings(self.backend),
            "image_size": list(real.image_size),
            "color_mode": real.color_mode,
            "max_retries": self.max_retries,
            "img2img_fraction": self.img2img_fraction,
            "gates": [{k: g[k] for k in ("name", "threshold", "type")}
                      for g in gates.describe()],
        }
        lora = self.backend.info().get("lora_sha256")
        if lora:  # resuming with another adapter, or none, fails
            fingerprint["generator"]["lora_sha256"] = lora
        return fingerprint

    # -- 3. the cache --------------------------------------------------------------------
    def _open_cache(self, fingerprint: dict) -> _OpenCache:
        created = not self.cache_dir.exists()
        writer = None
        try:
            # the writer locks the cache first: nothing is read while another run writes
            writer = CacheWriter(self.cache_dir)
            existing = {r["id"]: r for r in SyntheticCache(self.cache_dir).records}
            _check_run(self.cache_dir, fingerprint, empty=not existing)
            rejections = RejectionLog(self.cache_dir)
        except BaseException:
            if writer is not None:
                writer.close()
            if created:
                shutil.rmtree(self.cache_dir, ignore_errors=True)
            raise
        return _OpenCache(writer=writer, created=created, existing=existing,
                          rejections=rejections, logged_before=len(rejections.entries))

    # -- 4. the order of the work ----------------------------------------------------------
    def _order_work(self) -> tuple[dict[str, _ClassState], object, list[Work]]:
        """Each class's pending entries, the progress bar, and the first attempts in
        round-robin order."""
        exhausted = {e["id"] for e in self.cache.rejections.entries if e.get("exhausted")}
        classes: dict[str, _ClassState] = {}
        total = left = 0
        for class_name in self.real.todo_classes:
            items = self.plan.items(class_name)
            pending = [it for it in items if it.record_id not in self.cache.existing
                       and it.record_id not in exhausted]
            total, left = total + len(items), left + len(pending)
            if not pending:
                continue
            # earlier runs' accepted images take part in the near-duplicate checks
            self.gates.register_many(self._accepted_images(items), class_name)
            classes[class_name] = _ClassState(
                pending, requested={(it.index, 0) for it in pending})
        bar = progress_bar(total=total, initial=total - left, desc="generate",
                           enabled=self.progress)
        return classes, bar, interleave({c: [(it, 0) for it in state.items]
                                         for c, state in classes.items()})

    def _accepted_images(self, items: list[PlanItem]) -> list[np.ndarray]:
        images = []
        for item in items:
            record = self.cache.existing.get(item.record_id)
            if record is None:
                continue
            try:
                with Image.open(self.cache_dir / record["path"]) as image:
                    images.append(normalize_image(np.asarray(image), self.real.image_size,
                                                  self.real.color_mode))
            except Exception:  # noqa: BLE001 - a damaged file is reported by the integrity pass
                continue
        return images

    # -- 5. sample, prepare, commit ----------------------------------------------------------
    def _produce(self, first_attempts: list[Work]) -> None:
        self.work = WorkQueue(first_attempts, job_size=self.job_size)
        # one batch shape for the run, so no image depends on the batch it was sampled in
        shaped = getattr(self.backend, "fixed_shape", None)
        if shaped is not None:
            self.backend.fixed_shape = True
        self.producer = producer = self._producer()
        consumer = OrderedConsumer(self._commit, work=self.work, depth=producer.depth,
                                   times=self.times)
        try:
            while (job := self.work.next_job(stop=self._out_of_time,
                                             times=self.times)) is not None:
                consumer.put(producer.submit(job))
                self._emit_messages()
        except BaseException:
            self.work.close()
            producer.abandon()  # remote jobs not back yet are dropped, not waited for
            raise
        finally:
            try:
                consumer.close()  # decides every job already made (and not abandoned)
            finally:
                producer.close()
                if shaped is not None:
                    self.backend.fixed_shape = shaped
                self._emit_messages()
                self.bar.close()

    def _producer(self):
        """Sampling in this process, or where the backend samples: a backend with workers
        elsewhere (``load_backend(..., ray=...)``) makes its own producer."""
        make = getattr(self.backend, "make_producer", None)
        if make is not None:
            return make(requests=self._requests, preparation=self.preparation,
                        times=self.times)
        return LocalProducer(self._sample, self._prepare, workers=self.workers,
                             times=self.times)

    def _out_of_time(self) -> bool:
        if self.max_seconds is not None and time.perf_counter() - self.clock >= self.max_seconds:
            self.stopped_by = "max_seconds"
        return self.stopped_by is not None

    def _sample(self, job: list[Work]):
        """The device's part: one generator call for the whole job."""
        return self.backend.generate_batch(self._requests(job))

    def _requests(self, job: list[Work]) -> list[GenerationRequest]:
        return [self._request(item, attempt) for item, attempt in job]

    def _request(self, item: PlanItem, attempt: int) -> GenerationRequest:
        prompts = self.backend.uses_prompts
        request = GenerationRequest(
            class_name=item.class_name, seed=item.seed_for(attempt),
            prompt=item.prompt if prompts else None,
            negative_prompt=item.negative_prompt if prompts else None,
            attributes=dict(item.attributes))
        sources = self.real.paths.get(item.class_name)
        source_id = item.source_id  # the plan chose a training image
        if source_id is None and sources and self.img2img_fraction and is_variation(
                item.index, self.img2img_fraction):
            pick = int(self.real.source_order[item.class_name][item.index % len(sources)])
            source_id = self.real.ids[item.class_name][pick]
        if source_id is not None:
            from genaug.data import load_image

            native = "rgb" if self.backend.native_color_mode == "rgb" else "grayscale"
            request.source_image = load_image(self.real.path_by_id[source_id],
                                              color_mode=native)
            request.source_id = source_id
        return request

    def _prepare(self, job: list[Work], made) -> list[Candidate]:
        """The CPU part that needs no order: normalising, stateless gates, hashes, PNGs."""
        prepared = self.preparation(made, [item.class_name for item, _ in job])
        return [Candidate(item, attempt, png, m.provenance, verdict, image)
                for (item, attempt), m, (image, png, verdict) in zip(job, made, prepared)]

    def _commit(self, candidates: list[Candidate]) -> None:
        """The ordered consumer: file the candidates, decide what is now decidable."""
        touched = []
        for candidate in candidates:
            state = self.classes[candidate.item.class_name]
            state.ready[candidate.key] = candidate
            if (not candidate.prepared.stateless_passed
                    and candidate.attempt < self.max_retries):  # rejected whatever comes
                self._ask(state, candidate.item, candidate.attempt + 1)
            touched.append(candidate.item.class_name)
        for class_name in dict.fromkeys(touched):
            self._decide(class_name, self.classes[class_name])
        self.messages.extend(self.gates.new_collapse_messages())
        self.bar.set_postfix_str(self._postfix())

    def _postfix(self) -> str:
        """The progress bar's tail: decisions so far, time per stage, each worker's rate."""
        parts = [f"accepted {self.accepted} rejected {self.rejected}", self.times.postfix()]
        rates = getattr(self.producer, "rates", None)
        if rates is not None:
            parts.append(rates())
        return " | ".join(parts)

    def _ask(self, state: _ClassState, item: PlanItem, attempt: int) -> None:
        if (item.index, attempt) not in state.requested:
            state.requested.add((item.index, attempt))
            self.work.retry((item, attempt))

    def _decide(self, class_name: str, state: _ClassState) -> None:
        while state.cursor < len(state.items):
            item = state.items[state.cursor]
            candidate = state.ready.pop((item.index, state.attempt), None)
            if candidate is None:
                return  # asked for; decided when it arrives
            with self.times.timed("gates"):
                passed, quality = self.gates.finish(candidate.image, class_name,
                                                    candidate.prepared)
            with self.times.timed("writing"):
                if passed:
                    self._write(candidate, quality)
                    self.accepted += 1
                else:
                    self.rejected += 1
                    self.cache.rejections.append({
                        "id": item.record_id, "class": class_name, "plan_index": item.index,
                        "attempt": state.attempt + 1,
                        "seed": candidate.provenance.get("seed"), "quality": quality,
                        "exhausted": state.attempt == self.max_retries})
            if passed or state.attempt == self.max_retries:
                state.cursor, state.attempt = state.cursor + 1, 0
                self.bar.update(1)
            else:
                state.attempt += 1
                self._ask(state, item, state.attempt)

    def _write(self, candidate: Candidate, quality: dict) -> None:
        item = candidate.item
        fields = dict(candidate.provenance)
        fields.update(attributes=dict(item.attributes), quality=quality,
                      attempts=candidate.attempt + 1, plan_index=item.index)
        if self.backend.uses_prompts:
            fields["prompt_set_sha256"] = self.plan.prompt_set_sha256
        self.cache.writer.add(candidate.png, class_name=item.class_name,
                        record_id=item.record_id, **fields)

    def _emit_messages(self) -> None:
        while self.messages:
            message = self.messages.pop(0)
            if self.echo:
                self.say("WARNING: " + message)
            else:
                warnings.warn(message, GateAcceptanceWarning, stacklevel=2)

    # -- 6. close and report -----------------------------------------------------------------
    def _close(self, *, failed: bool, interrupted: bool) -> dict | None:
        wrote_nothing = False
        try:
            self.cache.rejections.close()
            wrote_nothing = (not self.cache.existing and not self.cache.writer.existing_ids()
                             and len(self.cache.rejections.entries) == self.cache.logged_before)
            if failed and wrote_nothing:
                return None
            return self._write_reports(interrupted=interrupted)
        finally:
            try:
                self.cache.writer.close()  # the lock is held until the reports are written
            finally:
                if failed and wrote_nothing and self.cache.created:
                    # nothing to resume: leave no folder that would block a run with new
                    # settings
                    shutil.rmtree(self.cache_dir, ignore_errors=True)

    def _write_reports(self, *, interrupted: bool) -> dict:
        from genaug.io import atomic_write_bytes

        cache = SyntheticCache(self.cache_dir, class_names=self.plan.class_names)
        problems = cache.verify_files(image_size=self.real.image_size,
                                      color_mode=self.real.color_mode).lines()
        integrity = {"checked": len(cache.records), "ok": not problems, "problems": problems}
        summary = summarize(self.plan, cache.records, read_rejections(self.cache_dir))
        all_done = all(c["pending"] == 0 for c in summary["classes"].values())
        seconds = time.perf_counter() - self.clock
        accepted_now = len(self.cache.writer.existing_ids()) - len(self.cache.existing)
        summary.update(
            complete=bool(not interrupted and all_done and integrity["ok"]),
            interrupted=interrupted,
            stopped_by="interrupt" if interrupted else self.stopped_by,
            cache=str(self.cache_dir),
            image_size=list(self.real.image_size),
            color_mode=self.real.color_mode,
            generator=self.backend.info(),
            gates=self.gates.describe(),
            integrity=integrity,
            this_run_acceptance=self.gates.acceptance_rates(),
            seconds=round(seconds, 2),
            time_split=self.times.as_dict(),
            accepted_per_second=round(accepted_now / max(seconds, 1e-9), 2),
        )
        report = getattr(self.producer, "report", None)
        if report is not None:
            summary["cluster"] = report()
        if problems:
            self.say(f"integrity: {len(problems)} problem(s): " + "; ".join(problems[:3]))
        atomic_write_bytes(self.cache_dir / GENERATION_SUMMARY,
                           (json.dumps(summary, indent=2, default=str) + "\n").encode())
        atomic_write_bytes(self.cache_dir / ENV_REPORT,
                           (json.dumps(self._environment(summary), indent=2, default=str)
                            + "\n").encode())
        return summary

    def _environment(self, summary: dict) -> dict:
        backend, plan = self.backend, self.plan
        device = device_report(backend.device)
        cluster = summary.get("cluster")
        if cluster:  # the workers' devices and packages, as each reported its own
            described = {w["worker"]: w for w in backend.workers}
            cluster = {**cluster, "workers": [
                {**w, **{k: described[w["worker"]][k] for k in ("device_report", "versions")}}
                for w in cluster["workers"]]}
            device = cluster["workers"][0]["device_report"]
        environment = {
            "created": self.started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(),
            "complete": summary["complete"],
            "versions": package_versions(),
            "device": {**device,
                       "dtype": str(getattr(backend, "dtype", None)).replace("torch.", ""),
                       "sampler_runtime": getattr(backend, "runtime", "eager")},
            "generator": backend.info(),
            "backend_settings": _backend_settings(backend),
            "options": {"max_retries": self.max_retries, "image_size": list(self.real.image_size),
                        "color_mode": self.real.color_mode, "batch_size": self.job_size,
                        "img2img_fraction": self.img2img_fraction,
                        "max_seconds": self.max_seconds, "workers": self.workers,
                        "gates": self.gates.describe()},
            "parameters": self.parameters or {},
            "plan": {"sha256": plan.sha256, "data": plan.data, "seed": plan.seed,
                     "target_per_class": plan.target_per_class,
                     "prompt_set_sha256": plan.prompt_set_sha256},
            "seeds": {"plan_seed": plan.seed, "rule": SEED_RULE},
            "run_fingerprint_sha256": canonical_sha256(self.fingerprint),
        }
        if cluster:
            environment["cluster"] = cluster
        return environment


def _modal_size(index) -> tuple[int, int] | None:
    if index is None or not index.sizes:
        return None
    (width, height), _ = Counter(index.sizes).most_common(1)[0]
    return int(height), int(width)


def _backend_settings(backend: GeneratorBackend) -> dict:
    names = ("steps", "guidance_scale", "strength", "sampler_name", "height", "width",
             "lambda_min_clipped")
    return {n: getattr(backend, n) for n in names if getattr(backend, n, None) is not None}




def _check_run(cache_dir: Path, fingerprint: dict, *, empty: bool) -> None:
    """Refuse to resume a cache made with other settings, unless it holds no image: then
    there is nothing to keep, and the run starts it afresh (its rejection log too)."""
    from genaug.io import atomic_write_bytes

    path = cache_dir / GENERATION_RUN
    wanted = json.loads(json.dumps(fingerprint))
    try:
        before = json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        before = None
    if before == wanted:
        return
    if before is not None and not empty:
        keys = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
        raise CacheError(
            f"{cache_dir} was generated with different settings ({', '.join(keys)}); "
            "rerun with the same plan, generator and options to resume, or use a new "
            "`cache_dir`")
    if before is not None:
        (cache_dir / REJECTIONS_LOG).unlink(missing_ok=True)
    atomic_write_bytes(path, (json.dumps(fingerprint, indent=2) + "\n").encode())
