"""``export_dataset``: the balanced real + synthetic training set as plain files and manifests."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from genaug.cache import ENV_REPORT, STATUS_FILE, CacheProblems, SyntheticCache, TrainingStatus
from genaug.data import DatasetIndex, DatasetSplits, SkippedFile, skipped_summary, split_dataset
from genaug.exceptions import ConfigError, DatasetError, GenaugWarning, OutputError
from genaug.export._links import LINK_MODES, FileLinker
from genaug.io import atomic_directory, atomic_write_bytes, write_json
from genaug.sampling import DEFAULT_CAP, pool_limits, quota_pool
from genaug.sources import CacheSource

#: Folder (and manifest) name of each split; genaug's manifests read ``val`` as validation.
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}
MANIFEST_COLUMNS = ("path", "label", "split", "source", "synthetic_id", "source_id")
LABEL_MAP = "label_map.json"


@dataclass(frozen=True)
class ExportedImage:
    """One file of the export and its manifest row.

    ``source_id`` is the id of the real image the file comes from: the image itself for a real
    file (its path relative to the data folder), the one it was derived from for a synthetic
    file (empty when none), so that no ``train`` row shares a ``source_id`` with a ``val`` or
    ``test`` row.
    """

    original: str
    split: str
    label: str
    source: str
    name: str
    synthetic_id: str = ""
    source_id: str = ""

    @property
    def path(self) -> str:
        """Where the file lies, relative to the export folder (posix)."""
        return f"{self.split}/{self.label}/{self.name}"

    def row(self) -> tuple[str, ...]:
        return (self.path, self.label, self.split, self.source, self.synthetic_id,
                self.source_id)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_dataset` wrote.

    Attributes
    ----------
    out_dir : Path
    images : tuple of ExportedImage
        Every exported file, in manifest order.
    status : dict
        The content of ``status.json``.
    skipped : tuple of SkippedFile
        Real files left out (unreadable, not an image, ...).
    cache_problems : CacheProblems or None
        What the synthetic cache skipped (records whose file is missing, ...).
    """

    out_dir: Path
    images: tuple[ExportedImage, ...]
    status: dict
    skipped: tuple[SkippedFile, ...]
    cache_problems: CacheProblems | None

    def lines(self) -> list[str]:
        """The report of the export: counts per split and class, then whatever was skipped."""
        status, split_counts = self.status, self.status["per_split"]
        sizes = {split: sum(split_counts[split]["original"].values())
                 for split in SPLIT_FOLDERS}
        out = [f"exported {len(self.images)} image(s) to {self.out_dir}: train "
               f"{sizes['train'] + status['synthetic']} ({status['synthetic']} synthetic), "
               f"val {sizes['validation']}, test {sizes['test']} (real only)"]
        for name, row in status["per_class"].items():
            out.append(f"  {name}: {row['original']} real + {row['synthetic']} synthetic = "
                       f"{row['total']} ({row['synthetic_share_of_images']:.0%} synthetic)")
        if self.skipped:
            out.append(skipped_summary(self.skipped))
            out.extend(f"skipped {item.path}: {item.reason}" for item in self.skipped)
        if self.cache_problems:
            out.extend(f"problem: {line}" for line in self.cache_problems.lines())
        if status["excluded_for_leakage"]:
            out.append(f"synthetic cache: {status['excluded_for_leakage']} image(s) derived "
                       "from validation/test images left out")
        return out


def export_dataset(data, *, out_dir, synthetic_cache=None, validation_split: float = 0.15,
                   test_split: float | None = 0.15, test_dir=None,
                   target_per_class: int | None = None, synthetic_cap: float = DEFAULT_CAP,
                   link: str = "hard", seed: int = 0, overwrite: bool = False,
                   class_names=None, parameters: dict | None = None) -> ExportResult:
    """Write a curated dataset: real images split, synthetic images added to training only.

    ``out_dir`` receives ``<split>/<class>/<file>`` images (``train``, ``val``, ``test``), the
    manifests ``train.csv``, ``val.csv`` and ``test.csv`` (columns ``path, label, split,
    source, synthetic_id, source_id``; paths relative to ``out_dir``), ``label_map.json``
    (class -> label index, in ``class_names`` order), ``status.json`` (the composition fields
    of a training run's, see :class:`genaug.cache.TrainingStatus`, plus how the export
    was made) and ``env_report.json``. It is written in a temporary folder beside ``out_dir``
    and renamed at the end: an interrupted export leaves no ``out_dir``.

    Parameters
    ----------
    data : path-like
        An image folder (``<class>/<image>``) or a CSV manifest (``path,label[,split]``; its
        split column is obeyed).
    out_dir : path-like
        The folder to write; it must not exist or be empty, unless ``overwrite``.
    synthetic_cache : path-like, optional
        A synthetic cache to draw training images from.
    validation_split, test_split : float
        Stratified, seeded shares of each class's real images for validation and testing
        (:func:`genaug.data.split_dataset`), when the manifest's split column (or
        ``test_dir``) does not give those sets.
    test_dir : path-like, optional
        A separate test folder (or manifest); ``test_split`` is then not used.
    target_per_class : int, optional
        Training images (real + synthetic) each class is filled up to with synthetic images.
        Default: the largest class's real training images.
    synthetic_cap : float in [0, 1), default :data:`~genaug.sampling.DEFAULT_CAP`
        Largest share of a class's training images that may be synthetic
        (:func:`genaug.sampling.pool_limits`); a class without real training images gets no
        synthetic image. Which images a class keeps is a seeded choice.
    link : {"hard", "copy", "symlink"}, default "hard"
        Hard links take no extra disk space; a file that cannot be hard-linked (another
        filesystem) is copied instead, with one warning and a note in ``status.json``.
    seed : int, default 0
        Seed of the splits and of the synthetic choice: the same seed writes the same files.
    overwrite : bool, default False
        Replace an existing non-empty ``out_dir`` (only once the new export is complete).
    class_names : sequence of str, optional
        The classes, in label order; default: the data's.
    parameters : dict, optional
        Anything the caller wants recorded in ``env_report.json`` (e.g. command line options).

    Returns
    -------
    ExportResult

    Examples
    --------
    >>> export_dataset("data/", synthetic_cache="cache/", out_dir="curated/")
    ... # doctest: +SKIP
    >>> genaug.image_dataset_from_directory("curated/train.csv", ...)  # doctest: +SKIP
    """
    # 1. Check the options and the output folder: bad input writes nothing.
    _check_options(link=link, synthetic_cap=synthetic_cap, validation_split=validation_split,
                   test_split=test_split, target_per_class=target_per_class)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite=overwrite, data=data, test_dir=test_dir,
                   synthetic_cache=synthetic_cache)
    # 2. Split the real images, before any synthetic image is chosen.
    splits = _split(data, test_dir=test_dir, validation_split=validation_split,
                    test_split=test_split, seed=seed, class_names=class_names)
    # 3. Choose the synthetic training images: none derived from a held-out image, each class
    #    filled up to the target and never above the cap.
    cache, synthetic, plan = _choose_synthetic(splits, synthetic_cache, seed=seed,
                                               target_per_class=target_per_class,
                                               synthetic_cap=synthetic_cap)
    # 4. Name every file of the export.
    images = _layout(splits, synthetic)
    # 5. Write it all in a temporary folder, renamed to out_dir at the end.
    linker = FileLinker(link)
    with atomic_directory(out_dir) as tmp:
        for folder in sorted({str(Path(image.path).parent) for image in images}):
            (tmp / folder).mkdir(parents=True)
        for image in images:
            linker.place(image.original, tmp / image.path)
        for folder in SPLIT_FOLDERS.values():
            _write_manifest(tmp / f"{folder}.csv", [i for i in images if i.split == folder])
        write_json(tmp / LABEL_MAP, {name: i for i, name in enumerate(splits.class_names)})
        # After the files are placed: the status says how each was linked.
        status = _status(splits, cache, synthetic, plan, linker, seed=seed,
                         synthetic_cap=synthetic_cap).to_json()
        write_json(tmp / STATUS_FILE, status)
        write_json(tmp / ENV_REPORT, _environment(status, parameters, data=data,
                                                  test_dir=test_dir,
                                                  synthetic_cache=synthetic_cache))
    message = linker.fallback_message()
    if message:
        warnings.warn(message, GenaugWarning, stacklevel=2)
    return ExportResult(out_dir=out_dir, images=tuple(images), status=status,
                        skipped=splits.skipped,
                        cache_problems=cache.problems if cache is not None else None)


def _check_options(*, link, synthetic_cap, validation_split, test_split,
                   target_per_class) -> None:
    if link not in LINK_MODES:
        raise ConfigError(f"`link` must be one of {', '.join(LINK_MODES)}, got {link!r}")
    if not 0.0 <= synthetic_cap < 1.0:
        raise ConfigError(f"`synthetic_cap` must be in [0, 1), got {synthetic_cap}")
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"`validation_split` must be in [0, 1), got {validation_split}")
    if test_split is not None and not 0.0 <= test_split < 1.0:
        raise ConfigError(f"`test_split` must be in [0, 1), got {test_split}")
    if target_per_class is not None and target_per_class < 1:
        raise ConfigError(f"`target_per_class` must be at least 1, got {target_per_class}")


def _check_out_dir(out_dir: Path, *, overwrite: bool, data, test_dir, synthetic_cache) -> None:
    """The export may not replace, contain or lie inside its inputs (the data folder would list
    it as a class, the cache as orphan files), nor replace a non-empty folder unasked."""
    target = Path(os.path.abspath(out_dir))
    inputs = [Path(p) for p in (data, test_dir, synthetic_cache) if p is not None]
    for given in inputs:
        folder = Path(os.path.abspath(given))
        manifest = folder.suffix.lower() == ".csv" and not folder.is_dir()
        if manifest:
            folder = folder.parent  # an export beside a manifest is fine
        if target == folder or target in folder.parents:
            raise ConfigError(f"`out_dir` {out_dir} would replace the input {given}")
        if not manifest and folder in target.parents:
            raise ConfigError(f"`out_dir` {out_dir} lies inside the input {given}; "
                              "write the export elsewhere")
    if out_dir.is_symlink() or out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"`out_dir` exists and is not a folder: {out_dir}")
        if any(out_dir.iterdir()) and not overwrite:
            raise OutputError(f"`out_dir` exists and is not empty: {out_dir}; pass "
                              "`overwrite=True` to replace it")


def _split(data, *, test_dir, validation_split, test_split, seed,
           class_names) -> DatasetSplits:
    index = DatasetIndex.load(data, class_names=class_names)
    if len(index) == 0:
        raise DatasetError(f"no readable images in {data}")
    for name in index.class_names:
        if name in ("", ".", "..") or name.startswith(".") or "/" in name or "\\" in name:
            raise DatasetError(f"class {name!r} cannot be a folder name of the export")
    test_index = (DatasetIndex.load(test_dir, class_names=index.class_names)
                  if test_dir is not None else None)
    return split_dataset(index, validation_split=validation_split or None,
                         test_split=test_split or None, test_index=test_index, seed=seed)


def _choose_synthetic(splits: DatasetSplits, synthetic_cache, *, seed: int,
                      target_per_class: int | None, synthetic_cap: float):
    """The cache, the chosen synthetic images (a :class:`CacheSource`) and the per-class plan.

    Each class gets ``min(target - real, cap limit)`` synthetic images, a seeded choice among
    those not derived from a held-out image.
    """
    names = splits.class_names
    real = splits.train.counts()
    target = int(target_per_class) if target_per_class is not None else int(real.max())
    wanted = np.maximum(target - real, 0)
    # pool_limits's -1 (no limit) is for classes without real images: here they get none,
    # since any synthetic image would make the class's synthetic share 100 %.
    limits = np.maximum(pool_limits(real, synthetic_cap), 0)
    quotas = np.minimum(wanted, limits)
    cache = synthetic = None
    available = np.zeros(len(names), dtype=np.int64)
    if synthetic_cache is not None:
        cache = SyntheticCache(synthetic_cache, class_names=names)
        pool = CacheSource(cache, class_names=names, exclude_source_ids=splits.held_out_ids())
        available = pool.counts()
        synthetic = pool.subset(quota_pool(pool.labels, quotas, seed=seed))
    chosen = synthetic.counts() if synthetic is not None else np.zeros(len(names), np.int64)
    plan = {"target": target, "chosen": chosen, "per_class": {
        name: {"wanted": int(w), "cap_limit": int(limit), "available": int(a), "chosen": int(c)}
        for name, w, limit, a, c in zip(names, wanted, limits, available, chosen)}}
    return cache, synthetic, plan


def _layout(splits: DatasetSplits, synthetic: CacheSource | None) -> list[ExportedImage]:
    """Every file with its place: ``<split>/<class>/<name>``, in class then split order.

    A real file keeps its name and a synthetic one is ``synthetic-<its cache name>``; a name
    already taken in its folder gets a short hash of the image's id.
    """
    names = splits.class_names
    entries = []
    for split, folder in SPLIT_FOLDERS.items():
        part = {"train": splits.train, "validation": splits.validation,
                "test": splits.test}[split]
        if part is None:
            continue
        for path, label, real_id in zip(part.paths, part.labels, part.ids):
            entries.append((folder, names[label], path, "real", "", real_id,
                            Path(path).name, real_id))
    if synthetic is not None:
        for path, label, record in zip(synthetic.paths, synthetic.labels, synthetic.records):
            entries.append(("train", names[label], path, "synthetic", str(record["id"]),
                            str(record.get("source_id") or ""),
                            "synthetic-" + Path(record["path"]).name, str(record["id"])))
    taken: set[tuple[str, str, str]] = set()
    images = []
    for folder, label, path, source, synthetic_id, source_id, name, key in entries:
        if (folder, label, name) in taken:
            stem, suffix = os.path.splitext(name)
            name = f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}{suffix}"
            counter = 1
            while (folder, label, name) in taken:
                name, counter = f"{stem}-{counter}{suffix}", counter + 1
        taken.add((folder, label, name))
        images.append(ExportedImage(original=path, split=folder, label=label, source=source,
                                    name=name, synthetic_id=synthetic_id,
                                    source_id=source_id))
    order = {name: i for i, name in enumerate(names)}
    splits_order = list(SPLIT_FOLDERS.values())
    images.sort(key=lambda i: (splits_order.index(i.split), order[i.label], i.source != "real",
                               i.name))
    return images


def _write_manifest(path: Path, images) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(image.row() for image in images)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _status(splits: DatasetSplits, cache, synthetic, plan: dict, linker: FileLinker, *,
            seed: int, synthetic_cap: float) -> TrainingStatus:
    """``status.json``: the training set's counts, and how the export was made."""
    def counts(part):
        return part.counts() if part is not None else None

    return TrainingStatus.from_counts(
        splits.class_names, original=splits.train.counts(), synthetic=plan["chosen"],
        validation=counts(splits.validation), test=counts(splits.test), cache=cache,
        excluded_for_leakage=synthetic.excluded_leakage if synthetic else 0,
        # The cap bounds the share of distinct images, which a training run's status.json
        # calls synthetic_pool_cap: genaug report reads either file the same way.
        synthetic_cap=synthetic_cap, synthetic_pool_cap=synthetic_cap, seed=seed,
        skipped_files=[{"path": item.path, "reason": item.reason, "kind": item.kind}
                       for item in splits.skipped],
        details={
            "target_per_class": plan["target"],
            "synthetic_plan": plan["per_class"],
            "link": linker.summary(),
            "validation_source": splits.validation_source,
            "test_source": splits.test_source,
            "withheld": len(splits.withheld) if splits.withheld is not None else 0,
            "synthetic_cache_problems": cache.problems.to_dict() if cache is not None else None,
            "manifests": {split: f"{folder}.csv" for split, folder in SPLIT_FOLDERS.items()},
        })


def _environment(status: dict, parameters: dict | None, **inputs) -> dict:
    from genaug.io import package_versions

    return {
        "created": status["created"],
        "finished": datetime.now(timezone.utc).isoformat(),
        "versions": package_versions(),
        "cpu_count": os.cpu_count(),
        "inputs": {key: None if value is None else os.path.abspath(value)
                   for key, value in inputs.items()},
        "parameters": parameters or {},
    }
