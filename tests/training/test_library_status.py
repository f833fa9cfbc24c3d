"""A library user's ``status.json`` (one call, :func:`genaug.loaders.write_training_status`)
is the one ``genaug train`` writes for the same data, seed and options."""

import json

import numpy as np
from click.testing import CliRunner

from genaug import BalancedBatchGenerator
from genaug.cache import CacheWriter, TrainingStatus
from genaug.cli import main
from genaug.data import DatasetIndex, split_dataset
from genaug.loaders import write_training_status
from genaug.sampling import RampSchedule


def test_a_library_users_status_is_the_one_train_writes(image_folder_factory, tmp_path):
    data = image_folder_factory({"cat": 30, "dog": 8, "snake": 12})
    splits = split_dataset(DatasetIndex.load(data), validation_split=0.1, test_split=0.2, seed=5)
    held_out = sorted(splits.held_out_ids())[0]
    rng = np.random.default_rng(0)
    with CacheWriter(tmp_path / "cache") as writer:
        for name in ("dog", "snake"):
            for i in range(9):
                writer.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), class_name=name,
                           record_id=f"{name}-{i}", source_id=held_out if i == 0 else None)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, [
        "train", str(data), "--balanced", "--synthetic-cache", str(cache),
        "--synthetic-ratio", "0.3", "--warmup-epochs", "1", "--epochs", "2", "--seed", "5",
        "--image-size", "16", "--model-width", "4", "--batch-size", "8", "--quiet",
        "--output-dir", str(tmp_path / "out"), "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    trained = json.loads((tmp_path / "out" / "status.json").read_text())

    common = dict(batch_size=8, image_size=(16, 16), color_mode="rgb", seed=5)
    train = BalancedBatchGenerator(
        splits.train, balance="oversample", epoch_size=len(splits.train),
        synthetic_cache=cache, synthetic_ratio=0.3, exclude_source_ids=splits.held_out_ids(),
        schedule=RampSchedule(epochs=2, warmup_epochs=1), **common)
    validation, test = (BalancedBatchGenerator(part, balance="none", shuffle=False, **common)
                        for part in (splits.validation, splits.test))
    written = write_training_status(tmp_path / "status.json", train, epochs=2,
                                    validation=validation, test=test)
    mine = json.loads((tmp_path / "status.json").read_text())

    assert trained["synthetic"] > 0 and trained["excluded_for_leakage"] > 0
    assert {k: v for k, v in mine.items() if k != "created"} == \
        {k: v for k, v in trained.items() if k != "created"}
    assert TrainingStatus.from_json(mine) == written  # the file reads back as written
