"""build_loaders / choose_loader: a run's three loaders from its splits, in one call."""

import keras
import numpy as np
import pytest

from genaug.data import load_splits
from genaug.exceptions import ConfigError
from genaug.loaders import BalancedBatchGenerator, SamplingOptions, build_loaders, choose_loader
from genaug.sampling import Balance


def test_the_training_loader_samples_and_the_evaluation_loaders_read_each_image_once(
        small_dataset):
    splits = load_splits(small_dataset, validation_split=0.2, test_split=0.2, seed=3)
    options = SamplingOptions(balance="oversample", batch_size=4, seed=3)
    train, validation, test = build_loaders(splits, options, image_size=(12, 12),
                                            color_mode="rgb", loader="pydataset")
    assert isinstance(train, BalancedBatchGenerator)
    assert train.sampler.plan.mode is Balance.OVERSAMPLE
    for loader, part in ((validation, splits.validation), (test, splits.test)):
        assert loader.sampler.plan.mode is Balance.NONE and not loader.sampler.options.shuffle
        labels = np.concatenate([loader[i][1] for i in range(len(loader))])
        assert labels.tolist() == part.labels.tolist()  # every image once, in order
    assert train[0][0].shape == (4, 12, 12, 3)


def test_without_a_validation_split_the_validation_loader_is_none(small_dataset):
    splits = load_splits(small_dataset, validation_split=0, test_split=0.3)
    loaders = build_loaders(splits, SamplingOptions(batch_size=4, seed=0), image_size=(8, 8),
                            color_mode="grayscale", loader="pydataset")
    assert loaders.validation is None and len(loaders.test.sampler.real) == len(splits.test)


def test_choose_loader():
    tensorflow = keras.backend.backend() == "tensorflow"
    assert choose_loader("auto") == ("tfdata" if tensorflow else "pydataset")
    assert choose_loader("auto", live=True) == "pydataset"  # a live source feeds the PyDataset
    assert choose_loader("auto", redraws_pool=True) == "pydataset"
    assert choose_loader("pydataset") == "pydataset"
    with pytest.raises(ConfigError, match="loader must be one of auto, tfdata, pydataset"):
        choose_loader("torch")
    if tensorflow:
        with pytest.raises(ConfigError, match="needs --loader pydataset"):
            choose_loader("tfdata", redraws_pool=True)
