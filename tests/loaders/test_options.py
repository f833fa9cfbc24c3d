"""One options object, one factory, one data normaliser, one source interface."""

from __future__ import annotations

import numpy as np
import pytest

from genaug.data import DatasetIndex
from genaug.exceptions import ConfigError, DatasetError
from genaug.loaders import SamplingOptions, adapt_data, build_sampler
from genaug.sampling import SYNTHETIC, Balance, RampSchedule, SyntheticRecipe
from genaug.sources import CacheSource, FreshSource, RealSource, Source, as_cache_source


def test_options_are_validated_and_normalised_once():
    options = SamplingOptions.from_arguments(dict(
        balance="balanced_batches", synthetic_ratio=[0.1, 0.3], synthetic_classes="dog, snake",
        exclude_source_ids=["a/1.png"]))
    assert options.balance is Balance.BALANCED_BATCHES and options.balance == "balanced_batches"
    assert options.synthetic == SyntheticRecipe(ratio=(0.1, 0.3), classes=("dog", "snake"))
    assert options.exclude_source_ids == frozenset({"a/1.png"})
    with pytest.raises(AttributeError):
        options.seed = 3  # frozen
    plain = options.evaluation(shuffle=False)
    assert plain.balance is Balance.NONE and not plain.shuffle and plain.class_weight is None


@pytest.mark.parametrize("kwargs, message", [
    ({"balance": "sideways"}, "balance must be one of none, oversample, balanced_batches"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"epoch_size": -3}, "epoch_size must be 'max' or a positive integer"),
    ({"seed": 1.5}, "seed must be a non-negative integer"),
    ({"class_weight": "heavy"}, "class_weight must be a dict or 'balanced'"),
    ({"synthetic": {"ratio": 0.5}}, "synthetic must be a SyntheticRecipe, got dict"),
    ({"schedule": 0.5}, "schedule must have a factor"),
])
def test_bad_options_name_their_parameter(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SamplingOptions(**kwargs)


@pytest.mark.parametrize("data", ["path", "index", "pair", "x_y"])
def test_every_data_argument_becomes_the_same_loader_data(small_dataset, data):
    index = DatasetIndex.load(small_dataset)
    x = np.zeros((len(index), 4, 4, 3), np.uint8)
    names = np.asarray(index.class_names)[index.labels]
    arguments = {"path": (small_dataset,), "index": (index,), "pair": ((x, names),),
                 "x_y": (x, names)}[data]
    loaded = adapt_data(*arguments)
    assert loaded.class_names == ("cat", "dog", "snake")
    assert loaded.training.counts().tolist() == [20, 4, 10]
    assert isinstance(loaded.training, Source)
    assert loaded.indexed == (data == "path")


def test_arrays_with_unknown_label_names_are_one_error():
    with pytest.raises(DatasetError, match="labels not in class_names: bird"):
        adapt_data(np.zeros((2, 4, 4, 1)), ["cat", "bird"], class_names=["cat"])


def test_the_factory_guards_and_caps_the_synthetic_pool(small_dataset, make_cache, tmp_path):
    cache = make_cache(tmp_path / "cache", {"dog": 30, "snake": 4},
                       source_ids={"dog": "dog/held.png"})
    index = DatasetIndex.load(small_dataset)
    options = SamplingOptions(seed=0, synthetic=SyntheticRecipe(ratio=0.5, cap=1.0,
                                                                pool_cap=0.6))
    sampler = build_sampler(index, options, synthetic_cache=cache,
                            held_out_ids={"dog/held.png"})
    assert sampler.synthetic_pool.excluded_leakage == 1
    # dog: 4 real images -> at most floor(0.6 / 0.4 * 4) = 6 distinct synthetic ones
    assert sampler.synthetic_pool.counts().tolist() == [0, 6, 4]
    used = {name: set() for name in index.class_names}
    for epoch in range(10):
        mixed = sampler.mixed(epoch)
        for c, name in enumerate(index.class_names):
            picked = mixed.index[(mixed.labels == c) & (mixed.source == SYNTHETIC)]
            used[name] |= {sampler.synthetic_pool.ids[i] for i in picked}
    assert len(used["dog"]) == 6
    share = len(used["dog"]) / (len(used["dog"]) + 4)
    assert share <= 0.6
    again = build_sampler(index, options, synthetic_cache=cache,
                          held_out_ids={"dog/held.png"})
    # the same seed keeps the same images
    assert again.synthetic_pool.ids == sampler.synthetic_pool.ids


def test_only_the_selected_synthetic_images_are_drawn(small_dataset, make_cache, tmp_path):
    cache = make_cache(tmp_path / "cache", {"dog": 10, "snake": 4})
    index = DatasetIndex.load(small_dataset)
    every = build_sampler(index, SamplingOptions(seed=0), synthetic_cache=cache).synthetic_pool.ids
    chosen = frozenset(every[::3])
    options = SamplingOptions(seed=0, synthetic=SyntheticRecipe(ratio=0.5, cap=1.0),
                              synthetic_ids=list(chosen))
    assert options.synthetic_ids == chosen
    sampler = build_sampler(index, options, synthetic_cache=cache)
    assert set(sampler.synthetic_pool.ids) == chosen
    drawn = set()
    for epoch in range(5):
        mixed = sampler.mixed(epoch)
        drawn |= {sampler.synthetic_pool.ids[i] for i in mixed.index[mixed.source == SYNTHETIC]}
    assert drawn and drawn <= chosen
    with pytest.raises(ConfigError, match="synthetic_ids must be a collection"):
        SamplingOptions(synthetic_ids="dog/1.png")


def test_a_class_without_real_images_is_exempt_from_the_pool_cap(image_folder_factory,
                                                                 make_cache, tmp_path):
    root = image_folder_factory({"cat": 10, "dog": 0})
    cache = make_cache(tmp_path / "cache", {"dog": 9})
    sampler = build_sampler(DatasetIndex.load(root),
                            SamplingOptions(seed=0, synthetic=SyntheticRecipe(pool_cap=0.2)),
                            synthetic_cache=cache)
    assert sampler.synthetic_pool.counts().tolist() == [0, 9] and sampler.synthetic_only == ["dog"]


def test_a_given_cache_source_is_reused_or_widened(small_dataset, make_cache, tmp_path):
    cache = make_cache(tmp_path / "cache", {"dog": 3}, source_ids={"dog": "dog/x.png"})
    names = ("cat", "dog", "snake")
    source = CacheSource(cache, class_names=names, exclude_source_ids={"dog/x.png"})
    assert as_cache_source(source, class_names=names, exclude_source_ids={"dog/x.png"}) \
        is source
    plain = CacheSource(cache, class_names=names)
    widened = as_cache_source(plain, class_names=names, exclude_source_ids={"dog/x.png"})
    assert len(plain) == 3 and len(widened) == 2 and widened.excluded_leakage == 1


def test_sources_share_one_interface(small_dataset, make_cache, tmp_path):
    from genaug.live import LiveSource

    index = DatasetIndex.load(small_dataset)
    cache = CacheSource(make_cache(tmp_path / "cache", {"dog": 2}), class_names=index.class_names)
    for source in (RealSource(index), cache,
                   RealSource(images=np.zeros((2, 4, 4, 3)), labels=[0, 1])):
        assert isinstance(source, Source)
        assert source.counts().sum() == len(source) == len(source.labels) == len(source.ids)
        assert source.load(0, image_size=(4, 4), color_mode="rgb").shape == (4, 4, 3)

    class Worker:  # what LiveSource needs of a worker to be built (it is never started)
        batch_size, producer = 2, "thread"

        def producible(self):
            return [False, True, True]

    live = LiveSource(Worker(), class_names=index.class_names)
    assert isinstance(live, FreshSource)  # structural: a live stream, not a pool
    assert not isinstance(live, Source)


def test_sample_weights_default_is_decided_once(small_dataset, make_cache, tmp_path):
    index = DatasetIndex.load(small_dataset)
    cache = make_cache(tmp_path / "cache", {"dog": 4})
    weighted = build_sampler(index, SamplingOptions(seed=0, synthetic=SyntheticRecipe(weight=0.5)),
                             synthetic_cache=cache)
    assert weighted.sample_weights
    assert not build_sampler(index, SamplingOptions(seed=0), synthetic_cache=cache).sample_weights
    assert build_sampler(index, SamplingOptions(seed=0, class_weight="balanced")).sample_weights
    schedule = RampSchedule(epochs=4)
    assert build_sampler(index, SamplingOptions(schedule=schedule)).options.schedule is schedule


def test_both_loaders_take_every_option_as_a_keyword():
    # The loaders convert their keyword arguments with SamplingOptions.from_arguments: an
    # option missing from a signature would silently keep its default.
    import dataclasses
    import inspect

    from genaug.loaders import BalancedBatchGenerator, image_dataset_from_directory

    names = {f.name for f in dataclasses.fields(SamplingOptions)}
    for loader in (BalancedBatchGenerator.__init__, image_dataset_from_directory):
        assert names <= set(inspect.signature(loader).parameters), loader


def test_both_loaders_take_the_recipe_flat_or_whole_not_both(small_dataset):
    import genaug

    recipe = SyntheticRecipe(ratio=0.5, weight=0.3)
    common = dict(image_size=(8, 8), seed=0, verbose=False)
    for make in (genaug.BalancedBatchGenerator, genaug.image_dataset_from_directory):
        flat = make(small_dataset, synthetic_ratio=0.5, synthetic_weight=0.3, **common)
        whole = make(small_dataset, synthetic=recipe, **common)
        assert flat.sampler.options == whole.sampler.options
        assert whole.sampler.options.synthetic is recipe
        with pytest.raises(ConfigError, match="or synthetic_ratio, not both"):
            make(small_dataset, synthetic=recipe, synthetic_ratio=0.2, **common)
