"""training/pipeline.py on the library's split resolution and loader factory."""

from __future__ import annotations

import pytest

from genaug.sampling import Balance, RampSchedule, SyntheticRecipe
from training.pipeline import TrainConfig


def test_the_config_converts_to_one_options_object():
    schedule = RampSchedule(epochs=3)
    recipe = SyntheticRecipe(cap=0.5, pool_cap=0.3, ratio=(0.1, 0.2), classes=("dog",),
                             weight=0.5, mixup=True)
    config = TrainConfig(balanced_batches=True, batch_size=16, seed=4, synthetic=recipe)
    options = config.sampling_options(train_size=90, class_weight="balanced",
                                      sample_weights=True, schedule=schedule)
    assert options.balance is Balance.BALANCED_BATCHES and options.epoch_size == 90
    assert (options.batch_size, options.seed, options.synthetic) == (16, 4, recipe)
    assert options.class_weight == "balanced" and options.sample_weights
    assert options.schedule is schedule
    plain = TrainConfig(epoch_size="max").sampling_options(train_size=90)
    assert plain.balance is Balance.NONE and plain.epoch_size == "max"


def test_a_manifests_test_rows_never_train_even_with_a_test_dir(image_folder_factory,
                                                                tmp_path):
    # Bug fixed: with --test-dir, the manifest's test rows went into training.
    root = image_folder_factory({"a": 8, "b": 8}, root=tmp_path / "data")
    rows = [f"{c}/{c}_{i:03d}.png,{c},{'test' if i < 2 else 'train'}" for c in "ab"
            for i in range(8)]
    (root / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    test_dir = image_folder_factory({"a": 2, "b": 2})
    config = TrainConfig(data_dir=str(root / "m.csv"), test_dir=str(test_dir), val_split=0.0,
                         loader="pydataset", verbose=0)
    splits = config.splits()
    assert splits.test_source == f"--test-dir {test_dir}"
    assert all(not i.endswith(("_000.png", "_001.png")) for i in splits.train.ids)
    train, validation, test = config.loaders(splits)
    assert len(train.sampler.real) == 12 and validation is None and len(test.sampler.real) == 4


@pytest.mark.parametrize("loader", ["pydataset", "tfdata"])
def test_both_branches_build_from_the_factory(small_dataset, loader):
    config = TrainConfig(data_dir=str(small_dataset), balanced=True, image_size=16,
                         batch_size=8, loader=loader, color_mode="rgb", verbose=0)
    splits = config.splits()
    train, validation, test = config.loaders(splits)
    assert train.sampler.plan.epoch_size == len(splits.train)
    assert validation.sampler.plan.mode is Balance.NONE and not validation.sampler.options.shuffle
    assert len(test.sampler.real) == len(splits.test)
