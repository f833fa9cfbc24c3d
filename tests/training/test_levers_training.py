"""The synthetic recipe's levers in a training run: CLI options -> TrainConfig -> loaders ->
reports."""

import json

import pytest
from click.testing import CliRunner

from genaug.cache import CacheWriter
from genaug.cli import main
from genaug.sampling import SyntheticRecipe
from training.pipeline import TrainConfig

TINY = ["--image-size", "16", "--model-width", "8", "--batch-size", "8", "--quiet"]


@pytest.fixture
def white_cache(tmp_path):
    import numpy as np

    with CacheWriter(tmp_path / "cache") as writer:
        for name in ("dog", "snake"):
            for i in range(12):
                writer.add(np.full((16, 16, 3), 255, np.uint8), class_name=name,
                           record_id=f"{name}-{i}")
    return tmp_path / "cache"


@pytest.mark.parametrize("loader", ["pydataset", "auto"])
def test_levers_travel_from_the_cli_to_the_reports(image_folder_factory, white_cache, tmp_path,
                                                   loader):
    data = image_folder_factory({"cat": 40, "dog": 6, "snake": 20})
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "train", str(data), "--balanced", "--synthetic-cache", str(white_cache), "--epochs", "3",
        "--synthetic-cooldown-epochs", "1", "--synthetic-fill-to", "10",
        "--synthetic-label-smoothing", "0.1", "--synthetic-weight", "0.5", "--loader", loader,
        *TINY, "--output-dir", str(out), "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    status = json.loads((out / "status.json").read_text())
    config = metrics["config"]
    recipe = config["synthetic"]
    assert (recipe["cooldown_epochs"], recipe["fill_to"], recipe["label_smoothing"],
            recipe["weight"]) == (1, 10, 0.1, 0.5)
    schedule = metrics["synthetic_schedule"]
    assert schedule["cooldown_epochs"] == 1 and schedule["factors"][-1] == 0.0
    assert status["synthetic_schedule"] == schedule
    per_epoch = metrics["composition"]["per_epoch"]
    assert sum(row["synthetic"] for row in per_epoch[0].values()) > 0
    assert all(row["synthetic"] == 0 for row in per_epoch[-1].values())  # the real-only finish
    # Fill to 10: dog (4 training images) is filled; snake (14) and cat are not.
    fill = status["synthetic_fill"]
    assert fill["fill_to"] == 10
    assert fill["per_class"]["dog"]["eligible_for_fill"]
    assert fill["per_class"]["dog"]["fill_target"] == 10
    assert not fill["per_class"]["snake"]["eligible_for_fill"]
    assert metrics["composition"]["classes"]["snake"]["synthetic_draws"] == 0
    assert metrics["sampling"]["synthetic_label_smoothing"] == 0.1
    assert status["synthetic_label_smoothing"] == 0.1


@pytest.mark.parametrize("extra, message", [
    (["--synthetic-cooldown-epochs", "-1"], "--synthetic-cooldown-epochs"),
    (["--synthetic-cooldown-epochs", "x"], "--synthetic-cooldown-epochs"),
    (["--synthetic-cooldown-epochs", "150%"], "--synthetic-cooldown-epochs"),
    (["--synthetic-cooldown-epochs", "2", "--epochs", "2"], "must be less than --epochs"),
    (["--synthetic-cooldown-epochs", "1", "--warmup-epochs", "1", "--epochs", "2"],
     "must be less than --epochs"),
    (["--synthetic-fill-to", "0"], "--synthetic-fill-to"),
    (["--synthetic-fill-to", "most"], "--synthetic-fill-to"),
    (["--synthetic-label-smoothing", "1"], "--synthetic-label-smoothing"),
])
def test_bad_lever_values_exit_2_before_any_output(small_dataset, white_cache, tmp_path, extra,
                                                   message):
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["train", str(small_dataset), "--synthetic-cache",
                                       str(white_cache), *TINY, "--output-dir", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--synthetic-cooldown-epochs", "1"],
                                   ["--synthetic-fill-to", "5"],
                                   ["--synthetic-label-smoothing", "0.1"]])
def test_levers_need_a_synthetic_source(small_dataset, tmp_path, extra):
    result = CliRunner().invoke(main, ["train", str(small_dataset), *TINY, "--output-dir",
                                       str(tmp_path / "o"), *extra])
    assert result.exit_code == 2 and "need --synthetic-cache" in result.output


@pytest.mark.parametrize("loader", ["pydataset", "tfdata"])
def test_synthetic_weight_and_soft_targets_reach_the_training_batches(
        image_folder_factory, white_cache, tmp_path, loader):
    import numpy as np

    from training.pipeline import TrainingRun

    data = image_folder_factory({"cat": 40, "dog": 6, "snake": 20})
    config = TrainConfig(data_dir=str(data), balanced=True, image_size=16, batch_size=8,
                         loader=loader, synthetic_cache=str(white_cache),
                         synthetic=SyntheticRecipe(weight=0.3, label_smoothing=0.2,
                                                   ramp_fraction=0.0),
                         output_dir=str(tmp_path / "o"), model_dir=str(tmp_path / "m"),
                         verbose=0)
    run = TrainingRun(config)  # the run's own steps 1-3 decide weights and schedule
    data = run.open_synthetic(run.split())
    train, _, _ = data.config.loaders(
        data.splits, synthetic_cache=data.synthetic_source, schedule=run.ramp_schedule(data),
        sample_weights=run.weighting(data).sample_weights)
    batches = list(train.as_numpy_iterator()) if loader == "tfdata" else \
        [train[i] for i in range(len(train))]
    x, y, w = (np.concatenate(column) for column in zip(*batches))
    white = (x == 255).all(axis=(1, 2, 3))
    assert white.any()
    np.testing.assert_allclose(w[white], 0.3)
    np.testing.assert_allclose(w[~white], 1.0)
    np.testing.assert_allclose(y[white].max(axis=1), 0.8)
    assert (y[~white].max(axis=1) == 1.0).all()
    assert train.sampler.categorical  # the run compiles categorical_crossentropy for these rows


def test_confusion_allocation_after_the_warmup_sets_the_caps_the_sampler_draws_with(
        image_folder_factory, white_cache, tmp_path):
    data = image_folder_factory({"cat": 40, "dog": 12, "snake": 20})
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "train", str(data), "--balanced", "--synthetic-cache", str(white_cache), "--epochs", "3",
        "--warmup-epochs", "1", "--ramp-fraction", "0", "--synthetic-allocation", "confusion",
        "--val-split", "0.3", *TINY, "--output-dir", str(out),
        "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    status = json.loads((out / "status.json").read_text())
    allocation = status["synthetic_allocation"]
    assert metrics["synthetic_allocation"] == allocation
    assert allocation["rule"] == "confusion" and allocation["after_epoch"] == 1
    validation = status["per_split"]["validation"]["original"]
    rows = allocation["per_class"]
    for name in ("cat", "dog", "snake"):
        assert rows[name]["validation_images"] == validation[name]  # validation, not test
    assert [n for n, row in rows.items() if row["receives_synthetic"]] == ["dog", "snake"]
    # the caps of the classes that receive synthetic images average to --synthetic-cap
    caps = [rows[n]["synthetic_cap"] for n in ("dog", "snake")]
    assert sum(caps) / 2 == pytest.approx(0.6, abs=1e-3) or max(caps) == 1.0
    # ... and are the caps the final sampler drew with
    assert metrics["sampling"]["synthetic_caps"]["dog"] == pytest.approx(caps[0], abs=1e-4)
    assert metrics["sampling"]["synthetic_caps"]["snake"] == pytest.approx(caps[1], abs=1e-4)
    per_epoch = metrics["composition"]["per_epoch"]
    assert all(row["synthetic"] == 0 for row in per_epoch[0].values())  # the warm-up
    for name, cap in zip(("dog", "snake"), caps):
        row = per_epoch[-1][name]
        assert row["synthetic"] <= cap * (row["real"] + row["duplicated"] + row["synthetic"])


@pytest.mark.parametrize("extra, message", [
    (["--synthetic-allocation", "confusion"], "--warmup-epochs between 1"),
    (["--synthetic-allocation", "confusion", "--warmup-epochs", "1", "--val-split", "0"],
     "validation split"),
])
def test_confusion_allocation_without_its_warmup_or_validation_exits_2_before_any_output(
        small_dataset, white_cache, tmp_path, extra, message):
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["train", str(small_dataset), "--synthetic-cache",
                                       str(white_cache), "--epochs", "3", *TINY,
                                       "--output-dir", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.startswith("Error:")
    assert not out.exists()


def test_confusion_allocation_needs_a_cache(small_dataset, tmp_path):
    result = CliRunner().invoke(main, ["train", str(small_dataset), *TINY, "--epochs", "3",
                                       "--warmup-epochs", "1", "--synthetic-allocation",
                                       "confusion", "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs --synthetic-cache" in result.output
