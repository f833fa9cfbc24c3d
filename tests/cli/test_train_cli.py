"""``genaug train`` end to end on a tiny generated folder, and the splits it trains on.

Every full run costs ~10 s on 2 CPU cores, so there are three (16x16 images, width-8 CNN) and
the balanced one is shared by several tests.
"""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight

from genaug.cli import main
from genaug.data import DatasetIndex
from training.pipeline import TrainConfig

COUNTS = {"cat": 20, "dog": 4, "snake": 10}
FAST = ["--image-size", "16", "--model-width", "8", "--batch-size", "8"]
METRIC_KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "cohen_kappa",
               "per_class", "confusion_matrix", "class_names", "class_weights", "composition",
               "config", "versions", "timings"}


def strict_json(path):
    """Parse JSON and refuse NaN/Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"{path.name} contains {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def train(tmp_path, data_dir, *extra):
    out, models = tmp_path / "out", tmp_path / "models"
    args = ["train", str(data_dir), *extra, *FAST, "--output-dir", str(out),
            "--model-dir", str(models)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result, strict_json(out / "metrics.json"), out, models


@pytest.fixture(scope="module")
def balanced_run(tmp_path_factory, image_folder_writer):
    """``genaug train DIR --balanced --epochs 2`` once for the module."""
    tmp = tmp_path_factory.mktemp("balanced_run")
    data = image_folder_writer(tmp / "data", COUNTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAUG_DATA_HOME", str(tmp / "home"))
        result, metrics, out, models = train(tmp, data, "--balanced", "--epochs", "2")
    return {"result": result, "metrics": metrics, "out": out, "models": models, "data": data}


def test_metrics_json_has_every_required_field(balanced_run):
    metrics = balanced_run["metrics"]
    assert METRIC_KEYS <= set(metrics)
    names = list(COUNTS)
    assert metrics["class_names"] == names
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert -1.0 <= metrics["cohen_kappa"] <= 1.0
    assert set(metrics["per_class"]) == set(names)
    for row in metrics["per_class"].values():
        assert set(row) == {"precision", "recall", "f1", "support"}
        assert isinstance(row["support"], int)
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum(axis=1).tolist() == [metrics["per_class"][n]["support"] for n in names]
    assert metrics["class_weights"] is None  # --balanced alone: no loss weights
    assert set(metrics["composition"]["classes"]) == set(names)
    assert len(metrics["composition"]["per_epoch"]) == 2
    config = metrics["config"]
    assert config["balanced"] is True and config["epochs"] == 2 and config["image_size"] == 16
    assert {"python", "numpy", "keras", "scikit-learn", "genaug"} <= set(metrics["versions"])
    assert {"index_s", "train_s", "evaluate_s", "total_s"} <= set(metrics["timings"])
    timings = metrics["timings"]
    assert timings["train_s"] > 0 and timings["evaluate_s"] > 0  # measured, not left at 0
    # the phases run one after the other inside the whole run
    assert timings["total_s"] >= timings["index_s"] + timings["train_s"] + timings["evaluate_s"]


def test_plot_model_and_status_are_written_whole(balanced_run):
    out, models = balanced_run["out"], balanced_run["models"]
    with Image.open(out / "confusion_matrix.png") as image:
        image.verify()
        assert image.format == "PNG"
    model = models / "genaug_cnn.keras"
    assert zipfile.is_zipfile(model)
    sidecar = json.loads((models / "genaug_cnn.json").read_text())
    assert sidecar == {"class_names": list(COUNTS), "image_size": [16, 16], "color_mode": "rgb",
                       "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    assert strict_json(out / "status.json")["per_class"].keys() == COUNTS.keys()
    # no temporary or write-test files left behind
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json",
                                                     "status.json"]
    assert sorted(p.name for p in models.iterdir()) == ["genaug_cnn.json", "genaug_cnn.keras"]


def test_stdout_reports_splits_table_and_outputs(balanced_run):
    text = balanced_run["result"].stdout
    assert "test set: stratified 20% split of the data (seed 0)" in text
    assert "balanced accuracy" in text and "macro-F1" in text
    assert "genaug_cnn.keras" in text.splitlines()[-1]


def test_test_split_is_stratified_and_made_before_oversampling(balanced_run):
    metrics = balanced_run["metrics"]
    status = strict_json(balanced_run["out"] / "status.json")
    split = status["per_split"]
    for name, total in COUNTS.items():
        parts = [split[s]["original"][name] for s in ("train", "validation", "test")]
        assert sum(parts) == total, (name, parts)  # every image in exactly one split
        assert split["test"]["original"][name] >= 1
        assert metrics["per_class"][name]["support"] == split["test"]["original"][name]
        assert metrics["train_counts"][name] == split["train"]["original"][name]
        assert metrics["composition"]["classes"][name]["real_images"] == \
            metrics["train_counts"][name]
    # the minority class was oversampled from its training images only
    dog = metrics["composition"]["classes"]["dog"]
    assert dog["duplicated_draws"] > 0 and dog["real_draws"] <= 2 * dog["real_images"]


def delivered_ids(loader, pixel_ids, *, epochs=1):
    """The ids of the real images ``loader``'s batches carry, over ``epochs`` epochs, found
    by their pixels (every image of the fixture is distinct noise)."""
    seen = []
    for _ in range(epochs):
        for i in range(len(loader)):
            seen += [pixel_ids[image.astype(np.uint8).tobytes()] for image in loader[i][0]]
        loader.on_epoch_end()
    return seen


def test_no_test_or_validation_image_is_ever_drawn_for_training(small_dataset):
    from genaug.data import load_image

    config = TrainConfig(data_dir=str(small_dataset), balanced=True, image_size=16,
                         batch_size=8, color_mode="rgb", loader="pydataset", verbose=0)
    splits = config.splits()
    held = set(splits.test.ids) | set(splits.validation.ids)
    assert not held & set(splits.train.ids)
    assert len(splits.train) + len(held) == len(splits.index)
    index = splits.index
    pixel_ids = {load_image(path, image_size=(16, 16)).tobytes(): image_id
                 for path, image_id in zip(index.paths, index.ids)}
    assert len(pixel_ids) == len(index)  # pixels tell every image apart
    train, validation, test = config.loaders(splits)
    drawn = delivered_ids(train, pixel_ids, epochs=5)
    assert set(drawn) == set(splits.train.ids)  # oversampled, from the training split only
    assert not set(drawn) & held
    assert sorted(delivered_ids(validation, pixel_ids)) == sorted(splits.validation.ids)
    assert sorted(delivered_ids(test, pixel_ids)) == sorted(splits.test.ids)


def test_a_manifest_listing_a_file_twice_cannot_leak(small_dataset):
    rows = [f"{p.parent.name}/{p.name},{p.parent.name}" for p in
            sorted(small_dataset.glob("*/*.png"))]
    manifest = small_dataset / "m.csv"
    manifest.write_text("path,label\n" + "\n".join(rows + rows) + "\n")
    splits = TrainConfig(data_dir=str(manifest), verbose=0).splits()
    assert not set(splits.test.ids) & set(splits.train.ids)
    assert len(splits.index) == sum(COUNTS.values())


def test_class_weights_without_balancing_are_sklearns(tmp_path, small_dataset,
                                                      genaug_data_home):
    _, metrics, _, _ = train(tmp_path, small_dataset, "--class-weights", "--epochs", "1")
    train_counts = metrics["train_counts"]
    labels = np.repeat(np.arange(3), [train_counts[n] for n in COUNTS])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert list(metrics["class_weights"]) == list(COUNTS)
    assert list(metrics["class_weights"].values()) == pytest.approx(expected.tolist())
    assert metrics["class_weights"]["dog"] > metrics["class_weights"]["cat"]
    assert metrics["config"]["class_weights"] is True and metrics["config"]["balanced"] is False


def test_balanced_with_class_weights_warns_and_uses_the_delivered_distribution(
        tmp_path, small_dataset, genaug_data_home):
    with pytest.warns(UserWarning, match="corrects the imbalance twice"):
        _, metrics, _, _ = train(tmp_path, small_dataset, "--balanced", "--class-weights",
                                 "--epochs", "1")
    delivered = metrics["sampling"]["targets"]
    total, k = sum(delivered.values()), len(delivered)
    expected = {name: total / (k * n) for name, n in delivered.items()}
    assert metrics["class_weights"] == pytest.approx(expected)
    # near 1: the loader already balances, the raw-count weights would be far from it
    assert max(expected.values()) / min(expected.values()) < 1.2


def test_index_counts_match_the_fixture(small_dataset):
    assert DatasetIndex.load(small_dataset).counts().tolist() == list(COUNTS.values())


@pytest.mark.parametrize("loader", ["tfdata", "pydataset"])
def test_cache_directory_reaches_the_loader(small_dataset, tmp_path, loader):
    store = tmp_path / "store"
    config = TrainConfig(data_dir=str(small_dataset), balanced=True, image_size=16,
                         batch_size=8, color_mode="rgb", loader=loader, cache=str(store),
                         verbose=0)
    train, *_ = config.loaders(config.splits())
    batch = next(iter(train)) if loader == "tfdata" else train[0]
    assert np.asarray(batch[0]).shape == (8, 16, 16, 3)
    assert len(list(store.glob("*.npy"))) == 1  # the training images, decoded once, kept there
    streamed = TrainConfig(**{**config.__dict__, "cache": "none"})
    train, *_ = streamed.loaders(streamed.splits())
    np.testing.assert_array_equal(
        np.asarray((next(iter(train)) if loader == "tfdata" else train[0])[0]),
        np.asarray(batch[0]))
