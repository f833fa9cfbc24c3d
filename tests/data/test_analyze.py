"""Dataset analysis: verify_class_balance, analyze_dataset and ``genaug analyze``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import genaug
from genaug.cache import CacheWriter
from genaug.cli import main
from genaug.data import DatasetIndex
from genaug.data import _analyze as analysis
from genaug.data._embedded import default_data_home, digits_longtail, long_tail_counts
from genaug.exceptions import DatasetError


def test_verify_class_balance_counts_every_class(small_dataset):
    assert genaug.verify_class_balance(small_dataset) == {"cat": 20, "dog": 4, "snake": 10}
    assert genaug.verify_class_balance(small_dataset, ["snake", "cat", "dog", "eel"]) == \
        {"snake": 10, "cat": 20, "dog": 4, "eel": 0}


def test_verify_class_balance_ignores_unusable_files(small_dataset):
    (small_dataset / "dog" / "broken.png").write_bytes(b"broken")
    (small_dataset / "dog" / "notes.md").write_text("x")
    assert genaug.verify_class_balance(small_dataset)["dog"] == 4


def test_verify_class_balance_reads_manifests(small_dataset):
    manifest = small_dataset / "m.csv"
    manifest.write_text("path,label\ncat/cat_000.png,cat\ndog/dog_000.png,dog\n")
    assert genaug.verify_class_balance(manifest, ["cat", "dog", "snake"]) == \
        {"cat": 1, "dog": 1, "snake": 0}


def test_verify_class_balance_on_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="data directory not found"):
        genaug.verify_class_balance(tmp_path / "missing")


def test_analyze_dataset_report(image_folder_factory):
    root = image_folder_factory({"cat": 12, "dog": 3}, size=(20, 16))
    image_folder_factory({"dog": 1}, size=(4, 40), mode="L", root=root / "dog" / "odd", seed=1)
    image_folder_factory({"dog": 1}, mode="P", root=root / "dog" / "pal", seed=2)
    (root / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    (root / "cat" / "notes.txt").write_text("x")
    report = analysis.analyze_dataset(DatasetIndex.load(root, class_names=["cat", "dog", "eel"]))
    assert report["num_images"] == 17 and report["num_classes"] == 3
    assert report["classes"]["cat"] == {"count": 12, "share": 12 / 17}
    assert report["classes"]["eel"] == {"count": 0, "share": 0.0}
    assert sum(c["share"] for c in report["classes"].values()) == pytest.approx(1.0)
    assert report["imbalance_ratio"] == pytest.approx(12 / 5)  # over the non-empty classes
    assert report["empty_classes"] == ["eel"]
    skipped = {os.path.basename(s["path"]): s["reason"] for s in report["skipped_files"]}
    assert skipped["notes.txt"] == "not an image file (extension)"
    assert skipped["corrupt.jpg"].startswith("unreadable or corrupt")
    assert report["modes"] == {"RGB": 15, "L": 1, "P": 1}
    assert report["sizes"]["min"] == [4, 16] and report["sizes"]["max"] == [20, 40]
    assert report["sizes"]["most_common"][0] == {"width": 20, "height": 16, "count": 15}
    assert report["sizes"]["distinct"] == 3
    assert [os.path.basename(p) for p in report["tiny_images"]] == ["dog_000.png"]
    assert report["huge_images"] == [] and report["splits"] is None
    json.dumps(report)  # JSON-ready


def test_analyze_flags_huge_images(image_folder_factory, monkeypatch):
    root = image_folder_factory({"a": 2}, size=(30, 30))
    image_folder_factory({"a": 1}, size=(64, 64), root=root / "a" / "big")
    monkeypatch.setattr(analysis, "HUGE_PIXELS", 1000)
    report = analysis.analyze_dataset(DatasetIndex.load(root))
    assert [os.path.basename(p) for p in report["huge_images"]] == ["a_000.png"]
    assert len(report["tiny_images"]) == 0


def test_analyze_of_a_folder_without_usable_images(image_folder_factory):
    root = image_folder_factory({"a": 0, "b": 0})
    (root / "a" / "x.png").write_bytes(b"")
    report = analysis.analyze_dataset(DatasetIndex.load(root))
    assert report["num_images"] == 0 and report["imbalance_ratio"] is None
    assert report["empty_classes"] == ["a", "b"] and report["sizes"]["min"] is None
    assert len(report["skipped_files"]) == 1


def test_analyze_reports_manifest_splits(small_dataset):
    manifest = small_dataset / "m.csv"
    manifest.write_text("cat/cat_000.png,cat,train\ncat/cat_001.png,cat,test\n"
                        "dog/dog_000.png,dog,valid\n")
    report = analysis.analyze_dataset(DatasetIndex.load(manifest))
    assert report["splits"] == {"train": 1, "test": 1, "validation": 1}


# --- the embedded dataset ------------------------------------------------------------------


def test_embedded_dataset_is_long_tailed_and_written_once(genaug_data_home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # speed: 2,000 tiny files
    assert default_data_home() == genaug_data_home
    train, test = digits_longtail()
    assert train.parent == genaug_data_home / "digits_longtail"
    counts = genaug.verify_class_balance(train)
    assert list(counts.values()) == long_tail_counts() == sorted(counts.values(), reverse=True)
    assert max(counts.values()) / min(counts.values()) == pytest.approx(18.75)
    assert set(genaug.verify_class_balance(test).values()) == {20}
    with Image.open(next((train / "9").iterdir())) as image:
        assert image.mode == "L" and image.size == (32, 32)
    # test and train images are distinct digits (scikit-learn's 1,797 images are all distinct)
    def pixels(folder):
        found = set()
        for path in folder.rglob("*.png"):
            with Image.open(path) as image:
                found.add(image.tobytes())
        return found

    test_pixels = pixels(test)
    assert len(test_pixels) == 200 and not test_pixels & pixels(train)
    marker = genaug_data_home / "digits_longtail" / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert digits_longtail() == (train, test) and marker.stat().st_mtime_ns == stamp


# --- genaug analyze ------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_analyze_cli_text_and_json(small_dataset, tmp_path):
    (small_dataset / "dog" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    Image.new("RGB", (4, 4)).save(small_dataset / "snake" / "tiny.png")
    out = tmp_path / "reports" / "analysis.json"
    result = invoke("analyze", small_dataset, "--classes", "cat,dog,snake,eel", "--json", out)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "35 images, 4 classes" in text
    assert "imbalance ratio (max/min): 5.00" in text
    assert "empty classes: eel" in text
    assert "1 tiny image(s)" in text
    assert "skipped " in text and "corrupt.png: unreadable or corrupt" in text
    assert f"wrote {out}" in text
    report = json.loads(out.read_text())
    assert report["classes"]["cat"]["count"] == 20 and report["classes"]["eel"]["count"] == 0
    assert report["imbalance_ratio"] == 5.0 and report["empty_classes"] == ["eel"]
    assert len(report["skipped_files"]) == 1
    assert report["modes"] == {"RGB": 35}
    assert not [p for p in out.parent.iterdir() if p.name != "analysis.json"]  # no temp files


def test_analyze_cli_reports_a_synthetic_cache(small_dataset, tmp_path):
    cache = tmp_path / "cache"
    with CacheWriter(cache) as writer:
        for i in range(3):
            writer.add(np.full((8, 8, 3), i, np.uint8), class_name="dog",
                       generator={"backend": "test", "model": "m1"})
        writer.add(np.zeros((8, 8, 3), np.uint8) + 50, class_name="bird")
    out = tmp_path / "a.json"
    result = invoke("analyze", small_dataset, "--synthetic-cache", cache, "--json", out)
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.stdout.splitlines()[1]
    dog_row = next(line for line in result.stdout.splitlines() if line.startswith("dog "))
    assert dog_row.split()[-1] == "3"
    assert "synthetic cache: records of classes unknown to the dataset skipped: bird (1)" \
        in result.stdout
    report = json.loads(out.read_text())["synthetic_cache"]
    assert report["counts"] == {"cat": 0, "dog": 3, "snake": 0}
    assert report["problems"]["unknown_classes"] == {"bird": 1}
    assert {"backend": "test", "model": "m1", "model_hash": None} in report["generators"]


def test_analyze_cli_huge_images_line(image_folder_factory, monkeypatch):
    root = image_folder_factory({"a": 2}, size=(40, 40))
    monkeypatch.setattr(analysis, "HUGE_PIXELS", 1000)
    result = invoke("analyze", root)
    assert result.exit_code == 0 and "2 huge image(s)" in result.stdout


def test_analyze_cli_manifest(small_dataset):
    manifest = small_dataset / "m.csv"
    manifest.write_text("path,label\ncat/cat_000.png,cat\ndog/dog_000.png,dog\n")
    result = invoke("analyze", manifest)
    assert result.exit_code == 0 and "2 images, 2 classes" in result.stdout


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "missing", "data directory not found"),
    (lambda tmp: tmp, "has no class folders"),
    (lambda tmp: tmp / "nope.csv", "data directory not found"),
])
def test_analyze_cli_bad_data_dir(tmp_path, make, match):
    result = invoke("analyze", make(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and match in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_analyze_cli_missing_synthetic_cache(small_dataset, tmp_path):
    result = invoke("analyze", small_dataset, "--synthetic-cache", tmp_path / "nocache")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: synthetic cache not found: {tmp_path / 'nocache'}"


def test_analyze_cli_json_into_a_directory(small_dataset, tmp_path):
    # Bug fixed: --json naming a folder crashed with an IsADirectoryError traceback.
    result = invoke("analyze", small_dataset, "--json", tmp_path)
    assert result.exit_code == 2, result.output
    assert "is a directory" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_analyze_cli_json_under_a_file(small_dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    result = invoke("analyze", small_dataset, "--json", blocker / "report.json")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot write")
    assert blocker.read_text() == "keep me"


def test_analyze_cli_json_keeps_the_old_report_when_writing_fails(small_dataset, tmp_path,
                                                                   monkeypatch):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "report.json"
    out.write_text('{"old": true}')

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    result = invoke("analyze", small_dataset, "--json", out)
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.stderr
    assert json.loads(out.read_text()) == {"old": True}
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # temp file removed
