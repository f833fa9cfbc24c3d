"""Which real images train, which validate and which test: one resolution for every loader.

``image_dataset_from_directory``, ``BalancedBatchGenerator``, ``genaug train`` (and anything that
exports a dataset) split the real images here, before any sampling, so a manifest's ``split``
column means the same thing everywhere and no held-out image, nor a synthetic image derived
from one, can reach training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from genaug.data._embedded import digits_longtail
from genaug.data._index import DatasetIndex, SkippedFile
from genaug.exceptions import DatasetError


@dataclass(frozen=True)
class DatasetSplits:
    """The real images of a run, split before any sampling.

    Every part is a :class:`DatasetIndex` with the classes of the whole index and no split
    column of its own (the split is resolved).

    Attributes
    ----------
    index : DatasetIndex
        Everything the data argument listed (a manifest's every row, with its split column).
    train : DatasetIndex
        The training images: a manifest's ``train`` rows and rows without a split, minus any
        validation part split off them.
    validation : DatasetIndex or None
        A manifest's ``validation`` rows, else a stratified ``validation_split`` of the training
        rows, else None.
    test : DatasetIndex or None
        ``test_index``, else a manifest's ``test`` rows, else a stratified ``test_split``, else
        None.
    validation_source, test_source : str
        How each held-out part was chosen, for logs (``"manifest split column"``,
        ``"stratified 20% split of the data (seed 0)"``, ``"test_index"`` or ``"none"``).
    withheld : DatasetIndex or None
        Rows held out without being used: a manifest's ``test`` rows when ``test_index``
        replaces them. They never reach training either.
    """

    index: DatasetIndex
    train: DatasetIndex
    validation: DatasetIndex | None
    test: DatasetIndex | None
    validation_source: str = "none"
    test_source: str = "none"
    withheld: DatasetIndex | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.index.class_names

    def held_out_ids(self) -> frozenset[str]:
        """Ids and absolute paths of every image that must not reach training (validation,
        test, withheld): a synthetic image whose ``source_id`` is one of them is excluded."""
        held: set[str] = set()
        for part in (self.validation, self.test, self.withheld):
            if part is not None:
                held |= set(part.ids) | set(part.paths)
        return frozenset(held)

    @property
    def skipped(self) -> tuple[SkippedFile, ...]:
        """The files left out while indexing (of ``index`` and of a separate ``test_index``),
        each once."""
        unique = {item.path: item for item in self.index.skipped}
        if self.test is not None:
            unique.update((item.path, item) for item in self.test.skipped
                          if item.path not in unique)
        return tuple(unique.values())


def split_dataset(index: DatasetIndex, *, validation_split: float | None = None,
                  test_split: float | None = None, test_index: DatasetIndex | None = None,
                  seed: int | None = 0) -> DatasetSplits:
    """Split an index into training, validation and test images.

    The test images are chosen first, then the validation images from what is left, and
    training gets the rest: nothing is oversampled yet, so no copy of a held-out image can
    reach training.

    Parameters
    ----------
    index : DatasetIndex
        A folder's or a manifest's images. A manifest's ``split`` column is obeyed: ``test``
        rows are only ever test images, ``validation`` rows only validation images, ``train``
        rows and rows without a split are training images.
    validation_split : float in (0, 1), optional
        Share of each class's training images held out for validation (stratified, seeded),
        when the manifest has no ``validation`` rows (with them it is not used:
        ``validation_source`` says which applied).
    test_split : float in (0, 1), optional
        Share of each class held out for testing (stratified, seeded), when neither
        ``test_index`` nor the manifest's ``test`` rows give a test set.
    test_index : DatasetIndex, optional
        A separate test set (e.g. another folder). It replaces the manifest's ``test`` rows,
        which are then withheld from every part.
    seed : int, optional
        Seed of the stratified splits; the same seed gives the same split.

    Returns
    -------
    DatasetSplits

    Examples
    --------
    >>> splits = split_dataset(DatasetIndex.load("data/manifest.csv"), validation_split=0.2)
    ... # doctest: +SKIP
    >>> model.fit(BalancedBatchGenerator(splits.train), ...)  # doctest: +SKIP
    """
    rows = np.asarray(index.splits) if index.splits is not None else None

    def rows_of(name: str) -> np.ndarray:
        return np.flatnonzero(rows == name) if rows is not None else np.arange(0)

    # 1. The test set: a separate index, the manifest's test rows, or a stratified split.
    rest = np.setdiff1d(np.arange(len(index)), rows_of("test"))
    test, withheld, test_source = None, None, "none"
    if test_index is not None:
        test, test_source = _plain(test_index), "test_index"
        if len(rows_of("test")):
            withheld = _plain(index.subset(rows_of("test")))
    elif len(rows_of("test")):
        test, test_source = _plain(index.subset(rows_of("test"))), "manifest split column"
    elif test_split:
        kept, held = index.subset(rest).stratified_split(test_split, seed=seed)
        test = _plain(index.subset(rest[held]))
        rest = rest[kept]
        test_source = f"stratified {test_split:.0%} split of the data (seed {seed})"

    # 2. The validation set: the manifest's validation rows, or a stratified split of the rest.
    validation, validation_source = None, "none"
    if len(rows_of("validation")):
        validation = _plain(index.subset(rows_of("validation")))
        rest = np.setdiff1d(rest, rows_of("validation"))
        validation_source = "manifest split column"
    elif validation_split:
        kept, held = index.subset(rest).stratified_split(validation_split, seed=seed)
        validation = _plain(index.subset(rest[held]))
        rest = rest[kept]
        validation_source = (f"stratified {validation_split:.0%} split of the training images "
                             f"(seed {seed})")

    # 3. Training: everything left.
    return DatasetSplits(index=index, train=_plain(index.subset(rest)), validation=validation,
                         test=test, validation_source=validation_source,
                         test_source=test_source, withheld=withheld)


def load_splits(data_dir=None, *, test_dir=None, class_names=None,
                validation_split: float | None = 0.1, test_split: float | None = 0.2,
                seed: int | None = 0) -> DatasetSplits:
    """Index ``data_dir`` (a folder or a manifest) and :func:`split_dataset` it.

    ``data_dir=None`` takes the embedded long-tailed digits (and their test folder, unless
    ``test_dir`` is given). ``test_dir`` is a separate test set indexed with the same class
    names. A folder with no readable image, or a split that leaves no test image, raises a
    :class:`~genaug.exceptions.DatasetError`.
    """
    if data_dir is None:
        data_dir, default_test = digits_longtail()
        test_dir = test_dir or default_test
    index = DatasetIndex.load(data_dir, class_names=class_names)
    if len(index) == 0:
        raise DatasetError(f"no readable images in {data_dir}")
    test_index = None
    if test_dir is not None:
        test_index = DatasetIndex.load(test_dir, class_names=index.class_names)
    splits = split_dataset(index, validation_split=validation_split or None,
                           test_split=test_split, test_index=test_index, seed=seed)
    if test_index is not None:
        splits = replace(splits, test_source=f"--test-dir {test_dir}")
    if splits.test is None or len(splits.test) == 0:
        raise DatasetError("the test set is empty")
    return splits


def _plain(part: DatasetIndex) -> DatasetIndex:
    """A resolved part: its split column is gone, so it is used whole wherever it goes."""
    return replace(part, splits=None)
