"""The synthetic cache: ``<cache>/<class>/<id>.png`` plus one provenance record per image.

Records live in ``synthetic_meta.jsonl`` (the source of truth, appended one line per accepted
image, only after its file is in place) with a ``synthetic_meta.csv`` mirror rewritten on close.

One writer at a time holds the cache's lock (``.generate.lock``, removed when the writer
closes, and released by the system when its process ends, even killed). A writer killed
mid-image can leave a temporary file, or an image whose record it had not yet appended, but
never a record without its file; the next writer removes the temporary files, and the rerun
command writes the unrecorded image again with its record. :func:`repair_cache` removes such
leftovers without a rerun.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from genaug.data import IMAGE_EXTENSIONS, encode_png
from genaug.exceptions import CacheError, DatasetError, OutputError
from genaug.io import atomic_write_bytes, json_default, lock_held

META_JSONL = "synthetic_meta.jsonl"
META_CSV = "synthetic_meta.csv"
LOCK_FILE = ".generate.lock"
#: What ``genaug generate`` writes beside the images: its summary, the settings a resumed run
#: must match, and the environment it ran in (``env_report.json`` also beside an export).
GENERATION_SUMMARY = "generation_summary.json"
GENERATION_RUN = "generation_run.json"
ENV_REPORT = "env_report.json"
REQUIRED_FIELDS = ("id", "class", "path")
RECORD_FIELDS = (
    "id", "class", "path", "generator", "prompt", "negative_prompt", "attributes", "seed",
    "steps", "guidance_scale", "source_id", "quality", "attempts", "created",
)


@dataclass
class CacheProblems:
    """What :class:`SyntheticCache` found wrong and skipped."""

    missing_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    unknown_classes: dict[str, int] = field(default_factory=dict)
    duplicate_ids: list[str] = field(default_factory=list)
    #: found by :meth:`SyntheticCache.verify_files` only (it decodes every image)
    unreadable_files: list[str] = field(default_factory=list)
    mismatched_files: list[str] = field(default_factory=list)
    #: temporary files of an interrupted write (not counted while a writer holds the lock)
    temporary_files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.missing_files, self.orphan_files, self.bad_lines,
                    self.unknown_classes, self.duplicate_ids, self.unreadable_files,
                    self.mismatched_files, self.temporary_files))

    def to_dict(self) -> dict:
        return {
            "missing_files": self.missing_files,
            "orphan_files": self.orphan_files,
            "bad_lines": [{"line": n, "error": e} for n, e in self.bad_lines],
            "unknown_classes": self.unknown_classes,
            "duplicate_ids": self.duplicate_ids,
            "unreadable_files": self.unreadable_files,
            "mismatched_files": self.mismatched_files,
            "temporary_files": self.temporary_files,
        }

    def lines(self) -> list[str]:
        """Human-readable one-line summaries, one per kind of problem."""
        out = []
        if self.bad_lines:
            where = ", ".join(str(n) for n, _ in self.bad_lines[:10])
            out.append(f"{len(self.bad_lines)} malformed record line(s) skipped (line {where})")
        if self.missing_files:
            out.append(f"{len(self.missing_files)} record(s) whose image file is missing skipped")
        if self.orphan_files:
            out.append(f"{len(self.orphan_files)} image file(s) without a record ignored")
        if self.unknown_classes:
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self.unknown_classes.items()))
            out.append(f"records of classes unknown to the dataset skipped: {names}")
        if self.duplicate_ids:
            out.append(f"{len(self.duplicate_ids)} duplicate record id(s) skipped")
        if self.unreadable_files:
            out.append(f"{len(self.unreadable_files)} unreadable image file(s): "
                       + ", ".join(self.unreadable_files[:5]))
        if self.mismatched_files:
            out.append(f"{len(self.mismatched_files)} image(s) of another size or colour "
                       "mode: " + "; ".join(self.mismatched_files[:5]))
        if self.temporary_files:
            out.append(f"{len(self.temporary_files)} temporary file(s) of an interrupted "
                       "write: " + ", ".join(self.temporary_files[:5]))
        return out


class SyntheticCache:
    """Open a synthetic cache read-only and index its usable records per class.

    Bad entries (malformed lines, records without a file, files without a record, classes the
    dataset does not know, repeated ids) are reported in :attr:`problems` and skipped, so a
    damaged cache never stops a training run.

    Parameters
    ----------
    directory : path-like
        The cache directory.
    class_names : sequence of str, optional
        The dataset's classes; records of other classes are skipped and reported.
    """

    def __init__(self, directory, *, class_names: Sequence[str] | None = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise CacheError(f"synthetic cache not found: {self.directory}")
        self.class_names = None if class_names is None else tuple(class_names)
        self.problems = CacheProblems()
        self.records: list[dict] = []
        self._read()

    def _read(self) -> None:
        meta = self.directory / META_JSONL
        seen: set[str] = set()
        recorded_paths: set[str] = set()
        unknown: Counter = Counter()
        lines = meta.read_text(encoding="utf-8").splitlines() if meta.exists() else []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                missing = [k for k in REQUIRED_FIELDS if not record.get(k)]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
            except ValueError as error:
                self.problems.bad_lines.append((number, str(error).splitlines()[0]))
                continue
            recorded_paths.add(Path(record["path"]).as_posix())
            if record["id"] in seen:
                self.problems.duplicate_ids.append(record["id"])
                continue
            seen.add(record["id"])
            if self.class_names is not None and record["class"] not in self.class_names:
                unknown[record["class"]] += 1
                continue
            if not (self.directory / record["path"]).is_file():
                self.problems.missing_files.append(record["path"])
                continue
            self.records.append(record)
        self.problems.unknown_classes = dict(unknown)
        in_use = cache_in_use(self.directory)
        for path in sorted(self.directory.rglob("*")):
            rel = path.relative_to(self.directory).as_posix()
            if not path.is_file():
                continue
            if _is_temporary(path):
                if not in_use:  # else it may be the live writer's image in the making
                    self.problems.temporary_files.append(rel)
            elif (path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
                    and rel not in recorded_paths):
                self.problems.orphan_files.append(rel)

    def verify_files(self, *, image_size=None, color_mode: str | None = None) -> CacheProblems:
        """Decode every record's image and add to :attr:`problems` the unreadable ones and,
        when given, those not of ``image_size`` (height, width) or ``color_mode``
        (``"grayscale"`` or ``"rgb"``); returns :attr:`problems`. The records stay listed."""
        want_mode = {"grayscale": "L", "rgb": "RGB"}.get(color_mode)
        for record in self.records:
            try:
                with Image.open(self.directory / record["path"]) as image:
                    image.verify()
                with Image.open(self.directory / record["path"]) as image:
                    image.load()
                    (width, height), mode = image.size, image.mode
            except Exception as error:  # PIL raises many types for a bad file
                self.problems.unreadable_files.append(
                    f"{record['path']} ({type(error).__name__})")
                continue
            if image_size is not None and (height, width) != tuple(image_size):
                self.problems.mismatched_files.append(
                    f"{record['path']}: size {width}x{height}, expected "
                    f"{image_size[1]}x{image_size[0]}")
            if want_mode is not None and mode != want_mode:
                self.problems.mismatched_files.append(
                    f"{record['path']}: mode {mode}, expected {want_mode}")
        return self.problems

    def __len__(self) -> int:
        return len(self.records)

    def by_class(self) -> dict[str, list[dict]]:
        """Usable records grouped by class name (every dataset class present, possibly empty)."""
        groups: dict[str, list[dict]] = {c: [] for c in (self.class_names or ())}
        for record in self.records:
            groups.setdefault(record["class"], []).append(record)
        return groups

    def counts(self) -> dict[str, int]:
        return {name: len(records) for name, records in self.by_class().items()}

    def path(self, record: dict) -> str:
        """Absolute path of a record's image."""
        return str((self.directory / record["path"]).resolve())

    def provenance(self) -> dict:
        """Generator ids, prompt-set hashes and quality thresholds found in the records."""
        generators, prompt_sets, thresholds = set(), set(), {}
        for record in self.records:
            gen = record.get("generator") or {}
            if isinstance(gen, dict):
                generator = {k: gen.get(k) for k in ("backend", "model", "model_hash")}
                if gen.get("lora_sha256"):  # an adapted model is another generator
                    generator["lora_sha256"] = gen["lora_sha256"]
                generators.add(json.dumps(generator, sort_keys=True))
            if record.get("prompt_set_sha256"):
                prompt_sets.add(record["prompt_set_sha256"])
            for gate, score in (record.get("quality") or {}).items():
                if isinstance(score, dict) and "threshold" in score:
                    thresholds[gate] = score["threshold"]
        return {
            "generators": [json.loads(g) for g in sorted(generators)],
            "prompt_set_sha256": sorted(prompt_sets),
            "quality_thresholds": thresholds,
        }


class CacheWriter:
    """Append images with their records to a cache, safely.

    Each image is written to a temporary name and renamed into place before its record is
    appended (one ``write`` and an ``fsync`` per line), so an interrupted run leaves only whole
    files and whole records; rerunning continues from :meth:`existing_ids`. A write that
    fails (a full disk) takes back its image and any part of its record and raises
    :class:`CacheError`, so the cache stays as it was before that image.

    The writer holds the cache's lock until :meth:`close`: a second writer of the same cache
    (in this or another process) raises :class:`CacheError`. Opening removes the temporary
    files a killed writer left.

    Use as a context manager; :meth:`close` rewrites the CSV mirror.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CacheError(f"cannot write synthetic cache {self.directory}: "
                             f"{error.strerror or error}") from None
        self._lock = lock_cache(self.directory)
        try:
            remove_temporaries(self.directory)
            self._meta = self.directory / META_JSONL
            self._fd = os.open(self._meta, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self._fd).st_size
            if size:
                with open(self._meta, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    torn = handle.read(1) != b"\n"
                if torn:  # a record cut off by a crash stays a separate (bad) line
                    _append(self._fd, b"\n")
            self._ids = {r["id"] for r in SyntheticCache(self.directory).records}
        except OSError as error:
            self._release()
            raise CacheError(f"cannot write synthetic cache {self.directory}: "
                             f"{error.strerror or error}") from None
        except BaseException:
            self._release()
            raise
        self._changed = False

    def existing_ids(self) -> set[str]:
        """Ids already recorded with their file in place, for resuming."""
        return set(self._ids)

    def add(self, image, *, class_name: str, record_id: str | None = None,
            **fields) -> dict | None:
        """Write ``image`` to ``<class>/<id>.png`` and append its record; return the record.

        ``image`` is a uint8 array or PIL image, or the PNG bytes of one (already encoded,
        e.g. by a remote worker, with :func:`encode_png`). ``record_id`` defaults to a hash
        of the PNG bytes, so the same image gets the same id.
        Adding an id the cache already holds writes nothing and returns None, which makes
        reruns idempotent. Remaining keyword arguments are record fields (``generator``,
        ``prompt``, ``seed``, ...).
        """
        try:
            data = image if isinstance(image, bytes) else encode_png(image)
        except DatasetError as error:  # a synthetic image that is not uint8
            raise CacheError(f"synthetic {error}") from None
        record_id = record_id or hashlib.sha256(data).hexdigest()[:16]
        if record_id in self._ids:
            return None
        rel = Path(_safe_name(class_name)) / f"{_safe_name(record_id)}.png"
        record = {key: None for key in RECORD_FIELDS}
        record.update(fields)
        record.update(id=record_id, path=rel.as_posix(), **{"class": class_name})
        record["created"] = record.get("created") or datetime.now(timezone.utc).isoformat()
        line = (json.dumps(record, sort_keys=True, default=json_default) + "\n").encode()
        try:
            atomic_write_bytes(self.directory / rel, data)
        except OutputError as error:
            raise CacheError(f"cannot write synthetic cache {self.directory}: "
                             f"{error}") from None
        size = os.fstat(self._fd).st_size
        try:
            _append(self._fd, line)
            os.fsync(self._fd)
        except OSError as error:
            # the image without its record would be an orphan; a part of the line, a bad line
            os.ftruncate(self._fd, size)
            (self.directory / rel).unlink(missing_ok=True)
            raise CacheError(f"cannot write synthetic cache {self.directory}: "
                             f"{error.strerror or error}") from None
        self._ids.add(record_id)
        self._changed = True
        return record

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            if self._changed or not (self.directory / META_CSV).exists():
                write_csv_mirror(self.directory, SyntheticCache(self.directory).records)
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
        self._fd = None
        self._lock.close()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def repair_cache(directory) -> CacheProblems:
    """Remove what an interrupted writer left: image files without a record, temporary
    files, records whose file is missing, malformed lines and repeated ids (the first
    record of an id is kept); return what was removed. Holds the cache's lock meanwhile, so
    it refuses (:class:`CacheError`) while a writer is at work."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CacheError(f"synthetic cache not found: {directory}")
    lock = lock_cache(directory)
    try:
        temporaries = remove_temporaries(directory)
        cache = SyntheticCache(directory)
        removed = cache.problems
        removed.temporary_files = temporaries
        for rel in removed.orphan_files:
            (directory / rel).unlink(missing_ok=True)
        if removed.missing_files or removed.bad_lines or removed.duplicate_ids:
            lines = "".join(json.dumps(r, sort_keys=True, default=json_default) + "\n"
                            for r in cache.records)
            atomic_write_bytes(directory / META_JSONL, lines.encode("utf-8"))
        if removed:
            write_csv_mirror(directory, cache.records)
    except OSError as error:
        raise CacheError(f"cannot repair synthetic cache {directory}: "
                         f"{error.strerror or error}") from None
    finally:
        lock.close()
    return removed


class CacheLock:
    """An exclusive lock on a cache for this process, released by :meth:`close` (which
    removes the lock file) or by the system when the process ends, even killed."""

    def __init__(self, path: Path, handle):
        self.path, self._handle = path, handle

    def close(self) -> None:
        if self._handle.closed:
            return
        self.path.unlink(missing_ok=True)  # while still held: no one can lock it meanwhile
        self._handle.close()


def lock_cache(directory: Path) -> CacheLock:
    """Lock the cache for this process: two writers of one cache at the same time would
    make duplicates; a second one raises :class:`CacheError`."""
    path = Path(directory) / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as error:
        raise CacheError(f"cannot write synthetic cache {directory}: "
                         f"{error.strerror or error}") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return CacheLock(path, handle)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        # the file may have been removed by its last holder between our open and our lock
        if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
            raise OSError("lock file replaced")
    except OSError:
        handle.close()
        raise CacheError(f"another process is writing into {directory} (genaug generate, a "
                         "live run or an import); wait for it or use another "
                         "`cache_dir`") from None
    return CacheLock(path, handle)


def cache_in_use(directory) -> bool:
    """Whether a writer holds the cache's lock now."""
    return bool(lock_held(Path(directory) / LOCK_FILE))


def remove_temporaries(directory: Path) -> list[str]:
    """Delete the temporary files under a cache whose lock this process holds (none of them
    can be a live writer's); return their paths relative to the cache."""
    removed = []
    for path in sorted(Path(directory).rglob(".*.tmp")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.relative_to(directory).as_posix())
    return removed


def write_csv_mirror(directory: Path, records: Iterable[dict]) -> None:
    """Rewrite ``synthetic_meta.csv``; nested fields are stored as JSON text."""
    buffer = io.StringIO()
    extra = sorted({k for r in records for k in r} - set(RECORD_FIELDS))
    writer = csv.DictWriter(buffer, fieldnames=[*RECORD_FIELDS, *extra])
    writer.writeheader()
    for record in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                         for k, v in record.items()})
    atomic_write_bytes(Path(directory) / META_CSV, buffer.getvalue().encode("utf-8"))


def _append(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _safe_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise CacheError(f"invalid class or id for a cache path: {name!r}")
    return name
