"""User mistakes give one ``Error: ...`` line and exit code 2, before any training; bad files
in an otherwise good dataset are skipped and reported, and the run completes."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from PIL import Image

from genaug.cli import main

FAST = ["--epochs", "1", "--image-size", "16", "--model-width", "8", "--batch-size", "8"]


@pytest.fixture
def run(tmp_path, genaug_data_home):
    """Invoke ``genaug train`` with outputs under ``tmp_path`` (a previous metrics.json there)."""
    out, models = tmp_path / "out", tmp_path / "models"
    out.mkdir()
    (out / "metrics.json").write_text('{"previous": "run"}')

    def invoke(*args, outputs=True):
        args = ["train", *map(str, args)]
        if outputs:
            args += ["--output-dir", str(out), "--model-dir", str(models)]
        return CliRunner().invoke(main, args)

    invoke.out, invoke.models = out, models
    return invoke


def assert_user_error(result, match: str, run=None):
    """Exit 2, exactly one ``Error:`` line on stderr, no traceback, nothing written."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output
    if run is not None:
        assert json.loads((run.out / "metrics.json").read_text()) == {"previous": "run"}
        assert sorted(p.name for p in run.out.iterdir()) == ["metrics.json"]
        assert not list(run.models.glob("*")) if run.models.exists() else True


def test_missing_data_directory(run, tmp_path):
    assert_user_error(run(tmp_path / "missing", *FAST), "data directory not found", run)


def test_data_path_is_a_file(run, tmp_path):
    (tmp_path / "data.txt").write_text("x")
    assert_user_error(run(tmp_path / "data.txt", *FAST), "not a directory", run)


def test_directory_without_class_folders(run, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (16, 16)).save(flat / "image.png")
    assert_user_error(run(flat, *FAST), "has no class folders", run)


def test_no_readable_images(run, image_folder_factory):
    root = image_folder_factory({"a": 0, "b": 0})
    (root / "a" / "x.png").write_bytes(b"not a png")
    (root / "b" / "y.txt").write_text("text")
    assert_user_error(run(root, *FAST), "no readable images", run)


def test_empty_class_folder_under_balanced(run, image_folder_factory):
    root = image_folder_factory({"a": 6, "b": 4, "empty": 0})
    assert_user_error(run(root, "--balanced", *FAST),
                      "class(es) with no training image: empty", run)


def test_explicit_class_without_images_under_balanced(run, small_dataset):
    result = run(small_dataset, "--balanced", "--classes", "cat,dog,snake,eel", *FAST)
    assert_user_error(result, "class(es) with no training image: eel", run)


def test_empty_class_with_class_weights(run, image_folder_factory):
    root = image_folder_factory({"a": 6, "b": 4, "empty": 0})
    assert_user_error(run(root, "--class-weights", *FAST),
                      "cannot compute class weights: no samples for class(es) empty", run)


def test_missing_test_dir(run, small_dataset, tmp_path):
    assert_user_error(run(small_dataset, "--test-dir", tmp_path / "nope", *FAST),
                      "data directory not found", run)


def test_test_dir_without_the_training_classes(run, small_dataset, image_folder_factory):
    test_dir = image_folder_factory({"x": 2, "y": 2})
    with pytest.warns(UserWarning, match="folders not in class_names are ignored: x, y"):
        result = run(small_dataset, "--test-dir", test_dir, *FAST)
    assert_user_error(result, "the test set is empty", run)


def test_manifest_with_an_unknown_split(run, small_dataset):
    manifest = small_dataset / "m.csv"
    manifest.write_text("cat/cat_000.png,cat,holdout\n")
    assert_user_error(run(manifest, *FAST), "unknown split 'holdout'", run)


def test_synthetic_options_without_a_cache(run, small_dataset):
    assert_user_error(run(small_dataset, "--synthetic-ratio", "0.3", *FAST),
                      "synthetic options need --synthetic-cache", run)


def test_missing_synthetic_cache(run, small_dataset, tmp_path):
    assert_user_error(run(small_dataset, "--synthetic-cache", tmp_path / "nocache", *FAST),
                      "synthetic cache not found", run)


def test_repeated_class_names(run, small_dataset):
    assert_user_error(run(small_dataset, "--classes", "cat,cat", *FAST),
                      "class_names repeats cat", run)


@pytest.mark.parametrize("option", ["--output-dir", "--model-dir"])
def test_output_folder_that_cannot_be_created(run, small_dataset, tmp_path, option):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep")
    other = "--model-dir" if option == "--output-dir" else "--output-dir"
    result = run(small_dataset, *FAST, option, blocker / "sub", other, tmp_path / "other",
                 outputs=False)
    assert_user_error(result, f"cannot write to {blocker / 'sub'}")
    assert blocker.read_text() == "keep"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_read_only_output_folder(run, small_dataset, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run(small_dataset, *FAST, "--output-dir", locked, "--model-dir",
                     tmp_path / "m", outputs=False)
    finally:
        locked.chmod(0o700)
    assert_user_error(result, f"cannot write to {locked}")
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("args, match", [
    (["--image-size", "4"], "4 is not in the range 8<=x<=1024"),
    (["--epochs", "0"], "0 is not in the range x>=1"),
    (["--color-mode", "cmyk"], "'cmyk' is not one of 'auto', 'grayscale', 'rgb'"),
    (["--test-split", "1.5"], "Invalid value for '--test-split'"),
    (["--epoch-size", "lots"], "expected an integer or 'max'"),
    (["--classes", " , "], "expected a comma-separated list of class names"),
])
def test_invalid_option_values_are_usage_errors(run, small_dataset, args, match):
    result = run(small_dataset, *args)
    assert result.exit_code == 2 and match in result.stderr
    assert "Traceback" not in result.output
    assert json.loads((run.out / "metrics.json").read_text()) == {"previous": "run"}


# --- a messy but usable dataset trains, with the bad files skipped and reported -----------


def test_messy_dataset_trains_and_reports_skipped_files(run, image_folder_factory):
    root = image_folder_factory({"a": 10, "b": 6})
    extras = {  # mixed modes and sizes, each decoded to 16x16 grayscale
        "l.png": ("L", (16, 16)), "rgba.png": ("RGBA", (16, 16)), "p.png": ("P", (16, 16)),
        "i16.png": ("I;16", (16, 16)), "tiny.png": ("RGB", (3, 3)),
        "wide.jpg": ("RGB", (64, 20)), "big.bmp": ("RGB", (120, 90)),
    }
    for name, (mode, size) in extras.items():
        folder = image_folder_factory({"x": 1}, size=size, mode=mode, ext=name.split(".")[1])
        image_path = next((folder / "x").iterdir())
        image_path.rename(root / "b" / name)
    good = (root / "a" / "a_000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "b" / "zero.jpg").write_bytes(b"")
    (root / "b" / "README.txt").write_text("not an image")
    result = run(root, "--balanced", "--color-mode", "grayscale", *FAST)
    assert result.exit_code == 0, (result.output, result.exception)
    skipped = [line for line in result.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 3
    assert any("truncated.png: unreadable or corrupt" in line for line in skipped)
    assert any("zero.jpg: unreadable or corrupt" in line for line in skipped)
    assert any("README.txt: not an image file" in line for line in skipped)
    metrics = json.loads((run.out / "metrics.json").read_text())
    status = json.loads((run.out / "status.json").read_text())
    used = {name: sum(status["per_split"][s]["original"][name]
                      for s in ("train", "validation", "test")) for name in ("a", "b")}
    assert used == {"a": 10, "b": 6 + len(extras)}
    assert metrics["config"]["color_mode"] == "grayscale"
    assert json.loads((run.models / "genaug_cnn.json").read_text())["color_mode"] == "grayscale"


def test_image_in_a_format_tensorflow_cannot_decode_does_not_stop_training(
        image_folder_factory):
    from training.pipeline import TrainConfig

    root = image_folder_factory({"a": 8, "b": 8})
    for name in ("a", "b"):  # TIFF data behind a .png name, in every split
        for path in sorted((root / name).iterdir())[:4]:
            with Image.open(path) as image:
                image.load()
            image.save(path, format="TIFF")
    config = TrainConfig(data_dir=str(root), balanced=True, image_size=16, batch_size=8,
                         color_mode="rgb", loader="tfdata", verbose=0)
    splits = config.splits()
    assert len(splits.index) == 16  # PIL reads them: nothing is skipped
    train, _, _ = config.loaders(splits)
    batches = [x.shape[0] for x, _ in train]
    assert sum(batches) == len(splits.train)
