"""The generate loop: plan items -> backend -> quality gates -> retries -> the cache.

Decisions are sequential in plan order within a class: an image is compared (near-duplicate
gate) with the images accepted before it, and a rejected image is retried with a new
deterministic seed before the next item is decided. Images are still produced in batches:
first attempts of a chunk together, then, round by round, the retries of candidates that
failed an order-independent gate; only retries after a near-duplicate rejection are made on
demand. Because every image depends only on its seed, an interrupted run that is started
again makes exactly the decisions the uninterrupted run would have made.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.exceptions import CacheError, ConfigError
from genaug.generation._backend import GenerationRequest, GeneratorBackend
from genaug.generation._gates import (
    COLLAPSE_MIN_CHECKED,
    COLLAPSE_RATE,
    GateAcceptanceWarning,
    GateChain,
    GateResult,
    VerifierGate,
    build_gate_chain,
    collapse_message,
    real_image_loader,
)
from genaug.generation._plan import GenerationPlan, PlanItem
from genaug.generation._utils import (
    canonical_sha256,
    derive_seed,
    device_report,
    normalize_image,
    package_versions,
    progress_bar,
)

SUMMARY_FILE = "generation_summary.json"
ENV_REPORT = "env_report.json"
REJECTIONS_FILE = "generation_rejections.jsonl"
RUN_FILE = "generation_run.json"
LOCK_FILE = ".generate.lock"
STALE_TMP_SECONDS = 300
FIRST_ATTEMPT_GOAL = 0.8
SEED_RULE = ("attempt 0: sha256([plan_seed, class, index, 0]); retry k: "
             "sha256([plan_seed, class, index, k]); first 31 bits")


@dataclass
class _Candidate:
    item: PlanItem
    attempt: int
    image: np.ndarray
    provenance: dict
    partial: dict[str, GateResult]

    @property
    def stateless_passed(self) -> bool:
        return all(r.passed for r in self.partial.values())


class _AppendLog:
    """A JSON-lines file appended one fsynced line at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.entries = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash
                if isinstance(entry, dict) and "id" in entry and "attempt" in entry:
                    self.entries.append(entry)
        self._handle = None

    def append(self, entry: dict) -> None:
        if self._handle is None:
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    torn = handle.read(1) != b"\n"
                if torn:
                    with open(self.path, "ab") as handle:
                        handle.write(b"\n")
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(entry, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.entries.append(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _modal_size(index) -> tuple[int, int] | None:
    if index is None or not index.sizes:
        return None
    (width, height), _ = Counter(index.sizes).most_common(1)[0]
    return int(height), int(width)


def _backend_settings(backend: GeneratorBackend) -> dict:
    names = ("steps", "guidance_scale", "strength", "sampler_name", "height", "width",
             "lambda_min_clipped")
    return {n: getattr(backend, n) for n in names if getattr(backend, n, None) is not None}


def _is_variation(index: int, fraction: float) -> bool:
    return int(np.floor((index + 1) * fraction)) > int(np.floor(index * fraction))


def generate_cache(
    plan: GenerationPlan | str | Path,
    *,
    backend: GeneratorBackend,
    cache_dir,
    gates: GateChain | None = None,
    blur_min: float | None = 60.0,
    structure_min: float | None = 0.5,
    phash_max: int | None = 4,
    verify_model=None,
    verify_threshold: float = 0.6,
    extra_gates: Sequence = (),
    max_retries: int = 3,
    image_size: tuple[int, int] | int | None = None,
    color_mode: str | None = None,
    batch_size: int | None = None,
    img2img_fraction: float = 0.0,
    data=None,
    progress: bool = True,
    parameters: dict | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Generate the plan's images into a verified, resumable synthetic cache.

    Parameters
    ----------
    plan : GenerationPlan or path-like
    backend : GeneratorBackend
        From :func:`load_backend`.
    cache_dir : path-like
        The cache (created if needed; an existing one is resumed).
    gates : GateChain, optional
        A ready chain; otherwise the standard one is built from ``blur_min``,
        ``structure_min``, ``phash_max``,
        ``verify_model``, ``verify_threshold`` and ``extra_gates``.
    max_retries : int, default 3
        A rejected image is made again with a new deterministic seed at most this many times.
    image_size : int or (h, w), optional
        Output size (default: the real images' most common size, else the generator's).
    color_mode : {"grayscale", "rgb"}, optional
        Output colour mode (default: the real images' majority mode, else the generator's).
    batch_size : int, optional
        Images per generator call (default: the backend's, larger on CUDA).
    img2img_fraction : float, default 0
        Share of each class's images made as variations of its real images (``source_id``
        recorded); classes without real images are always generated from scratch.
    data : path-like, optional
        The real data, when it moved since the plan was made.
    parameters : dict, optional
        Everything the caller wants in ``env_report.json`` (e.g. the command line options).
    echo : callable, optional
        Receives one-line messages (warnings are raised as Python warnings without it).

    Returns
    -------
    dict
        The summary also written to ``<cache>/generation_summary.json``.
    """
    from genaug.data import DatasetIndex, load_image
    from genaug.generation._ddpm_fit import infer_color_mode
    from genaug.synthetic import CacheWriter, SyntheticCache, atomic_write_bytes

    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    if not isinstance(plan, GenerationPlan):
        plan = GenerationPlan.load(plan)
    if max_retries < 0:
        raise ConfigError(f"`max_retries` must not be negative, got {max_retries}")
    if not 0.0 <= img2img_fraction <= 1.0:
        raise ConfigError(f"`img2img_fraction` must be in [0, 1], got {img2img_fraction}")
    if img2img_fraction and not backend.supports_source_images:
        raise ConfigError(f"the {backend.backend_name} backend cannot make variations")
    say = echo or (lambda message: None)

    source = data if data is not None else plan.data
    index = None
    if source is not None:
        with warnings.catch_warnings():  # the plan chose its classes on purpose
            warnings.filterwarnings("ignore", message="folders not in class_names")
            index = DatasetIndex.load(source, class_names=plan.class_names, validate=True)
        changed = [f"{c} ({plan.classes[c]['current']} -> {int(n)})"
                   for c, n in zip(index.class_names, index.counts())
                   if c in plan.classes and int(n) != plan.classes[c]["current"]]
        if changed:
            say(f"warning: the data changed since the plan was made: {', '.join(changed)}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(image_size) if image_size else (_modal_size(index) or backend.native_size)
    if image_size is None:
        raise ConfigError("give `image_size`: neither real images nor the generator fix it")
    if color_mode is None:
        color_mode = (infer_color_mode(index) if index is not None and len(index)
                      else backend.native_color_mode)
    if color_mode not in ("grayscale", "rgb"):
        raise ConfigError(f"`color_mode` must be grayscale or rgb, got {color_mode!r}")

    todo_classes = [c for c in plan.class_names if plan.classes[c]["generate"] > 0]
    impossible = [c for c in todo_classes if not backend.can_generate(c)]
    if impossible:
        raise ConfigError(
            f"the {backend.backend_name} generator cannot make class(es) "
            f"{', '.join(impossible)} (it knows {', '.join(backend.class_names or ())}); "
            "a class with no real image needs a prompt-driven generator (`sd_model`)")

    real_paths: dict[str, list[str]] = defaultdict(list)
    real_ids: dict[str, list[str]] = defaultdict(list)
    if index is not None:
        for path, label, rid in zip(index.paths, index.labels, index.ids):
            real_paths[index.class_names[label]].append(path)
            real_ids[index.class_names[label]].append(rid)

    reference_images = real_image_loader(real_paths, image_size=image_size,
                                         color_mode=color_mode)
    if gates is None:
        gates = build_gate_chain(blur_min=blur_min, structure_min=structure_min,
                                 phash_max=phash_max,
                                 verify_model=verify_model, verify_threshold=verify_threshold,
                                 class_names=plan.class_names,
                                 reference_images=reference_images, extra_gates=extra_gates)
    for gate in gates.gates:
        if isinstance(gate, VerifierGate):
            gate.bind_classes(plan.class_names)

    cache_dir = Path(cache_dir)
    fingerprint = {
        "plan_sha256": plan.sha256,
        "generator": {k: backend.info().get(k) for k in ("backend", "model_hash")},
        "backend_settings": _backend_settings(backend),
        "image_size": list(image_size),
        "color_mode": color_mode,
        "max_retries": max_retries,
        "img2img_fraction": img2img_fraction,
        "gates": [{k: g[k] for k in ("name", "threshold", "type")} for g in gates.describe()],
    }
    chunk = int(batch_size or backend.batch_size)
    if chunk < 1:
        raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
    created = not cache_dir.exists()
    lock = _lock_cache(cache_dir)
    try:
        existing = {r["id"]: r for r in SyntheticCache(cache_dir).records}
        _check_run(cache_dir, fingerprint, empty=not existing)
        writer = CacheWriter(cache_dir)
        rejections = _AppendLog(cache_dir / REJECTIONS_FILE)
    except BaseException:
        lock.close()
        if created:
            shutil.rmtree(cache_dir, ignore_errors=True)
        raise
    logged_before = len(rejections.entries)
    warned: set = set()
    interrupted = False
    failed = True
    try:
        exhausted = {e["id"] for e in rejections.entries if e.get("exhausted")}
        for class_name in todo_classes:
            items = plan.items(class_name)
            done = [it for it in items if it.record_id in existing]
            pending = [it for it in items
                       if it.record_id not in existing and it.record_id not in exhausted]
            if not pending:
                continue
            for it in done:  # earlier runs' accepted images take part in duplicate checks
                try:
                    with Image.open(cache_dir / existing[it.record_id]["path"]) as image:
                        accepted = np.asarray(image)
                except Exception:  # noqa: BLE001 - a damaged file is reported by verify_cache
                    continue
                gates.register(normalize_image(accepted, image_size, color_mode), class_name)
            sources = real_paths.get(class_name, [])
            order = np.random.default_rng(derive_seed(plan.seed, class_name, "sources")
                                          ).permutation(len(sources)) if sources else []

            def produce(pairs, class_name=class_name, sources=sources, order=order):
                requests = []
                for item, attempt in pairs:
                    request = GenerationRequest(
                        class_name=class_name, seed=item.seed_for(attempt),
                        prompt=item.prompt if backend.uses_prompts else None,
                        negative_prompt=item.negative_prompt if backend.uses_prompts else None,
                        attributes=dict(item.attributes))
                    if sources and img2img_fraction and _is_variation(item.index,
                                                                      img2img_fraction):
                        pick = int(order[item.index % len(sources)])
                        request.source_image = load_image(
                            sources[pick], color_mode="rgb" if backend.native_color_mode
                            == "rgb" else "grayscale")
                        request.source_id = real_ids[class_name][pick]
                    requests.append(request)
                made = backend.generate_batch(requests)
                images = [normalize_image(m.image, image_size, color_mode) for m in made]
                partial = gates.evaluate_stateless(images, [class_name] * len(images))
                return [_Candidate(item, attempt, image, m.provenance, p)
                        for (item, attempt), image, m, p in zip(pairs, images, made, partial)]

            bar = progress_bar(total=len(items), initial=len(items) - len(pending),
                               desc=class_name, enabled=progress)
            try:
                for start in range(0, len(pending), chunk):
                    part = pending[start:start + chunk]
                    ready: dict[tuple[int, int], _Candidate] = {}
                    todo = [(it, 0) for it in part]
                    while todo:  # retries of order-independent rejections, batched
                        made = produce(todo)
                        ready.update({(c.item.index, c.attempt): c for c in made})
                        todo = [(c.item, c.attempt + 1) for c in made
                                if not c.stateless_passed and c.attempt < max_retries]
                    for item in part:
                        for attempt in range(max_retries + 1):
                            candidate = ready.pop((item.index, attempt), None)
                            if candidate is None:
                                candidate = produce([(item, attempt)])[0]
                            passed, quality = gates.finish(candidate.image, class_name,
                                                           candidate.partial)
                            if passed:
                                fields = dict(candidate.provenance)
                                fields.update(attributes=dict(item.attributes),
                                              quality=quality, attempts=attempt + 1,
                                              plan_index=item.index)
                                if backend.uses_prompts:
                                    fields["prompt_set_sha256"] = plan.prompt_set_sha256
                                writer.add(candidate.image, class_name=class_name,
                                           record_id=item.record_id, **fields)
                                break
                            rejections.append({
                                "id": item.record_id, "class": class_name,
                                "plan_index": item.index, "attempt": attempt + 1,
                                "seed": candidate.provenance.get("seed"), "quality": quality,
                                "exhausted": attempt == max_retries})
                        bar.update(1)
                    for message in _collapse_check(gates, warned):
                        (say("WARNING: " + message) if echo else
                         warnings.warn(message, GateAcceptanceWarning, stacklevel=2))
            finally:
                bar.close()
        failed = False
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        try:
            rejections.close()
            writer.close()
            wrote_nothing = (not existing and not writer.existing_ids()
                             and len(rejections.entries) == logged_before)
            if not (failed and wrote_nothing):
                summary = _finish(plan, cache_dir, backend, gates, fingerprint, image_size,
                                  color_mode, max_retries, chunk, img2img_fraction, parameters,
                                  started, clock, complete=not interrupted,
                                  atomic_write_bytes=atomic_write_bytes, say=say)
        finally:
            lock.close()
            if failed and wrote_nothing and created:
                # nothing to resume: leave no folder that would block a run with new settings
                shutil.rmtree(cache_dir, ignore_errors=True)
    return summary


def _lock_cache(cache_dir: Path):
    """An exclusive lock on the cache for this process (released when it exits, even killed).

    Two ``generate`` runs writing one cache at the same time would make duplicates."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle = open(cache_dir / LOCK_FILE, "a+")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CacheError(f"another process is generating into {cache_dir}; wait for it or use "
                         "another `cache_dir`") from None
    return handle


def _collapse_check(gates: GateChain, warned: set) -> list[str]:
    """Messages for classes whose acceptance by a gate collapsed, once per class and gate."""
    new = []
    for item in gates.collapsed():
        key = (item["class"], item["gate"])
        if key not in warned:
            warned.add(key)
            new.append(gates.collapse_message(item))
    return new


def _check_run(cache_dir: Path, fingerprint: dict, *, empty: bool) -> None:
    """Refuse to resume a cache made with other settings, unless it holds no image: then
    there is nothing to keep, and the run starts it afresh (its rejection log too)."""
    from genaug.synthetic import atomic_write_bytes

    path = cache_dir / RUN_FILE
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
        (cache_dir / REJECTIONS_FILE).unlink(missing_ok=True)
    atomic_write_bytes(path, (json.dumps(fingerprint, indent=2) + "\n").encode())


def verify_cache(cache_dir, *, class_names=None, image_size=None, color_mode=None) -> dict:
    """Integrity pass: every record has a readable image of the expected size and mode.

    Also removes temporary files left by a killed run (older than five minutes).
    Returns ``{"checked", "ok", "problems": [...]}``.
    """
    from genaug.synthetic import SyntheticCache

    cache_dir = Path(cache_dir)
    now = time.time()
    for stale in cache_dir.rglob(".*.tmp"):  # left by a killed run (not by a live writer)
        try:
            if now - stale.stat().st_mtime > STALE_TMP_SECONDS:
                stale.unlink()
        except OSError:
            pass
    cache = SyntheticCache(cache_dir, class_names=class_names)
    problems = list(cache.problems.lines())
    want_mode = {"grayscale": "L", "rgb": "RGB"}.get(color_mode)
    for record in cache.records:
        path = cache_dir / record["path"]
        try:
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                image.load()
                size, mode = image.size, image.mode
        except Exception as error:  # PIL raises many types for a bad file
            problems.append(f"{record['path']}: unreadable ({type(error).__name__})")
            continue
        if image_size is not None and size != (image_size[1], image_size[0]):
            problems.append(f"{record['path']}: size {size[0]}x{size[1]}, expected "
                            f"{image_size[1]}x{image_size[0]}")
        if want_mode is not None and mode != want_mode:
            problems.append(f"{record['path']}: mode {mode}, expected {want_mode}")
    return {"checked": len(cache.records), "ok": not problems, "problems": problems}


def _finish(plan, cache_dir, backend, gates, fingerprint, image_size, color_mode, max_retries,
            chunk, img2img_fraction, parameters, started, clock, *, complete,
            atomic_write_bytes, say) -> dict:
    from genaug.synthetic import SyntheticCache

    integrity = verify_cache(cache_dir, class_names=plan.class_names, image_size=image_size,
                             color_mode=color_mode)
    records = SyntheticCache(cache_dir, class_names=plan.class_names).records
    log = _AppendLog(cache_dir / REJECTIONS_FILE).entries
    summary = summarize(plan, records, log)
    all_done = all(c["pending"] == 0 for c in summary["classes"].values())
    summary.update(
        complete=bool(complete and all_done and integrity["ok"]),
        interrupted=not complete,
        cache=str(cache_dir),
        image_size=list(image_size),
        color_mode=color_mode,
        generator=backend.info(),
        gates=gates.describe(),
        integrity=integrity,
        this_run_acceptance=gates.acceptance_rates(),
        seconds=round(time.perf_counter() - clock, 2),
    )
    if integrity["problems"]:
        say(f"integrity: {len(integrity['problems'])} problem(s): "
            + "; ".join(integrity["problems"][:3]))
    atomic_write_bytes(cache_dir / SUMMARY_FILE,
                       (json.dumps(summary, indent=2, default=str) + "\n").encode())
    env = {
        "created": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "complete": summary["complete"],
        "versions": package_versions(),
        "device": {**device_report(backend.device),
                   "dtype": str(getattr(backend, "dtype", None)).replace("torch.", "")},
        "generator": backend.info(),
        "backend_settings": _backend_settings(backend),
        "options": {"max_retries": max_retries, "image_size": list(image_size),
                    "color_mode": color_mode, "batch_size": chunk,
                    "img2img_fraction": img2img_fraction, "gates": gates.describe()},
        "parameters": parameters or {},
        "plan": {"sha256": plan.sha256, "data": plan.data, "seed": plan.seed,
                 "target_per_class": plan.target_per_class,
                 "prompt_set_sha256": plan.prompt_set_sha256},
        "seeds": {"plan_seed": plan.seed, "rule": SEED_RULE},
        "run_fingerprint_sha256": canonical_sha256(fingerprint),
    }
    atomic_write_bytes(cache_dir / ENV_REPORT,
                       (json.dumps(env, indent=2, default=str) + "\n").encode())
    return summary


def summarize(plan: GenerationPlan, records: list[dict], rejections: list[dict]) -> dict:
    """Per class: requested, accepted, rejected by gate, first-attempt success rate (goal 80 %).

    Computed from the cache records and the rejection log, so it is the same however many
    runs the cache took.
    """
    seen, unique = set(), []
    for entry in rejections:
        key = (entry["id"], entry["attempt"])
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    ids = {c: {it.record_id for it in plan.items(c)} for c in plan.class_names
           if plan.classes[c]["generate"]}
    classes, warnings_ = {}, []
    for class_name, planned in ids.items():
        accepted = [r for r in records if r["class"] == class_name and r["id"] in planned]
        rejected = [e for e in unique if e.get("class") == class_name and e["id"] in planned]
        exhausted = {e["id"] for e in rejected if e.get("exhausted")}
        by_gate, checked, passed = Counter(), Counter(), Counter()
        for quality in [r.get("quality") or {} for r in accepted] + [
                e.get("quality") or {} for e in rejected]:
            for gate, result in quality.items():
                checked[gate] += 1
                passed[gate] += bool(result.get("passed"))
                if not result.get("passed"):
                    by_gate[gate] += 1
        decided = len(accepted) + len(exhausted)
        first = sum(1 for r in accepted if r.get("attempts") == 1)
        rate = first / decided if decided else None
        acceptance = {g: round(passed[g] / checked[g], 4) for g in sorted(checked)}
        for gate in sorted(checked):
            if (checked[gate] >= COLLAPSE_MIN_CHECKED
                    and passed[gate] / checked[gate] < COLLAPSE_RATE):
                structure_rate = (passed["structure"] / checked["structure"]
                                  if checked["structure"] else None)
                warnings_.append(collapse_message(class_name, gate, passed[gate],
                                                  checked[gate], structure_rate=structure_rate))
        classes[class_name] = {
            "requested": len(planned),
            "accepted": len(accepted),
            "exhausted": len(exhausted),
            "pending": len(planned) - len(accepted) - len(exhausted),
            "candidates": len(accepted) + len(rejected),
            "rejected_by_gate": dict(sorted(by_gate.items())),
            "gate_acceptance": acceptance,
            "first_attempt_success_rate": None if rate is None else round(rate, 4),
            "meets_goal": None if rate is None else rate >= FIRST_ATTEMPT_GOAL,
        }
    total_decided = sum(c["accepted"] + c["exhausted"] for c in classes.values())
    total_first = sum(round((c["first_attempt_success_rate"] or 0) * (c["accepted"]
                      + c["exhausted"])) for c in classes.values())
    return {
        "goal_first_attempt_success_rate": FIRST_ATTEMPT_GOAL,
        "classes": classes,
        "totals": {
            "requested": sum(c["requested"] for c in classes.values()),
            "accepted": sum(c["accepted"] for c in classes.values()),
            "exhausted": sum(c["exhausted"] for c in classes.values()),
            "pending": sum(c["pending"] for c in classes.values()),
            "first_attempt_success_rate": (round(total_first / total_decided, 4)
                                           if total_decided else None),
        },
        "warnings": warnings_,
    }


def summary_lines(summary: dict) -> list[str]:
    """The summary as a small terminal table."""
    classes = summary["classes"]
    width = max([5, *(len(c) for c in classes)])
    lines = [f"{'class':<{width}}  {'requested':>9}  {'accepted':>8}  {'exhausted':>9}  "
             f"{'1st-try':>7}  rejected by gate"]
    for name, c in classes.items():
        rate = c["first_attempt_success_rate"]
        rate_text = "-" if rate is None else f"{rate:.0%}"
        flag = "" if c["meets_goal"] in (None, True) else " (below 80% goal)"
        rejected = ", ".join(f"{g} {n}" for g, n in c["rejected_by_gate"].items()) or "-"
        lines.append(f"{name:<{width}}  {c['requested']:>9}  {c['accepted']:>8}  "
                     f"{c['exhausted']:>9}  {rate_text:>7}  {rejected}{flag}")
    t = summary["totals"]
    lines.append(f"total: {t['accepted']} of {t['requested']} accepted, {t['exhausted']} gave "
                 f"up after all retries, {t['pending']} pending")
    return lines
