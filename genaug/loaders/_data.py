"""The data argument of both loaders, normalised in one place (as Keras's ``get_data_adapter``).

A folder, a CSV manifest, a :class:`DatasetIndex`, an ``(x, y)`` pair or ``x`` with ``y`` all
become the same :class:`LoaderData`: the real training (and validation) images, the classes,
and the ids that must never reach training.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.data import DatasetIndex, DatasetSplits, skipped_summary, split_dataset
from genaug.exceptions import ConfigError, DatasetError
from genaug.sources import RealSource


@dataclass(frozen=True)
class LoaderData:
    """A loader's data, resolved.

    Attributes
    ----------
    training : RealSource
        The images a training loader draws from.
    validation : RealSource or None
        The validation images (a manifest's ``validation`` rows or ``validation_split``).
    held_out_ids : frozenset of str
        Every validation and test image's id and path: synthetic images derived from them are
        excluded from training.
    splits : DatasetSplits or None
        How the files were split (None for in-memory arrays).
    indexed : bool
        The loader indexed a folder or manifest itself (and reports what it found).
    """

    training: RealSource
    validation: RealSource | None = None
    held_out_ids: frozenset[str] = frozenset()
    splits: DatasetSplits | None = None
    indexed: bool = False

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.training.class_names

    @property
    def skipped(self):
        """Files left out while indexing the data (empty for arrays)."""
        return self.splits.skipped if self.splits is not None else ()

    def found_message(self, holder: str = "dataset") -> str:
        """Keras's ``Found N files belonging to K classes.``, with what was skipped and what
        the manifest held out."""
        index = self.splits.index
        line = f"Found {len(index)} files belonging to {index.num_classes} classes."
        skipped = skipped_summary(self.skipped)
        if skipped:
            line += f" {skipped}: see {holder}.skipped."
        if self.splits.test is not None and self.splits.test_source == "manifest split column":
            line += f" The manifest's {len(self.splits.test)} test files are never loaded."
        return line


def adapt_data(data, y=None, *, class_names=None, validation_split: float | None = None,
               seed: int | None = 0) -> LoaderData:
    """Normalise a loader's ``data`` (and ``y``) argument.

    Parameters
    ----------
    data : path-like, DatasetIndex, (x, y) tuple or array
        An image folder (one sub-folder per class), a CSV manifest ``path,label[,split]``, an
        index, an in-memory ``(x, y)`` pair, or ``x`` with ``y`` given separately.
    y : array-like, optional
        Labels (class indices or names) when ``data`` is an array.
    class_names : sequence of str, optional
        Explicit classes; for arrays, the names of label indices ``0..K-1``.
    validation_split, seed
        See :func:`genaug.data.split_dataset`; files only. A manifest's ``test`` rows are
        never training images, and its ``validation`` rows form the validation set.
    """
    if y is not None or isinstance(data, tuple):
        if validation_split:
            raise ConfigError("validation_split needs files; split in-memory arrays yourself")
        return LoaderData(training=_array_source(data, y, class_names))
    indexed = not isinstance(data, DatasetIndex)
    # Headers only: a file that breaks at decode time is replaced by the loaders, and
    # ``genaug analyze`` is where every file is decoded.
    index = (DatasetIndex.load(Path(data), class_names=class_names, validate="headers")
             if indexed else data)
    if len(index) == 0:
        raise DatasetError(f"no images found in {data}" if indexed else "the index is empty")
    splits = split_dataset(index, validation_split=validation_split, seed=seed)
    if validation_split and splits.validation_source == "manifest split column":
        warnings.warn(f"the manifest's {len(splits.validation)} validation rows are the "
                      f"validation set; validation_split={validation_split} is ignored",
                      stacklevel=3)
    return LoaderData(
        training=RealSource(splits.train),
        validation=RealSource(splits.validation) if splits.validation is not None else None,
        held_out_ids=splits.held_out_ids(), splits=splits, indexed=indexed)


def _array_source(data, y, class_names) -> RealSource:
    x, labels = (data, y) if y is not None else data
    labels = np.asarray(labels)
    if labels.dtype.kind in "USO":
        names = list(class_names) if class_names is not None else sorted(set(labels.tolist()))
        position = {n: i for i, n in enumerate(names)}
        unknown = sorted({str(v) for v in labels.tolist()} - set(map(str, position)))
        if unknown:
            raise DatasetError(f"labels not in class_names: {', '.join(unknown)}")
        labels = np.asarray([position[v] for v in labels.tolist()], dtype=np.int64)
        class_names = names
    return RealSource(images=x, labels=labels, class_names=class_names)
