"""Synthetic images through a whole training run: accounting, integrity and the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from genaug.cache import CacheWriter
from genaug.cli import main
from training.pipeline import TrainConfig

TINY = ["--epochs", "2", "--image-size", "16", "--model-width", "8", "--batch-size", "8",
        "--quiet"]


@pytest.fixture
def cache_for(tmp_path):
    def make(per_class, source_ids=None):
        root = tmp_path / "cache"
        rng = np.random.default_rng(0)
        with CacheWriter(root) as writer:
            for name, n in per_class.items():
                for i in range(n):
                    writer.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                               class_name=name, record_id=f"{name}-{i}",
                               generator={"backend": "ddpm", "model": "gen", "model_hash": "h"},
                               source_id=(source_ids or {}).get((name, i)),
                               quality={"verify": {"score": 0.9, "threshold": 0.6,
                                                   "passed": True}})
        return root
    return make


def run(args, tmp_path):
    result = CliRunner().invoke(main, [*args, *TINY, "--output-dir", str(tmp_path / "out"),
                                       "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = tmp_path / "out"
    return json.loads((out / "metrics.json").read_text()), \
        json.loads((out / "status.json").read_text())


def test_status_numbers_add_up_and_defaults_are_minority_only(image_folder_factory, tmp_path,
                                                              cache_for):
    data = image_folder_factory({"cat": 30, "dog": 5, "snake": 10})
    cache = cache_for({"cat": 5, "dog": 20, "snake": 20})
    metrics, status = run(["train", str(data), "--balanced", "--synthetic-cache", str(cache)],
                          tmp_path)
    per_class = status["per_class"]
    assert per_class["cat"]["synthetic"] == 0  # the majority gets none by default
    assert per_class["dog"]["synthetic"] > 0
    for row in per_class.values():
        assert row["total"] == row["original"] + row["synthetic"]
        assert row["synthetic_share_of_images"] == pytest.approx(row["synthetic"] / row["total"])
    assert status["original"] == sum(r["original"] for r in per_class.values())
    assert status["synthetic"] == sum(r["synthetic"] for r in per_class.values())
    assert status["total_images"] == status["original"] + status["synthetic"]
    assert status["per_split"]["test"]["synthetic"] == {}
    assert status["per_split"]["validation"]["synthetic"] == {}
    assert sum(status["per_split"]["train"]["original"].values()) == status["original"]
    assert status["generators"] == [{"backend": "ddpm", "model": "gen", "model_hash": "h"}]
    assert status["quality_thresholds"] == {"verify": 0.6}
    assert status["image_size"] == [16, 16] and status["seed"] == 0 and status["created"]
    composition = metrics["composition"]
    for epoch in composition["per_epoch"]:
        for name, row in epoch.items():
            total = row["real"] + row["duplicated"] + row["synthetic"]
            assert total == metrics["sampling"]["targets"][name]
            # cap 0.6 over an epoch
            assert row["synthetic"] <= 0.6 * total
    assert composition["classes"]["dog"]["synthetic_draws"] > 0


def test_class_with_no_real_image_trained_from_synthetic_and_stated(image_folder_factory,
                                                                     tmp_path, cache_for):
    data = image_folder_factory({"cat": 20, "dog": 6, "emu": 0})
    test = image_folder_factory({"cat": 3, "dog": 3, "emu": 3})
    cache = cache_for({"emu": 15})
    metrics, status = run(["train", str(data), "--test-dir", str(test), "--balanced",
                           "--synthetic-cache", str(cache)], tmp_path)
    assert status["synthetic_only_classes"] == ["emu"]
    assert status["per_class"]["emu"]["original"] == 0
    assert status["per_class"]["emu"]["synthetic_share_of_images"] == 1.0
    assert metrics["composition"]["synthetic_only_classes"] == ["emu"]


def test_synthetic_derived_from_a_test_image_is_excluded(image_folder_factory, tmp_path,
                                                         cache_for):
    data = image_folder_factory({"cat": 20, "dog": 6})
    test = image_folder_factory({"cat": 3, "dog": 3})
    test_id = "dog/held_out.png"  # a name only the test folder has
    (test / "dog" / "dog_002.png").rename(test / test_id)
    splits = TrainConfig(data_dir=str(data), test_dir=str(test), verbose=0).splits()
    assert test_id in splits.test.ids and test_id not in splits.index.ids
    # and a training image whose name the test folder does not have
    train_id = next(i for i in splits.train.ids if i.startswith("dog/") and
                    i not in splits.test.ids)
    cache = cache_for({"dog": 10}, source_ids={("dog", 0): test_id, ("dog", 1): test_id,
                                               ("dog", 2): train_id})
    metrics, status = run(["train", str(data), "--test-dir", str(test), "--balanced",
                           "--synthetic-cache", str(cache), "--synthetic-ratio-range", "0.15",
                           "0.25", "--synthetic-weight", "0.5"], tmp_path)
    assert status["excluded_for_leakage"] == 2  # the test image's two, not the train one's
    assert metrics["synthetic"]["excluded_for_leakage"] == 2
    assert status["per_class"]["dog"]["synthetic"] <= 8


def test_same_seed_same_composition(image_folder_factory, tmp_path, cache_for):
    data = image_folder_factory({"cat": 20, "dog": 4})
    cache = cache_for({"dog": 10})
    args = ["train", str(data), "--balanced", "--synthetic-cache", str(cache),
            "--synthetic-ratio", "0.3", "--seed", "4"]
    first, _ = run(args, tmp_path)
    second, _ = run(args, tmp_path)
    assert first["composition"] == second["composition"]


def test_synthetic_options_without_a_cache_are_a_user_error(small_dataset, tmp_path):
    result = CliRunner().invoke(main, ["train", str(small_dataset), "--synthetic-ratio", "0.2",
                                       *TINY, "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "need --synthetic-cache" in result.output


def test_both_synthetic_shares_are_reported_with_the_cap_that_bounds_each(
        image_folder_factory, tmp_path, cache_for):
    """synthetic_cap bounds each epoch's draws; over a run a class trains on
    more distinct synthetic images than that share of its images, and both figures say so."""
    data = image_folder_factory({"cat": 40, "dog": 5})
    test = image_folder_factory({"cat": 3, "dog": 3})
    cache = cache_for({"dog": 60})
    metrics, status = run(["train", str(data), "--test-dir", str(test), "--balanced",
                           "--synthetic-cache", str(cache), "--epochs", "4",
                           "--ramp-fraction", "0"], tmp_path)
    assert status["synthetic_cap"] == 0.6 and status["synthetic_pool_cap"] is None
    assert "synthetic_fraction" not in status
    dog = status["per_class"]["dog"]
    per_epoch = [epoch["dog"]["synthetic"] / (epoch["dog"]["real"] + epoch["dog"]["duplicated"]
                                              + epoch["dog"]["synthetic"])
                 for epoch in metrics["composition"]["per_epoch"]]
    assert dog["synthetic_share_of_draws"] == pytest.approx(max(per_epoch))
    assert dog["synthetic_share_of_draws"] <= 0.6
    # Other synthetic images each epoch: the distinct share passes the per-epoch cap.
    assert dog["synthetic"] > dog["original"] * 0.6 / 0.4
    assert dog["synthetic_share_of_images"] == pytest.approx(dog["synthetic"] / dog["total"])
    assert dog["synthetic_share_of_images"] > 0.6
    shares = metrics["synthetic_shares"]
    assert (shares["synthetic_cap"], shares["synthetic_pool_cap"]) == (0.6, None)
    assert shares["per_class"]["dog"] == {
        "synthetic_share_of_draws": dog["synthetic_share_of_draws"],
        "synthetic_share_of_images": dog["synthetic_share_of_images"]}


def test_the_pool_cap_bounds_the_distinct_synthetic_images_of_a_run(image_folder_factory,
                                                                    tmp_path, cache_for):
    """``--synthetic-pool-cap`` bounds what the default run above exceeds,
    the share of a class's training images that are distinct synthetic images."""
    data = image_folder_factory({"cat": 40, "dog": 5})
    test = image_folder_factory({"cat": 3, "dog": 3})
    cache = cache_for({"dog": 60})
    metrics, status = run(["train", str(data), "--test-dir", str(test), "--balanced",
                           "--synthetic-cache", str(cache), "--epochs", "4",
                           "--ramp-fraction", "0", "--synthetic-pool-cap", "0.6"], tmp_path)
    dog = status["per_class"]["dog"]
    assert status["synthetic_pool_cap"] == 0.6
    assert 0 < dog["synthetic"] <= 7  # floor(0.6 / 0.4 * 5 real images)
    assert dog["synthetic_share_of_images"] <= 0.6
    assert metrics["synthetic_shares"]["synthetic_pool_cap"] == 0.6


def test_synthetic_pool_cap_is_an_option_of_a_synthetic_run(small_dataset, tmp_path):
    def train(*extra):
        return CliRunner().invoke(main, ["train", str(small_dataset), *extra, *TINY,
                                         "--output-dir", str(tmp_path / "o")])

    no_cache = train("--synthetic-pool-cap", "0.5")
    assert no_cache.exit_code == 2 and "need --synthetic-cache" in no_cache.output
    zero = train("--synthetic-pool-cap", "0")
    assert zero.exit_code == 2 and "--synthetic-pool-cap" in zero.output
    assert not (tmp_path / "o").exists()
