"""DatasetIndex: folders and CSV manifests, explicit classes, unusable files, splits."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from genaug.data import IMAGE_EXTENSIONS, DatasetIndex
from genaug.exceptions import ConfigError, DatasetError


def reasons(index) -> dict[str, str]:
    """File name -> skip reason."""
    return {os.path.basename(s.path): s.reason for s in index.skipped}


# --- folders -------------------------------------------------------------------------------


def test_folder_classes_sorted_counts_and_ids(image_folder_factory):
    root = image_folder_factory({"dog": 3, "cat": 5, "ant": 1})
    index = DatasetIndex.load(root)
    assert index.class_names == ("ant", "cat", "dog")
    assert index.counts().tolist() == [1, 5, 3]
    assert len(index) == 9 and index.num_classes == 3
    assert index.ids[0] == "ant/ant_000.png"
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in index.paths)
    assert index.modes == ("RGB",) * 9 and index.sizes == ((16, 16),) * 9
    assert index.skipped == () and index.splits is None


@pytest.mark.parametrize("ext", [e.lstrip(".") for e in IMAGE_EXTENSIONS])
def test_every_supported_extension_is_indexed(image_folder_factory, ext):
    root = image_folder_factory({"a": 2}, ext=ext)
    index = DatasetIndex.load(root)
    assert index.counts().tolist() == [2], reasons(index)


def test_upper_case_extension_and_nested_folders(image_folder_factory):
    root = image_folder_factory({"a": 2})
    (root / "a" / "a_000.png").rename(root / "a" / "A_000.PNG")
    (root / "a" / "sub").mkdir()
    (root / "a" / "a_001.png").rename(root / "a" / "sub" / "deep.png")
    assert sorted(DatasetIndex.load(root).ids) == ["a/A_000.PNG", "a/sub/deep.png"]


def test_explicit_classes_keep_empty_and_missing_classes(image_folder_factory):
    root = image_folder_factory({"cat": 3, "empty": 0})
    index = DatasetIndex.load(root, class_names=["zebra", "cat", "empty"])
    assert index.class_names == ("zebra", "cat", "empty")  # the given order, not sorted
    assert index.counts().tolist() == [0, 3, 0]
    assert set(index.labels.tolist()) == {1}


def test_explicit_classes_as_comma_string(image_folder_factory):
    root = image_folder_factory({"a": 1, "b": 2})
    assert DatasetIndex.load(root, class_names="b, a").class_names == ("b", "a")


def test_empty_class_folder_is_a_class_with_zero_images(image_folder_factory):
    index = DatasetIndex.load(image_folder_factory({"a": 2, "b": 0}))
    assert dict(zip(index.class_names, index.counts().tolist())) == {"a": 2, "b": 0}


def test_folders_outside_explicit_classes_are_ignored_with_a_warning(image_folder_factory):
    root = image_folder_factory({"a": 2, "b": 2})
    with pytest.warns(UserWarning, match="folders not in class_names are ignored: b"):
        index = DatasetIndex.load(root, class_names=["a"])
    assert index.counts().tolist() == [2]


def test_hidden_files_and_folders_are_ignored(image_folder_factory):
    root = image_folder_factory({"a": 2})
    image_folder_factory({"x": 3}, root=root / ".ipynb_checkpoints")
    image_folder_factory({"x": 1}, root=root / "a" / ".cache")
    (root / "a" / ".DS_Store").write_bytes(b"\0\0")
    index = DatasetIndex.load(root)
    assert index.class_names == ("a",)
    assert len(index) == 2 and index.skipped == ()


@pytest.mark.parametrize("class_names, match", [
    ([], "class_names is empty"),
    (["a", "b", "a"], "class_names repeats a"),
])
def test_bad_explicit_class_lists(image_folder_factory, class_names, match):
    with pytest.raises(DatasetError, match=match):
        DatasetIndex.load(image_folder_factory({"a": 1}), class_names=class_names)


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match="data directory not found"):
        DatasetIndex.load(tmp_path / "nope")


def test_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        DatasetIndex.load(tmp_path / "data.txt")


def test_directory_without_class_folders(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match=r"has no class folders; expected .*/<class>/<image>"):
        DatasetIndex.load(tmp_path)


# --- unusable files ------------------------------------------------------------------------


def test_corrupt_truncated_empty_and_non_image_files_are_skipped_and_reported(
        image_folder_factory):
    root = image_folder_factory({"a": 3, "b": 2})
    good = (root / "a" / "a_000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "a" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "a" / "empty.webp").write_bytes(b"")
    (root / "b" / "text_named.png").write_text("hello")
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "b" / "labels.csv").write_text("x,y")
    index = DatasetIndex.load(root)
    assert index.counts().tolist() == [3, 2]
    why = reasons(index)
    assert set(why) == {"truncated.png", "garbage.jpg", "empty.webp", "text_named.png",
                        "notes.txt", "labels.csv"}
    assert why["notes.txt"] == why["labels.csv"] == "not an image file (extension)"
    for name in ("truncated.png", "garbage.jpg", "empty.webp", "text_named.png"):
        assert why[name].startswith("unreadable or corrupt:"), why[name]
        assert "\n" not in why[name]
    # every reported path is absolute, like the indexed paths
    assert all(os.path.isabs(s.path) for s in index.skipped)
    assert not set(index.paths) & {s.path for s in index.skipped}


def test_broken_symlink_is_reported_not_fatal(image_folder_factory):
    root = image_folder_factory({"a": 2})
    os.symlink(root / "a" / "gone.png", root / "a" / "dangling.png")
    index = DatasetIndex.load(root)
    assert len(index) == 2
    assert "unreadable or corrupt" in reasons(index)["dangling.png"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read files without read permission")
def test_unreadable_file_is_reported(image_folder_factory):
    root = image_folder_factory({"a": 2})
    (root / "a" / "a_000.png").chmod(0)
    try:
        index = DatasetIndex.load(root)
    finally:
        (root / "a" / "a_000.png").chmod(0o644)
    assert len(index) == 1
    assert "PermissionError" in reasons(index)["a_000.png"]


def test_symlinked_files_and_class_folders_are_indexed(image_folder_factory, tmp_path):
    # Bug fixed: ids were computed from resolved paths, so a symlink to a file outside the
    # dataset folder raised ValueError ("is not in the subpath").
    elsewhere = image_folder_factory({"z": 2}, root=tmp_path / "elsewhere")
    root = image_folder_factory({"a": 1}, root=tmp_path / "data")
    os.symlink(elsewhere / "z" / "z_000.png", root / "a" / "linked.png")
    os.symlink(elsewhere / "z", root / "zlinked", target_is_directory=True)
    index = DatasetIndex.load(root)
    assert index.class_names == ("a", "zlinked")
    assert sorted(index.ids) == ["a/a_000.png", "a/linked.png", "zlinked/z_000.png",
                                 "zlinked/z_001.png"]
    assert index.counts().tolist() == [2, 2]


def test_decompression_bombs_are_skipped(image_folder_factory, monkeypatch):
    root = image_folder_factory({"a": 2})
    Image.new("L", (40, 40)).save(root / "a" / "warns.png")     # 1600 px: PIL warns
    Image.new("L", (64, 64)).save(root / "a" / "refused.png")   # 4096 px: PIL refuses
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    index = DatasetIndex.load(root)
    assert index.counts().tolist() == [2]
    why = reasons(index)
    assert "decompression-bomb" in why["warns.png"] and "decompression-bomb" in why["refused.png"]


def test_indexing_leaves_the_warning_filters_alone(image_folder_factory, monkeypatch):
    # Bug fixed: warnings.catch_warnings() inside the probing threads is not thread-safe and
    # left "error" filters for DecompressionBombWarning installed process-wide.
    root = image_folder_factory({"a": 40, "b": 40})
    Image.new("L", (40, 40)).save(root / "a" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    before = list(warnings.filters)
    for _ in range(3):
        DatasetIndex.load(root)
    assert list(warnings.filters) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(root / "a" / "big.png") as image:  # warns, must not raise
            image.load()


def test_validate_false_skips_decoding(image_folder_factory):
    root = image_folder_factory({"a": 2})
    (root / "a" / "broken.png").write_bytes(b"broken")
    index = DatasetIndex.load(root, validate=False)
    assert len(index) == 3 and index.modes is None and index.sizes is None


def odd_files(root):
    """Files the header check accepts after walking further (progressive, a long EXIF
    segment) and files it leaves to a full decode (other modes, trailing bytes, broken)."""
    rgb = Image.new("RGB", (24, 20), (10, 200, 30))
    rgb.save(root / "a" / "progressive.jpg", progressive=True)
    exif = Image.Exif()
    exif[0x010E] = "x" * 5000  # ImageDescription
    rgb.save(root / "a" / "exif.jpg", exif=exif)
    Image.new("CMYK", (8, 8)).save(root / "a" / "cmyk.jpg")
    Image.new("LA", (8, 8)).save(root / "a" / "gray_alpha.png")
    Image.new("1", (8, 8)).save(root / "a" / "bilevel.png")
    with open(root / "a" / "trailing.png", "wb") as handle:  # bytes after IEND
        handle.write((root / "a" / "a_000.png").read_bytes() + b"\0" * 5)
    good = (root / "a" / "a_001.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "a" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "a" / "empty.png").write_bytes(b"")
    os.symlink(root / "a" / "gone.png", root / "a" / "dangling.png")


@pytest.mark.parametrize("mode, ext", [("RGB", "png"), ("L", "png"), ("RGBA", "png"),
                                       ("P", "png"), ("I;16", "png"), ("RGB", "jpg"),
                                       ("L", "jpg"), ("RGB", "webp"), ("RGB", "bmp"),
                                       ("P", "gif")])
def test_header_validation_finds_what_decoding_finds(image_folder_factory, mode, ext):
    root = image_folder_factory({"a": 3, "b": 2}, size=(20, 12), mode=mode, ext=ext)
    if mode == "RGB" and ext == "png":
        odd_files(root)
    decoded = DatasetIndex.load(root)
    headers = DatasetIndex.load(root, validate="headers")
    assert headers.paths == decoded.paths and headers.ids == decoded.ids
    assert headers.modes == decoded.modes and headers.sizes == decoded.sizes
    assert headers.formats == decoded.formats
    assert reasons(headers) == reasons(decoded)


def test_header_validation_reads_no_pixels_of_plain_png_and_jpeg(image_folder_factory,
                                                                 corrupt_pixel_data,
                                                                 monkeypatch):
    root = image_folder_factory({"a": 2}, size=(20, 12))
    image_folder_factory({"a": 2}, size=(20, 12), mode="L", ext="jpg", root=root)
    corrupt_pixel_data(root / "a" / "a_000.png")
    decoded = []
    monkeypatch.setattr("genaug.data._index.probe_image",
                        lambda path, **kw: decoded.append(path))
    index = DatasetIndex.load(root, validate="headers")
    assert decoded == [] and len(index) == 4  # the corrupt one is caught at decode time
    assert str(root / "a" / "a_000.png") in index.paths
    assert set(index.formats) == {"PNG", "JPEG"} and index.sizes == ((20, 12),) * 4


def test_validate_takes_only_its_three_values(image_folder_factory):
    with pytest.raises(ConfigError, match="validate must be True, False or 'headers'"):
        DatasetIndex.load(image_folder_factory({"a": 1}), validate="pixels")


# --- CSV manifests -------------------------------------------------------------------------


def write_manifest(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_manifest_with_header_splits_and_relative_paths(image_folder_factory, tmp_path):
    image_folder_factory({"cat": 3, "dog": 2}, root=tmp_path / "imgs")
    manifest = write_manifest(tmp_path / "m.csv", (
        "path,label,split\n"
        "imgs/cat/cat_000.png,cat,train\n"
        "imgs/cat/cat_001.png,cat,val\n"
        "imgs/cat/cat_002.png,cat,test\n"
        f"{tmp_path}/imgs/dog/dog_000.png,dog,\n"
        "imgs/dog/dog_001.png , dog , Testing\n"))
    with pytest.raises(DatasetError, match=r"row 5 has unknown split '.*Testing'"):
        DatasetIndex.load(manifest)
    manifest.write_text(manifest.read_text().replace("Testing", "TEST"))
    index = DatasetIndex.load(manifest)
    assert index.class_names == ("cat", "dog")
    assert index.splits == ("train", "validation", "test", "train", "test")
    assert index.split_indices("test").tolist() == [2, 4]
    assert index.ids[0] == "imgs/cat/cat_000.png"


def test_csv_without_header_and_with_explicit_classes(image_folder_factory, tmp_path):
    image_folder_factory({"cat": 2}, root=tmp_path)
    manifest = write_manifest(tmp_path / "m.csv", "cat/cat_000.png,cat\ncat/cat_001.png,cat\n"
                                                  "\n  \n")
    index = DatasetIndex.load(manifest, class_names=["cat", "bird"])
    assert index.counts().tolist() == [2, 0] and index.splits is None


def test_csv_rows_that_cannot_be_used_are_skipped(image_folder_factory, tmp_path):
    image_folder_factory({"cat": 2}, root=tmp_path)
    (tmp_path / "cat" / "corrupt.png").write_bytes(b"nope")
    (tmp_path / "readme.txt").write_text("x")
    manifest = write_manifest(tmp_path / "m.csv", (
        "path,label\ncat/cat_000.png,cat\ncat/missing.png,cat\ncat/corrupt.png,cat\n"
        "readme.txt,cat\ncat/cat_001.png,bird\n"))
    index = DatasetIndex.load(manifest, class_names=["cat"])
    assert index.ids == ("cat/cat_000.png",)
    why = reasons(index)
    assert why["missing.png"] == "file not found"
    assert why["readme.txt"] == "not an image file (extension)"
    assert "unreadable or corrupt" in why["corrupt.png"]
    assert why["cat_001.png"] == "label 'bird' not in class_names"


def test_csv_with_byte_order_mark_header(image_folder_factory, tmp_path):
    # Bug fixed: a BOM (Excel's "CSV UTF-8") hid the header, which became a bogus class
    # "label" and a skipped file "\ufeffpath".
    image_folder_factory({"cat": 1, "dog": 1}, root=tmp_path)
    manifest = write_manifest(tmp_path / "m.csv", "\ufeffpath,label\ncat/cat_000.png,cat\n"
                                                  "dog/dog_000.png,dog\n")
    index = DatasetIndex.load(manifest)
    assert index.class_names == ("cat", "dog")
    assert index.skipped == ()


def test_csv_listing_a_file_twice_keeps_it_once(image_folder_factory, tmp_path):
    # Bug fixed: a file listed twice was indexed twice, so a split could put one copy in
    # training and the other in the test set.
    image_folder_factory({"cat": 2}, root=tmp_path)
    manifest = write_manifest(tmp_path / "m.csv", (
        "path,label\ncat/cat_000.png,cat\ncat/cat_001.png,cat\n./cat/cat_000.png,cat\n"
        "cat/cat_000.png,dog\n"))
    index = DatasetIndex.load(manifest)
    assert index.ids == ("cat/cat_000.png", "cat/cat_001.png")
    assert len(index.skipped) == 2
    assert all("listed more than once" in s.reason for s in index.skipped)


@pytest.mark.parametrize("text, match", [
    ("", "lists no images"),
    ("path,label\n", "lists no images"),
    ("path,label\njust_a_path.png\n", r"row 1 needs at least path,label"),
])
def test_bad_manifests(tmp_path, text, match):
    with pytest.raises(DatasetError, match=match):
        DatasetIndex.load(write_manifest(tmp_path / "m.csv", text))


def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match="manifest not found"):
        DatasetIndex.from_csv(tmp_path / "nope.csv")


# --- subsets and splits --------------------------------------------------------------------


def test_subset_keeps_classes_and_aligned_fields(small_dataset):
    index = DatasetIndex.load(small_dataset)
    part = index.subset(index.labels == 1)
    assert part.class_names == index.class_names
    assert part.counts().tolist() == [0, 4, 0]
    assert part.modes == ("RGB",) * 4 and all(i.startswith("dog/") for i in part.ids)
    assert index.subset([3, 0]).ids == (index.ids[3], index.ids[0])


def test_subset_with_an_empty_selection(small_dataset):
    # Bug fixed: np.asarray([]) is float, and indexing with it raised IndexError.
    index = DatasetIndex.load(small_dataset)
    empty = index.subset([])
    assert len(empty) == 0 and empty.counts().tolist() == [0, 0, 0]
    assert len(index.subset(np.zeros(len(index), bool))) == 0


def test_paths_by_class_keeps_index_order_and_empty_classes(small_dataset):
    index = DatasetIndex.load(small_dataset).subset(DatasetIndex.load(small_dataset).labels != 2)
    grouped = index.paths_by_class()
    assert list(grouped) == list(index.class_names) and grouped[index.class_names[2]] == []
    for label, name in enumerate(index.class_names):
        assert grouped[name] == [p for p, y in zip(index.paths, index.labels) if y == label]
    assert sum(map(len, grouped.values())) == len(index)


def test_stratified_split_is_per_class_disjoint_and_deterministic(image_folder_factory):
    index = DatasetIndex.load(image_folder_factory({"a": 20, "b": 4, "c": 2, "d": 1, "e": 0}))
    kept, held = index.stratified_split(0.2, seed=3)
    assert not set(kept) & set(held)
    assert sorted([*kept, *held]) == list(range(len(index)))
    held_counts = index.subset(held).counts().tolist()
    kept_counts = index.subset(kept).counts().tolist()
    # every class with >= 2 images gives at least one and keeps at least one; one image stays
    assert held_counts == [4, 1, 1, 0, 0] and kept_counts == [16, 3, 1, 1, 0]
    again = index.stratified_split(0.2, seed=3)
    assert np.array_equal(again[0], kept) and np.array_equal(again[1], held)
    other = index.stratified_split(0.2, seed=4)
    assert not np.array_equal(other[1], held)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fractions(small_dataset, fraction):
    with pytest.raises(DatasetError, match="between 0 and 1"):
        DatasetIndex.load(small_dataset).stratified_split(fraction)
