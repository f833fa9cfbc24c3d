"""split_dataset: one resolution of train / validation / test for every loader and command."""

from __future__ import annotations

import numpy as np
import pytest

from genaug.data import DatasetIndex, split_dataset


def manifest(image_folder_factory, tmp_path, counts=None):
    """Rows of each class in the order train, train, ..., validation, test, test, blank."""
    counts = counts or {"cat": 12, "dog": 6}
    image_folder_factory(counts, root=tmp_path)
    rows = ["path,label,split"]
    for name, n in counts.items():
        for i in range(n):
            split = ("validation" if i == n - 4 else "test" if i >= n - 3 and i < n - 1
                     else "" if i == n - 1 else "train")
            rows.append(f"{name}/{name}_{i:03d}.png,{name},{split}")
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def split_of(index, part):
    return {index.splits[index.ids.index(i)] for i in part.ids}


def test_a_manifests_split_column_is_obeyed(image_folder_factory, tmp_path):
    index = DatasetIndex.load(manifest(image_folder_factory, tmp_path))
    splits = split_dataset(index, validation_split=0.5, test_split=0.5, seed=0)
    # Rows without a split are training rows: the index stores them as "train".
    assert split_of(index, splits.train) == {"train"}
    assert split_of(index, splits.validation) == {"validation"}
    assert split_of(index, splits.test) == {"test"}
    assert splits.train.counts().tolist() == [9, 3]
    assert splits.validation.counts().tolist() == [1, 1]
    assert splits.test.counts().tolist() == [2, 2]
    assert splits.validation_source == splits.test_source == "manifest split column"
    assert len(splits.train) + len(splits.validation) + len(splits.test) == len(index)
    # The parts are resolved: each is used whole wherever it goes.
    assert splits.train.splits is None and splits.test.splits is None
    held = splits.held_out_ids()
    assert set(splits.test.ids) <= held and set(splits.validation.paths) <= held
    assert not held & (set(splits.train.ids) | set(splits.train.paths))


def test_folders_are_split_stratified_test_first_then_validation(small_dataset):
    index = DatasetIndex.load(small_dataset)
    splits = split_dataset(index, validation_split=0.1, test_split=0.2, seed=0)
    # The same split genaug train made before split_dataset existed.
    kept, held = index.stratified_split(0.2, seed=0)
    rest = index.subset(kept)
    kept_again, validation = rest.stratified_split(0.1, seed=0)
    assert splits.test.ids == index.subset(held).ids
    assert splits.validation.ids == rest.subset(validation).ids
    assert splits.train.ids == rest.subset(kept_again).ids
    assert splits.test_source == "stratified 20% split of the data (seed 0)"
    again = split_dataset(index, validation_split=0.1, test_split=0.2, seed=0)
    assert again.train.ids == splits.train.ids


def test_without_fractions_everything_trains(small_dataset):
    index = DatasetIndex.load(small_dataset)
    splits = split_dataset(index)
    assert splits.train.ids == index.ids
    assert splits.validation is None and splits.test is None
    assert splits.held_out_ids() == frozenset()


def test_a_separate_test_set_withholds_the_manifests_test_rows(image_folder_factory, tmp_path):
    # Bug fixed: with --test-dir, a manifest's test rows were trained on.
    index = DatasetIndex.load(manifest(image_folder_factory, tmp_path / "a"))
    other = DatasetIndex.load(image_folder_factory({"cat": 2, "dog": 2}),
                              class_names=index.class_names)
    splits = split_dataset(index, test_index=other, seed=0)
    assert splits.test.ids == other.ids and splits.test_source == "test_index"
    assert split_of(index, splits.train) == {"train"}
    assert len(splits.withheld) == 4
    assert set(splits.withheld.paths) <= splits.held_out_ids()


def test_skipped_files_of_both_indexes_once(image_folder_factory, tmp_path):
    root = image_folder_factory({"a": 4, "b": 4})
    (root / "a" / "broken.png").write_bytes(b"garbage")
    test_root = image_folder_factory({"a": 2, "b": 2})
    (test_root / "b" / "notes.txt").write_text("x")
    index = DatasetIndex.load(root)
    splits = split_dataset(index, test_index=DatasetIndex.load(test_root), validation_split=0.25)
    assert sorted(s.kind for s in splits.skipped) == ["not an image", "unreadable"]
    assert np.all(splits.train.counts() > 0)


@pytest.mark.parametrize("fraction", [1.5, -0.2])
def test_bad_fractions_are_one_clear_error(small_dataset, fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_dataset(DatasetIndex.load(small_dataset), validation_split=fraction)
