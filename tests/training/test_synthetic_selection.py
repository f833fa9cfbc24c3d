"""``genaug train --synthetic-select feature-distance``: selection of a cache at train time."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from genaug.cache import CacheWriter
from genaug.cli import main

TINY = ["--image-size", "16", "--model-width", "8", "--batch-size", "8", "--quiet"]


@pytest.fixture
def data(image_folder_factory):
    return image_folder_factory({"cat": 30, "dog": 8, "snake": 12})


@pytest.fixture
def cache(tmp_path, data):
    """Per minority class: copies of real images (near their class) and noise."""
    root = tmp_path / "cache"
    rng = np.random.default_rng(1)
    from PIL import Image

    with CacheWriter(root) as writer:
        for name in ("dog", "snake"):
            real = sorted((data / name).glob("*.png"))
            for i, path in enumerate(real[:4]):
                image = np.asarray(Image.open(path).convert("RGB"))
                writer.add(image, class_name=name, record_id=f"{name}-copy-{i}")
            for i in range(6):
                writer.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), class_name=name,
                           record_id=f"{name}-noise-{i}")
    return root


def train(tmp_path, *args, out="out"):
    result = CliRunner().invoke(main, ["train", *args, *TINY, "--output-dir",
                                       str(tmp_path / out), "--model-dir",
                                       str(tmp_path / "models"), "--model-name", out])
    return result


def reports(tmp_path, out="out"):
    return [json.loads((tmp_path / out / name).read_text())
            for name in ("metrics.json", "status.json")]


def _without_timing(selection):
    return {k: v for k, v in selection.items() if k != "seconds"}


def test_selection_after_warmup_is_reported_and_only_kept_images_are_drawn(tmp_path, data,
                                                                           cache):
    args = [str(data), "--balanced", "--synthetic-cache", str(cache), "--epochs", "3",
            "--warmup-epochs", "1", "--ramp-fraction", "0", "--synthetic-select",
            "feature-distance"]
    result = train(tmp_path, *args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics, status = reports(tmp_path)
    selection = status["synthetic_selection"]
    assert metrics["synthetic_selection"] == selection
    assert selection["method"] == "feature-distance" and selection["after_epoch"] == 1
    assert selection["keep_bands"] == ["in", "near"] and selection["radius_quantile"] == 0.95
    assert selection["features"]["layer"] == "features"
    train_counts = status["per_split"]["train"]["original"]
    for name in ("dog", "snake"):
        row = selection["per_class"][name]
        # only training images define the class: never validation or test images
        assert row["real_images"] == train_counts[name]
        assert row["radius"] > 0
        assert row["in"] + row["near"] + row["far"] == row["kept"] + row["dropped"] == 10
        assert row["kept"] == row["in"] + row["near"]
        assert status["per_class"][name]["synthetic"] <= row["kept"]
    assert selection["kept"] + selection["dropped"] == 20
    # the warm-up epoch is in the history too
    assert len(metrics["history"]["loss"]) == 3
    again = train(tmp_path, *args, out="again")
    assert again.exit_code == 0, again.output
    assert _without_timing(reports(tmp_path, "again")[1]["synthetic_selection"]) == \
        _without_timing(selection)


def test_selection_with_a_saved_balanced_model(tmp_path, data, cache):
    first = train(tmp_path, str(data), "--balanced", "--epochs", "1", out="selector")
    assert first.exit_code == 0, first.output
    model = tmp_path / "models" / "selector.keras"
    result = train(tmp_path, str(data), "--balanced", "--synthetic-cache", str(cache),
                   "--epochs", "2", "--synthetic-select", "feature-distance",
                   "--select-model", str(model))
    assert result.exit_code == 0, result.output + repr(result.exception)
    selection = reports(tmp_path)[1]["synthetic_selection"]
    assert selection["after_epoch"] is None
    assert str(model) in selection["features"]["source"]
    assert selection["kept"] + selection["dropped"] == 20


def test_class_margin_selection_reports_per_class_counts(tmp_path, data, cache):
    result = train(tmp_path, str(data), "--balanced", "--synthetic-cache", str(cache),
                   "--epochs", "2", "--warmup-epochs", "1", "--ramp-fraction", "0",
                   "--synthetic-select", "class-margin")
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics, status = reports(tmp_path)
    selection = status["synthetic_selection"]
    assert metrics["synthetic_selection"] == selection
    assert selection["method"] == "class-margin" and selection["radius_floor"] == 0.5
    for name in ("dog", "snake"):
        row = selection["per_class"][name]
        assert row["kept"] + row["dropped"] == 10
        assert sum(row["nearer_to"].values()) == row["dropped"]
        assert name not in row["nearer_to"]
        assert status["per_class"][name]["synthetic"] <= row["kept"]
    coverage = status["synthetic_coverage"]
    assert metrics["synthetic_coverage"] == coverage and "cat" in coverage["not_received"]
    assert sorted(coverage["received"] + coverage["not_received"]) == ["cat", "dog", "snake"]


@pytest.mark.parametrize("extra, message", [
    (["--synthetic-select", "feature-distance"], "give --warmup-epochs between 1"),
    (["--synthetic-select", "feature-distance", "--warmup-epochs", "2"],
     "give --warmup-epochs between 1"),
    (["--select-model", "m.keras"], "--select-model needs --synthetic-select"),
    (["--synthetic-select", "feature-distance", "--select-model", "missing.keras"],
     "model not found: missing.keras"),
    (["--synthetic-select", "feature-distance", "--warmup-epochs", "1", "--synthetic-pool-cap",
      "0.5", "--loader", "tfdata"], "needs --loader pydataset"),
])
def test_bad_selection_options_are_one_error_line(tmp_path, data, cache, extra, message):
    result = train(tmp_path, str(data), "--balanced", "--synthetic-cache", str(cache),
                   "--epochs", "2", *extra)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and message in result.output
    assert not (tmp_path / "out").exists()


def test_selection_needs_a_cache(tmp_path, data):
    result = train(tmp_path, str(data), "--synthetic-select", "feature-distance",
                   "--warmup-epochs", "1", "--epochs", "2")
    assert result.exit_code == 2 and "needs --synthetic-cache or --live-generator" \
        in result.output
