"""The synthetic recipe's levers through both loaders: cool-down, fill threshold, synthetic
label smoothing and synthetic weight. Synthetic cache images are plain white; the real ones
are noise."""

import numpy as np
import pytest

import genaug
from genaug.data import DatasetIndex
from genaug.loaders import BalancedBatchGenerator, SamplingOptions, build_sampler
from genaug.sampling import SYNTHETIC, RampSchedule

OPTIONS = dict(image_size=(16, 16), batch_size=8, seed=0, balance="oversample", verbose=False)


def pydataset_epoch(small_dataset, cache, **options):
    loader = BalancedBatchGenerator(small_dataset, synthetic_cache=cache, **OPTIONS, **options)
    return [np.concatenate(column) for column in zip(*(loader[i] for i in range(len(loader))))]


def tfdata_epoch(small_dataset, cache, **options):
    dataset = genaug.image_dataset_from_directory(small_dataset, synthetic_cache=cache,
                                                  **OPTIONS, **options)
    return [np.concatenate(column) for column in zip(*dataset.as_numpy_iterator())]


LOADERS = [pydataset_epoch, pytest.param(tfdata_epoch, id="tfdata")]


@pytest.fixture
def white_cache(make_cache, tmp_path):
    return make_cache(tmp_path / "cache", {"dog": 12, "snake": 12})


def is_white(x):
    return (x == 255).all(axis=(1, 2, 3))


def test_cooldown_epochs_draw_no_synthetic_image(small_dataset, white_cache):
    schedule = RampSchedule(epochs=5, ramp_fraction=0, cooldown_epochs=2)
    sampler = build_sampler(DatasetIndex.load(small_dataset),
                            SamplingOptions(seed=0, schedule=schedule),
                            synthetic_cache=white_cache)
    draws = [int((sampler.mixed(e).source == SYNTHETIC).sum()) for e in range(5)]
    assert all(d > 0 for d in draws[:3]) and draws[3:] == [0, 0]


@pytest.mark.parametrize("epoch_of", LOADERS)
def test_fill_threshold_fills_only_classes_below_it(small_dataset, white_cache, epoch_of):
    # cat 20, dog 4, snake 10 real images; fill to 8: dog only, in at most half its draws.
    x, y = epoch_of(small_dataset, white_cache, synthetic_fill_to=8, synthetic_cap=1.0)
    white = is_white(x)
    assert white.any() and set(y[white].tolist()) == {1}
    assert white.sum() <= (y == 1).sum() // 2
    x_all, y_all = epoch_of(small_dataset, white_cache, synthetic_cap=1.0)
    assert 2 in set(y_all[is_white(x_all)].tolist())  # without it snake is filled too


@pytest.mark.parametrize("epoch_of", LOADERS)
def test_label_smoothing_softens_synthetic_rows_only(small_dataset, white_cache, epoch_of):
    x, y = epoch_of(small_dataset, white_cache, synthetic_ratio=0.5,
                    synthetic_label_smoothing=0.2)
    white = is_white(x)
    assert white.any() and (~white).any() and y.shape == (len(x), 3)
    hard = y.argmax(axis=1)
    np.testing.assert_allclose(y[white].max(axis=1), 0.8)
    np.testing.assert_allclose(np.sort(y[white], axis=1)[:, :2], 0.1)
    np.testing.assert_array_equal(y[~white], np.eye(3)[hard[~white]])
    x0, y0 = epoch_of(small_dataset, white_cache, synthetic_ratio=0.5)
    x_eps0, y_eps0 = epoch_of(small_dataset, white_cache, synthetic_ratio=0.5,
                              synthetic_label_smoothing=0.0)
    assert y0.ndim == 1 and y0.dtype.kind == "i"
    np.testing.assert_array_equal(y0, y_eps0)
    np.testing.assert_array_equal(x0, x_eps0)
    np.testing.assert_array_equal(y0, hard)  # the same slots, only the targets changed


@pytest.mark.parametrize("epoch_of", LOADERS)
def test_synthetic_weight_reaches_the_synthetic_rows(small_dataset, white_cache, epoch_of):
    x, y, w = epoch_of(small_dataset, white_cache, synthetic_ratio=0.5, synthetic_weight=0.3)
    white = is_white(x)
    assert white.any()
    np.testing.assert_allclose(w[white], 0.3)
    np.testing.assert_allclose(w[~white], 1.0)


def test_smoothing_validation_and_label_modes(small_dataset, white_cache):
    from genaug.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"synthetic_label_smoothing must be in \[0, 1\)"):
        genaug.BalancedBatchGenerator(small_dataset, synthetic_label_smoothing=1.0, **OPTIONS)
    with pytest.raises(ConfigError, match="needs label_mode='int'"):
        genaug.image_dataset_from_directory(small_dataset, synthetic_cache=white_cache,
                                            label_mode="categorical",
                                            synthetic_label_smoothing=0.1, **OPTIONS)
