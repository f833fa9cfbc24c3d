"""The dataset index: which image files exist, their classes, and which of them are unusable."""

from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.data._headers import read_header
from genaug.exceptions import ConfigError, DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation",
                 "valid": "validation", "validation": "validation", "test": "test"}


#: What kind of problem made a file unusable, for the one-line summary of the loaders.
SKIP_KINDS = ("unreadable", "not an image", "missing", "unknown label", "listed twice")


@dataclass(frozen=True)
class SkippedFile:
    """A file found in the dataset that cannot be used, and why.

    ``kind`` is one of :data:`SKIP_KINDS`; ``reason`` says the details.
    """

    path: str
    reason: str
    kind: str = "unreadable"


@dataclass(frozen=True)
class DatasetIndex:
    """An immutable list of labelled image files.

    Attributes
    ----------
    root : Path or None
        Directory the ids are relative to.
    class_names : tuple of str
        All classes, including those with no image (they count 0, they do not disappear).
    paths : tuple of str
        Absolute file paths.
    labels : ndarray of int
        Class index of each file.
    ids : tuple of str
        Stable identifier of each real image: its path relative to ``root`` (posix). Synthetic
        records refer to real images by this id in ``source_id``.
    splits : tuple of str or None
        Per-file split from a CSV manifest (``train``, ``validation``, ``test``), else None.
    modes, sizes, formats : tuple
        PIL mode, (width, height) and detected file format (``"PNG"``, ``"JPEG"``, ...; from
        the content, not the name) of each file, when the index was validated.
    skipped : tuple of SkippedFile
        Unreadable, corrupt or non-image files that were left out.
    """

    root: Path | None
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray
    ids: tuple[str, ...]
    splits: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    sizes: tuple[tuple[int, int], ...] | None = None
    formats: tuple[str, ...] | None = None
    skipped: tuple[SkippedFile, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> np.ndarray:
        """Number of images per class, in ``class_names`` order (zeros included)."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def paths_by_class(self) -> dict[str, list[str]]:
        """The image paths of each class, in index order (every class, empty ones too)."""
        grouped: dict[str, list[str]] = {name: [] for name in self.class_names}
        for path, label in zip(self.paths, self.labels):
            grouped[self.class_names[label]].append(path)
        return grouped

    def subset(self, indices) -> DatasetIndex:
        """Index restricted to ``indices`` (int array or boolean mask); classes are kept."""
        indices = np.asarray(indices)
        if indices.dtype != bool:
            indices = indices.astype(np.int64)  # an empty list would be float
        indices = np.arange(len(self))[indices] if len(self) else np.asarray([], int)
        take = lambda seq: None if seq is None else tuple(seq[i] for i in indices)  # noqa: E731
        return replace(
            self,
            paths=take(self.paths),
            labels=self.labels[indices],
            ids=take(self.ids),
            splits=take(self.splits),
            modes=take(self.modes),
            sizes=take(self.sizes),
            formats=take(self.formats),
        )

    def split_indices(self, name: str) -> np.ndarray:
        """Indices of the files a CSV manifest assigned to split ``name``."""
        if self.splits is None:
            return np.arange(0)
        return np.flatnonzero(np.asarray(self.splits) == name)

    def stratified_split(self, fraction: float, *, seed: int | None = 0):
        """Split into (kept, held_out) index arrays, per class, deterministically.

        Every class with at least two images gives at least one to the held-out part and keeps at
        least one; a class with a single image keeps it. This is done before any oversampling, so
        no duplicate of a held-out image can reach training.
        """
        if not 0.0 < fraction < 1.0:
            raise DatasetError(f"the split fraction must be between 0 and 1, got {fraction}")
        rng = np.random.default_rng(seed)
        kept, held = [], []
        for label in range(self.num_classes):
            members = rng.permutation(np.flatnonzero(self.labels == label))
            n = len(members)
            n_held = int(np.floor(fraction * n + 0.5))
            n_held = min(max(n_held, 1 if n >= 2 else 0), max(n - 1, 0))
            held.extend(members[:n_held])
            kept.extend(members[n_held:])
        return np.sort(np.asarray(kept, dtype=int)), np.sort(np.asarray(held, dtype=int))

    @classmethod
    def load(cls, source, *, class_names: Sequence[str] | None = None,
             validate: bool | str = True):
        """Index an image folder or a CSV manifest (``path,label[,split]``).

        ``validate``: True decodes every file once and skips the ones that fail (what
        ``genaug analyze`` and the generators use); ``"headers"`` reads only the header and
        end marker of 8-bit PNG and JPEG files and decodes the rest (what the loaders use:
        a file that breaks at decode time is replaced there); False reads no file.
        """
        source = Path(source)
        if source.is_file() and source.suffix.lower() == ".csv":
            return cls.from_csv(source, class_names=class_names, validate=validate)
        return cls.from_directory(source, class_names=class_names, validate=validate)

    @classmethod
    def from_directory(
        cls, directory, *, class_names: Sequence[str] | None = None,
        validate: bool | str = True
    ) -> DatasetIndex:
        """Index ``directory/<class>/**/<image>`` (Keras's ``image_dataset_from_directory`` layout).

        Classes are the sub-folders in sorted order unless ``class_names`` lists them explicitly;
        an explicit class with no folder (or an empty one) is kept with count 0.
        """
        directory = Path(directory)
        if not directory.exists():
            raise DatasetError(f"data directory not found: {directory}")
        if not directory.is_dir():
            raise DatasetError(f"not a directory: {directory}")
        folders = sorted(p.name for p in directory.iterdir() if p.is_dir()
                         and not p.name.startswith("."))
        if class_names is None:
            if not folders:
                raise DatasetError(
                    f"{directory} has no class folders; expected {directory}/<class>/<image>"
                )
            class_names = folders
        class_names = _check_class_names(class_names)
        extra = sorted(set(folders) - set(class_names))
        if extra:
            warnings.warn(f"folders not in class_names are ignored: {', '.join(extra)}",
                          stacklevel=2)
        files, labels, ids, skipped = [], [], [], []
        # Plain strings, not Path objects, per file: listing then costs what Keras's does.
        top = os.path.abspath(directory)
        for label, name in enumerate(class_names):
            class_dir = os.path.join(top, name)
            if not os.path.isdir(class_dir):
                continue
            for root, dirs, names in os.walk(class_dir):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                # Absolute, but symlinks are not resolved: a linked file or class folder
                # may point outside the dataset, and its id and any report should name
                # the link the user put there.
                relative = Path(os.path.relpath(root, top)).as_posix() + "/"
                for fname in sorted(names):
                    if fname.startswith("."):
                        continue
                    absolute = os.path.join(root, fname)
                    if os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS:
                        files.append(absolute)
                        labels.append(label)
                        ids.append(relative + fname)
                    else:
                        skipped.append(SkippedFile(absolute, "not an image file (extension)",
                                                   "not an image"))
        return _finish(Path(top), class_names, files, labels, ids, None,
                       skipped, validate)

    @classmethod
    def from_csv(
        cls, manifest, *, class_names: Sequence[str] | None = None,
        validate: bool | str = True
    ) -> DatasetIndex:
        """Index a CSV manifest with columns ``path,label[,split]`` (header optional).

        Relative paths are relative to the manifest's folder.
        """
        manifest = Path(manifest)
        if not manifest.is_file():
            raise DatasetError(f"manifest not found: {manifest}")
        # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark.
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
            rows = rows[1:]
        if not rows:
            raise DatasetError(f"manifest {manifest} lists no images")
        base = manifest.parent.resolve()
        entries = []
        for line, row in enumerate(rows, start=1):
            if len(row) < 2:
                raise DatasetError(f"{manifest}: row {line} needs at least path,label: {row}")
            split = None
            if len(row) > 2 and row[2].strip():
                split = SPLIT_ALIASES.get(row[2].strip().lower())
                if split is None:
                    raise DatasetError(
                        f"{manifest}: row {line} has unknown split {row[2]!r} "
                        "(use train, validation or test)"
                    )
            entries.append((row[0].strip(), row[1].strip(), split))
        if class_names is None:
            class_names = sorted({label for _, label, _ in entries})
        class_names = _check_class_names(class_names)
        position = {name: i for i, name in enumerate(class_names)}
        files, labels, ids, splits, skipped = [], [], [], [], []
        has_splits = any(split is not None for _, _, split in entries)
        listed: dict[Path, str] = {}
        for rel, label, split in entries:
            path = (base / rel).resolve()
            if path in listed:
                # A file listed twice could land in training and test at once.
                skipped.append(SkippedFile(str(path), f"listed more than once in the manifest "
                                                      f"(kept as {listed[path]!r})",
                                           "listed twice"))
                continue
            listed[path] = label
            if label not in position:
                skipped.append(SkippedFile(str(path), f"label {label!r} not in class_names",
                                           "unknown label"))
            elif not path.is_file():
                skipped.append(SkippedFile(str(path), "file not found", "missing"))
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(SkippedFile(str(path), "not an image file (extension)",
                                           "not an image"))
            else:
                files.append(str(path))
                labels.append(position[label])
                ids.append(Path(rel).as_posix())
                splits.append(split or "train")
        return _finish(base, class_names, files, labels, ids, splits if has_splits else None,
                       skipped, validate)


def skipped_summary(skipped: Sequence[SkippedFile]) -> str:
    """``"Skipped 4 files (3 unreadable, 1 not an image)"``, or ``""`` when nothing was skipped."""
    if not skipped:
        return ""
    kinds = Counter(item.kind for item in skipped)
    order = sorted(kinds, key=lambda kind: (SKIP_KINDS.index(kind) if kind in SKIP_KINDS
                                            else len(SKIP_KINDS), kind))
    parts = ", ".join(f"{kinds[kind]} {kind}" for kind in order)
    return f"Skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} ({parts})"


def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(class_names, str):
        class_names = [c.strip() for c in class_names.split(",") if c.strip()]
    names = tuple(str(c) for c in class_names)
    if not names:
        raise DatasetError("class_names is empty")
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise DatasetError(f"class_names repeats {', '.join(duplicated)}")
    return names


def probe_image(path: str, *, max_pixels: int | None = None):
    """Fully decode ``path`` once; return its (mode, size, format) or raise on a corrupt file.

    With ``max_pixels``, an image with more pixels raises ``DecompressionBombError`` before it
    is decoded.
    """
    with Image.open(path) as image:
        mode, size, file_format = image.mode, image.size, image.format
        if max_pixels and size[0] * size[1] > max_pixels:
            raise Image.DecompressionBombError(
                f"{size[0]}x{size[1]} pixels exceed the limit of {max_pixels}")
        if image.format == "JPEG":
            image.draft(image.mode, (64, 64))  # decodes every block, at 1/8 the cost
        image.load()
    return mode, size, file_format


def _probe(path: str):
    try:
        return probe_image(path, max_pixels=Image.MAX_IMAGE_PIXELS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "too large to decode safely (over PIL's decompression-bomb limit)"
    except Exception as error:  # PIL raises many types for corrupt data
        return f"unreadable or corrupt: {type(error).__name__}: {error}".splitlines()[0]


def _finish(root, class_names, files, labels, ids, splits, skipped, validate) -> DatasetIndex:
    if validate not in (True, False, "headers"):
        raise ConfigError(f"validate must be True, False or 'headers', got {validate!r}")
    modes = sizes = formats = None
    if validate and files:
        probes = _probe_all(files, headers_only=validate == "headers")
        keep = [i for i, p in enumerate(probes) if not isinstance(p, str)]
        skipped = skipped + [SkippedFile(files[i], p, "unreadable") for i, p in enumerate(probes)
                             if isinstance(p, str)]
        modes = tuple(probes[i][0] for i in keep)
        sizes = tuple(probes[i][1] for i in keep)
        formats = tuple(probes[i][2] for i in keep)
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep]
        ids = [ids[i] for i in keep]
        splits = None if splits is None else [splits[i] for i in keep]
    return DatasetIndex(
        root=root,
        class_names=tuple(class_names),
        paths=tuple(files),
        labels=np.asarray(labels, dtype=np.int64),
        ids=tuple(ids),
        splits=None if splits is None else tuple(splits),
        modes=modes,
        sizes=sizes,
        formats=formats,
        skipped=tuple(skipped),
    )


def _probe_all(files: list[str], *, headers_only: bool) -> list:
    """Per file, ``(mode, size, format)`` or the reason it is unusable."""
    limit = Image.MAX_IMAGE_PIXELS
    headers = ([read_header(path, max_pixels=limit) for path in files] if headers_only
               else [None] * len(files))
    undecided = [i for i, found in enumerate(headers) if found is None]
    if not undecided:
        return headers
    # PIL releases the GIL while decoding, so threads give a real speed-up here. Warning
    # filters are process-wide and not thread-safe, so they are set here, once, in the
    # calling thread: _probe rejects over-limit images itself, PIL's warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            decoded = pool.map(_probe, [files[i] for i in undecided], chunksize=64)
            for i, probe in zip(undecided, decoded):
                headers[i] = probe
    return headers
