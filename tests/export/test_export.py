"""genaug.export.export_dataset: what it writes, the link modes, the cap and leakage rules,
the splits, determinism and atomicity."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from _export_helpers import COUNTS, write_cache
from PIL import Image

from genaug.data import DatasetIndex, split_dataset
from genaug.exceptions import ConfigError, DatasetError, GenaugWarning, OutputError
from genaug.export import MANIFEST_COLUMNS, FileLinker, export_dataset
from genaug.sampling import pool_limits


def read_rows(out: Path, split: str) -> list[dict]:
    with open(out / f"{split}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def all_rows(out: Path) -> list[dict]:
    return [row for split in ("train", "val", "test") for row in read_rows(out, split)]


def status_of(out: Path) -> dict:
    return json.loads((out / "status.json").read_text())


def test_it_writes_images_manifests_label_map_status_and_env_report(data, cache, tmp_path):
    out = tmp_path / "curated"
    result = export_dataset(data, synthetic_cache=cache, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "env_report.json", "label_map.json", "status.json", "test", "test.csv", "train",
        "train.csv", "val", "val.csv"]
    assert json.loads((out / "label_map.json").read_text()) == {"cat": 0, "dog": 1, "snake": 2}
    with open(out / "train.csv", newline="") as handle:
        assert tuple(next(csv.reader(handle))) == MANIFEST_COLUMNS
    rows = all_rows(out)
    assert len(rows) == len(result.images)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert files == {row["path"] for row in rows}  # every file listed once, nothing else
    for row in rows:
        assert row["path"] == f"{row['split']}/{row['label']}/{Path(row['path']).name}"
    env = json.loads((out / "env_report.json").read_text())
    assert env["versions"]["numpy"] == np.__version__
    assert env["inputs"]["data"] == os.path.abspath(data)
    status = status_of(out)
    assert status["generators"] == [{"backend": "test", "model": "tiny", "model_hash": None}]
    assert status["prompt_set_sha256"] == ["abc123"]
    assert status["link"]["mode"] == "hard" and status["link"]["files"] == len(rows)


def test_hard_links_share_the_original_inode(data, cache, tmp_path):
    out = tmp_path / "curated"
    result = export_dataset(data, synthetic_cache=cache, out_dir=out)
    assert {image.source for image in result.images} == {"real", "synthetic"}
    for image in result.images:
        assert os.stat(out / image.path).st_ino == os.stat(image.original).st_ino
    assert status_of(out)["link"]["copied_instead_of_hard_link"] == 0


def test_copy_mode_writes_files_of_their_own(data, cache, tmp_path):
    out = tmp_path / "curated"
    result = export_dataset(data, synthetic_cache=cache, out_dir=out, link="copy")
    for image in result.images:
        copied = out / image.path
        assert os.stat(copied).st_ino != os.stat(image.original).st_ino
        assert not copied.is_symlink() and os.stat(copied).st_nlink == 1
        assert copied.read_bytes() == Path(image.original).read_bytes()


def test_symlink_mode_points_at_the_originals(data, cache, tmp_path):
    out = tmp_path / "curated"
    result = export_dataset(data, synthetic_cache=cache, out_dir=out, link="symlink")
    for image in result.images:
        assert (out / image.path).is_symlink()
        assert os.path.samefile(out / image.path, image.original)


def test_across_filesystems_hard_links_fall_back_to_copies_with_one_warning(
        data, cache, tmp_path, monkeypatch):
    def cross_device(src, dst, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    out = tmp_path / "curated"
    with pytest.warns(GenaugWarning, match="copied instead of hard-linked") as caught:
        result = export_dataset(data, synthetic_cache=cache, out_dir=out)
    assert len([w for w in caught if issubclass(w.category, GenaugWarning)]) == 1
    assert "another filesystem" in str(caught[0].message)
    link = status_of(out)["link"]
    assert link == {"mode": "hard", "files": len(result.images),
                    "copied_instead_of_hard_link": len(result.images),
                    "fallback_reason": "on another filesystem"}
    for image in result.images:
        assert os.stat(out / image.path).st_ino != os.stat(image.original).st_ino
        assert (out / image.path).read_bytes() == Path(image.original).read_bytes()


def test_another_link_error_is_an_output_error(tmp_path, monkeypatch):
    def denied(src, dst, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "link", denied)
    source = tmp_path / "a.png"
    source.write_bytes(b"x")
    with pytest.raises(OutputError, match="Permission denied"):
        FileLinker("hard").place(str(source), tmp_path / "b.png")


def expected_totals(real_train: np.ndarray, target: int, cap: float) -> np.ndarray:
    """Per class: real + min(target - real, cap limit), given enough synthetic images."""
    limits = np.maximum(pool_limits(real_train, cap), 0)
    return real_train + np.minimum(np.maximum(target - real_train, 0), limits)


@pytest.mark.parametrize("cap, target", [(0.6, None), (0.5, None), (0.6, 30), (0.25, 30),
                                         (0.0, 30)])
def test_synthetic_images_fill_up_to_the_target_and_never_above_the_cap(data, cache, tmp_path,
                                                                         cap, target):
    out = tmp_path / "curated"
    export_dataset(data, synthetic_cache=cache, out_dir=out, synthetic_cap=cap,
                   target_per_class=target)
    status = status_of(out)
    real = np.asarray([status["per_class"][n]["original"] for n in COUNTS])
    totals = np.asarray([status["per_class"][n]["total"] for n in COUNTS])
    wanted_target = target if target is not None else real.max()
    assert totals.tolist() == expected_totals(real, wanted_target, cap).tolist()
    train = read_rows(out, "train")
    for name in COUNTS:
        synthetic = sum(r["label"] == name and r["source"] == "synthetic" for r in train)
        total = sum(r["label"] == name for r in train)
        assert synthetic == status["per_class"][name]["synthetic"]
        assert synthetic <= cap * total + 1e-9
        assert total <= max(wanted_target, status["per_class"][name]["original"])


def test_a_class_without_real_training_images_gets_no_synthetic_image(tmp_path,
                                                                       image_folder_factory):
    data = image_folder_factory({"cat": 10, "dog": 2})
    manifest = data / "manifest.csv"  # every dog image is a test image
    manifest.write_text("path,label,split\n" + "".join(
        f"{p.relative_to(data).as_posix()},{p.parent.name},"
        f"{'test' if p.parent.name == 'dog' else 'train'}\n" for p in sorted(data.rglob("*.png"))))
    cache = write_cache(tmp_path / "cache", {"cat": 5, "dog": 5})
    out = tmp_path / "curated"
    export_dataset(manifest, synthetic_cache=cache, out_dir=out, target_per_class=20)
    status = status_of(out)
    assert status["per_class"]["dog"] == {"original": 0, "synthetic": 0, "total": 0,
                                          "synthetic_share_of_images": 0.0}
    assert status["synthetic_plan"]["dog"] == {"wanted": 20, "cap_limit": 0, "available": 5,
                                               "chosen": 0}
    assert status["per_class"]["cat"]["synthetic"] == 5


def test_no_synthetic_image_derived_from_a_validation_or_test_image(data, cache, tmp_path):
    out = tmp_path / "curated"
    export_dataset(data, synthetic_cache=cache, out_dir=out, target_per_class=40,
                   synthetic_cap=0.9)
    held_out = {row["source_id"] for split in ("val", "test") for row in read_rows(out, split)}
    train = read_rows(out, "train")
    derived = [row for row in train if row["synthetic_id"].startswith("leak-")]
    assert derived  # images derived from training images may be used
    assert not {row["source_id"] for row in derived} & held_out
    assert all(row["source"] == "real" and not row["synthetic_id"]
               for split in ("val", "test") for row in read_rows(out, split))
    status = status_of(out)
    held_out_dogs = status["per_split"]["validation"]["original"]["dog"] \
        + status["per_split"]["test"]["original"]["dog"]
    assert status["excluded_for_leakage"] == held_out_dogs == 2
    assert status["per_split"]["validation"]["synthetic"] == {}


def test_the_split_is_split_dataset_s_stratified_split(data, cache, tmp_path):
    out = tmp_path / "curated"
    export_dataset(data, synthetic_cache=cache, out_dir=out, validation_split=0.15,
                   test_split=0.15, seed=3)
    splits = split_dataset(DatasetIndex.load(data), validation_split=0.15, test_split=0.15,
                           seed=3)
    for split, part in (("train", splits.train), ("val", splits.validation),
                        ("test", splits.test)):
        real = sorted(row["source_id"] for row in read_rows(out, split)
                      if row["source"] == "real")
        assert real == sorted(part.ids)
    for split in ("val", "test"):  # every class of two or more images is represented
        assert {row["label"] for row in read_rows(out, split)} == set(COUNTS)


def without_time(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "created"}


def test_the_same_seed_writes_the_same_export_and_another_seed_another(data, cache, tmp_path):
    def export(name, seed):
        out = tmp_path / name
        export_dataset(data, synthetic_cache=cache, out_dir=out, seed=seed)
        return ({split: (out / f"{split}.csv").read_text() for split in ("train", "val", "test")},
                without_time(status_of(out)), (out / "label_map.json").read_text())

    first, again, other = export("a", 0), export("b", 0), export("c", 1)
    assert first == again
    assert first[0]["train"] != other[0]["train"]


def test_a_manifest_split_column_and_a_test_dir_are_obeyed(data, tmp_path, image_folder_factory):
    manifest = data / "manifest.csv"
    rows = ["path,label,split"]
    for i, path in enumerate(sorted(data.rglob("*.png"))):
        split = "validation" if i % 5 == 0 else "train"
        rows.append(f"{path.relative_to(data).as_posix()},{path.parent.name},{split}")
    manifest.write_text("\n".join(rows) + "\n")
    test_dir = image_folder_factory({"cat": 2, "dog": 2, "snake": 2}, seed=9)
    out = tmp_path / "curated"
    export_dataset(manifest, out_dir=out, test_dir=test_dir, validation_split=0.5)
    validation = {row["source_id"] for row in read_rows(out, "val")}
    assert validation == {r.split(",")[0] for r in rows[1:] if r.endswith(",validation")}
    test = read_rows(out, "test")
    assert len(test) == 6
    assert all((test_dir / row["source_id"]).is_file() for row in test)
    assert status_of(out)["test_source"] == "test_index"


def test_a_failure_midway_leaves_neither_the_export_nor_a_temporary_folder(
        data, cache, tmp_path, monkeypatch):
    place = FileLinker.place
    calls = []

    def failing(self, source, destination):
        calls.append(source)
        if len(calls) == 5:
            raise KeyboardInterrupt
        place(self, source, destination)

    monkeypatch.setattr(FileLinker, "place", failing)
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        export_dataset(data, synthetic_cache=cache, out_dir=parent / "curated")
    assert list(parent.iterdir()) == []


def test_a_failed_overwrite_keeps_the_previous_export(data, cache, tmp_path, monkeypatch):
    out = tmp_path / "curated"
    export_dataset(data, synthetic_cache=cache, out_dir=out)
    before = (out / "train.csv").read_text()

    def broken(status, parameters, **inputs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("genaug.export._export._environment", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_dataset(data, synthetic_cache=cache, out_dir=out, overwrite=True, seed=1)
    assert (out / "train.csv").read_text() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder


def test_an_existing_export_is_replaced_only_with_overwrite(data, tmp_path):
    out = tmp_path / "curated"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputError, match="`out_dir` exists and is not empty.*`overwrite=True`"):
        export_dataset(data, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    export_dataset(data, out_dir=out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "train.csv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_dataset(data, out_dir=empty)  # an empty folder is fine
    assert (empty / "train.csv").is_file()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(link="move"), ConfigError, "`link` must be one of hard, copy, symlink"),
    (dict(synthetic_cap=1.0), ConfigError, r"`synthetic_cap` must be in \[0, 1\)"),
    (dict(validation_split=1.5), ConfigError, "`validation_split`"),
    (dict(test_split=-0.1), ConfigError, "`test_split`"),
    (dict(target_per_class=0), ConfigError, "`target_per_class` must be at least 1"),
    (dict(synthetic_cache="missing-cache"), Exception, "synthetic cache not found"),
])
def test_bad_options_raise_before_anything_is_written(data, tmp_path, kwargs, error, match):
    kwargs = {**kwargs}
    if kwargs.get("synthetic_cache"):
        kwargs["synthetic_cache"] = tmp_path / kwargs["synthetic_cache"]
    with pytest.raises(error, match=match):
        export_dataset(data, out_dir=tmp_path / "exports" / "curated", **kwargs)
    assert not (tmp_path / "exports").exists()


def test_the_export_may_not_replace_or_lie_inside_its_inputs(data, cache, tmp_path):
    with pytest.raises(ConfigError, match="lies inside the input"):
        export_dataset(data, out_dir=data / "curated")
    with pytest.raises(ConfigError, match="lies inside the input"):
        export_dataset(data, synthetic_cache=cache, out_dir=cache / "curated")
    with pytest.raises(ConfigError, match="would replace the input"):
        export_dataset(data, out_dir=data.parent, overwrite=True)
    assert data.is_dir() and not (data / "curated").exists()


def test_unreadable_real_files_and_missing_cache_files_are_reported(data, cache, tmp_path):
    (data / "cat" / "broken.png").write_bytes(b"not a png")
    (cache / "snake" / "snake-000.png").unlink()
    out = tmp_path / "curated"
    result = export_dataset(data, synthetic_cache=cache, out_dir=out)
    lines = "\n".join(result.lines())
    assert "Skipped 1 file (1 unreadable)" in lines
    assert f"skipped {data / 'cat' / 'broken.png'}: unreadable" in lines
    assert "problem: 1 record(s) whose image file is missing skipped" in lines
    status = status_of(out)
    assert [item["kind"] for item in status["skipped_files"]] == ["unreadable"]
    assert status["synthetic_cache_problems"]["missing_files"] == ["snake/snake-000.png"]
    assert "broken.png" not in (out / "train.csv").read_text()


def test_equal_file_names_in_one_folder_get_distinct_names(tmp_path, image_folder_factory):
    data = image_folder_factory({"cat": 6, "dog": 6})
    for name in ("cat", "dog"):  # cat/a/x.png and cat/b/x.png
        for sub in ("a", "b"):
            (data / name / sub).mkdir()
            Image.new("RGB", (8, 8), (len(sub), 0, 0)).save(data / name / sub / "x.png")
    out = tmp_path / "curated"
    result = export_dataset(data, out_dir=out, validation_split=0, test_split=None)
    names = [image.path for image in result.images]
    assert len(names) == len(set(names)) == 16
    assert len([n for n in names if Path(n).name.startswith("x")]) == 4


def test_no_readable_image_is_a_dataset_error(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "a.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="no readable images"):
        export_dataset(tmp_path / "data", out_dir=tmp_path / "curated")
    assert not (tmp_path / "curated").exists()
