"""``AdaptAfterWarmup`` and ``adapt_synthetic``: a loader switched mid-fit delivers the
batches of a loader built with the selection and caps from the start."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from genaug import BalancedBatchGenerator
from genaug.cache import CacheWriter
from genaug.exceptions import ConfigError
from genaug.loaders import AdaptAfterWarmup, training_status
from genaug.sampling import RampSchedule

SETTINGS = dict(batch_size=6, image_size=(16, 16), seed=2, synthetic_ratio=0.5,
                balance="oversample")


@pytest.fixture
def varied_cache(tmp_path, small_dataset):
    """Per minority class: copies of real images (near their class) and noise."""
    from PIL import Image

    rng = np.random.default_rng(4)
    with CacheWriter(tmp_path / "cache") as writer:
        for name in ("dog", "snake"):
            for i, path in enumerate(sorted((small_dataset / name).glob("*.png"))[:3]):
                writer.add(np.asarray(Image.open(path).convert("RGB")), class_name=name,
                           record_id=f"{name}-copy-{i}")
            for i in range(5):
                writer.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), class_name=name,
                           record_id=f"{name}-noise-{i}")
    return tmp_path / "cache"


def _pydataset_epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [loader[i] for i in range(len(loader))]


def _tfdata_epoch(dataset, epoch):
    dataset.sampler.set_epoch(epoch)
    return list(dataset.as_numpy_iterator())


def _same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for part_a, part_b in zip(a, b):
            np.testing.assert_array_equal(part_a, part_b)


def _kept_and_caps(loader):
    ids = loader.sampler.synthetic_pool.ids
    return frozenset(ids[::2]), {"dog": 0.9, "snake": 0.2}


def test_a_switched_pydataset_delivers_the_batches_of_one_built_adapted(small_dataset,
                                                                       varied_cache):
    switched = BalancedBatchGenerator(small_dataset, synthetic_cache=varied_cache, **SETTINGS)
    kept, caps = _kept_and_caps(switched)
    switched.adapt_synthetic(synthetic_ids=kept, synthetic_cap=caps)
    built = BalancedBatchGenerator(small_dataset, synthetic_cache=varied_cache,
                                   synthetic_ids=kept, synthetic_cap=caps, **SETTINGS)
    assert set(switched.synthetic_pool.ids) == kept
    for epoch in (1, 2):
        _same(_pydataset_epoch(switched, epoch), _pydataset_epoch(built, epoch))


def test_a_switched_tf_dataset_delivers_the_batches_of_one_built_adapted(small_dataset,
                                                                        varied_cache):
    from genaug import image_dataset_from_directory

    switched = image_dataset_from_directory(str(small_dataset), synthetic_cache=varied_cache,
                                            verbose=False, **SETTINGS)
    _tfdata_epoch(switched, 0)  # a pass before the switch: the pipeline is running
    kept, caps = _kept_and_caps(switched)
    switched.adapt_synthetic(synthetic_ids=kept, synthetic_cap=caps)
    built = image_dataset_from_directory(str(small_dataset), synthetic_cache=varied_cache,
                                         synthetic_ids=kept, synthetic_cap=caps,
                                         verbose=False, **SETTINGS)
    for epoch in (1, 2):
        _same(_tfdata_epoch(switched, epoch), _tfdata_epoch(built, epoch))


def test_the_tf_dataset_refuses_a_pool_outside_its_listed_files(small_dataset, varied_cache):
    from genaug import image_dataset_from_directory

    dataset = image_dataset_from_directory(str(small_dataset), synthetic_cache=varied_cache,
                                           synthetic_pool_cap=0.3, verbose=False, **SETTINGS)
    outside = set(dataset.sampler.offered.ids) - set(dataset.sampler.synthetic_pool.ids)
    with pytest.raises(ConfigError, match="reads the synthetic files it listed"):
        dataset.adapt_synthetic(synthetic_ids=outside)


def test_a_switch_that_would_change_the_batches_layout_is_refused(small_dataset,
                                                                 varied_cache):
    loader = BalancedBatchGenerator(small_dataset, synthetic_cache=varied_cache,
                                    synthetic_weight=0.5, **SETTINGS)
    with pytest.raises(ConfigError, match="cannot switch to it mid-run"):
        loader.adapt_synthetic(synthetic_ids=[])  # no synthetic image: no sample weights
    assert loader.sampler.sample_weights and loader.sampler.synthetic_pool is not None


def _model(classes=3):
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu", name="features"),
        keras.layers.Dense(classes, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("kind", ["pydataset", "tfdata"])
def test_the_callback_adapts_the_pool_within_one_fit(small_dataset, varied_cache, kind):
    schedule = RampSchedule(epochs=3, warmup_epochs=1, ramp_fraction=0)
    options = dict(synthetic_cache=varied_cache, schedule=schedule, **SETTINGS)
    if kind == "pydataset":
        train = BalancedBatchGenerator(small_dataset, **options)
        validation = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16),
                                            balance="none", shuffle=False)
    else:
        from genaug import image_dataset_from_directory

        train, validation = image_dataset_from_directory(
            str(small_dataset), validation_split=0.3, subset="both", verbose=False, **options)
    adapter = AdaptAfterWarmup(train, warmup_epochs=1, select="feature-distance",
                               allocate="confusion", validation=validation)
    offered = len(train.sampler.offered)
    keras.utils.set_random_seed(0)
    history = _model().fit(train, epochs=3, validation_data=validation, callbacks=[adapter],
                           verbose=0).history
    assert len(history["loss"]) == 3
    selection, allocation = adapter.selection, adapter.allocation
    assert selection["after_epoch"] == 1 and selection["features"]["layer"] == "features"
    assert selection["kept"] + selection["dropped"] == offered
    assert len(train.sampler.synthetic_pool) <= selection["kept"]
    caps = {n: row["synthetic_cap"] for n, row in allocation["per_class"].items()}
    assert train.sampler.caps.tolist() == pytest.approx([caps[n] for n in ("cat", "dog",
                                                                          "snake")], abs=1e-4)
    status = training_status(train, epochs=3, validation=validation, adaptation=adapter)
    assert status.details["synthetic_selection"] == selection
    assert status.details["synthetic_allocation"] == allocation
    assert status.synthetic_cap == 0.6  # the cap asked for; the allocation's are reported


def test_the_callback_refuses_what_it_cannot_do(small_dataset, varied_cache):
    loader = BalancedBatchGenerator(small_dataset, synthetic_cache=varied_cache, **SETTINGS)
    with pytest.raises(ConfigError, match="one of genaug's loaders"):
        AdaptAfterWarmup(object(), warmup_epochs=1, select="feature-distance")
    with pytest.raises(ConfigError, match="give validation="):
        AdaptAfterWarmup(loader, warmup_epochs=1, allocate="confusion")
    with pytest.raises(ConfigError, match="use BalancedBatchGenerator"):
        from genaug import image_dataset_from_directory

        AdaptAfterWarmup(image_dataset_from_directory(
            str(small_dataset), synthetic_cache=varied_cache, synthetic_pool_cap=0.3,
            verbose=False, **SETTINGS), warmup_epochs=1, select="feature-distance")
    with pytest.raises(ConfigError, match="warmup_epochs must be at least 1"):
        AdaptAfterWarmup(loader, warmup_epochs=0, select="class-margin")
    with pytest.raises(ConfigError, match="needs a loader with a synthetic cache"):
        AdaptAfterWarmup(BalancedBatchGenerator(small_dataset, **SETTINGS), warmup_epochs=1,
                         select="feature-distance")


def test_the_loader_applies_its_schedule_without_a_callback(small_dataset, varied_cache):
    schedule = RampSchedule(epochs=3, warmup_epochs=1)
    loader = BalancedBatchGenerator(small_dataset, synthetic_cache=varied_cache,
                                    schedule=schedule, **SETTINGS)
    _model().fit(loader, epochs=3, verbose=0)
    served = loader.draws_served()
    assert served[0]["dog"]["synthetic"] == 0 and served[2]["dog"]["synthetic"] > 0
    # (Keras may already ask for the first batch of a fourth epoch.)
    assert [served[e] for e in range(3)] == list(loader.sampler.composition(3).per_epoch)
