import keras
import numpy as np
import pytest

from genaug import BalancedBatchGenerator, RampSchedule
from genaug.cache import CacheWriter
from genaug.exceptions import ConfigError, DoubleCorrectionWarning


def tiny_model(size, channels, classes):
    model = keras.Sequential([keras.Input((size, size, channels)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(classes,
                                                                         activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", weighted_metrics=[])
    return model


def all_batches(loader):
    return [loader[i] for i in range(len(loader))]


def test_is_a_pydataset_with_equal_classes_per_batch(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0)
    assert isinstance(loader, keras.utils.PyDataset)
    assert loader.class_names == ("cat", "dog", "snake")
    assert len(loader) == 10  # 3 classes x 20 (largest) / 6
    for x, y in all_batches(loader):
        assert x.dtype == np.float32 and x.shape[1:] == (16, 16, 3)
        counts = np.bincount(y, minlength=3)
        assert counts.max() - counts.min() <= 1
    with pytest.raises(IndexError):
        loader[len(loader)]


def test_same_seed_same_batches_and_on_epoch_end_reshuffles(small_dataset):
    a = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=1)
    b = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=1)
    c = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=2)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0], c[0][0])
    first = a[0][0]
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(first, a[0][0])


def test_pydataset_kwargs_reach_keras(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, image_size=(16, 16), workers=2,
                                    use_multiprocessing=False, max_queue_size=4)
    assert loader.workers == 2 and loader.max_queue_size == 4


def test_real_model_fit_with_workers(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, batch_size=8, image_size=(16, 16), seed=0,
                                    workers=2)
    model = tiny_model(16, 3, 3)
    history = model.fit(loader, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert loader.epoch >= 2  # Keras called on_epoch_end after each epoch


def test_in_memory_pair_like_imbalanced_learn():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 8, 8, 1)).astype(np.uint8)
    y = np.array([0] * 25 + [1] * 5)
    for loader in (BalancedBatchGenerator((x, y), batch_size=10, image_size=(8, 8), seed=0),
                   BalancedBatchGenerator(x, y, batch_size=10, image_size=(8, 8), seed=0)):
        xb, yb = loader[0]
        assert xb.shape == (10, 8, 8, 1) and np.bincount(yb).tolist() == [5, 5]


def test_augmentation_callable_and_keras_layers(small_dataset):
    flipped = BalancedBatchGenerator(small_dataset, batch_size=4, image_size=(16, 16), seed=0,
                                     augment=lambda x: x[:, :, ::-1])
    plain = BalancedBatchGenerator(small_dataset, batch_size=4, image_size=(16, 16), seed=0)
    np.testing.assert_array_equal(flipped[0][0], plain[0][0][:, :, ::-1])
    layers = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0)])
    augmented = BalancedBatchGenerator(small_dataset, batch_size=4, image_size=(16, 16),
                                       seed=0, augment=layers)
    assert isinstance(augmented[0][0], np.ndarray) and augmented[0][0].shape == (4, 16, 16, 3)


def test_grayscale_and_resize(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, batch_size=4, image_size=(9, 11),
                                    color_mode="grayscale", seed=0)
    assert loader[0][0].shape == (4, 9, 11, 1)


def test_class_weight_returns_sample_weights(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                    balance="none", class_weight={0: 1.0, 1: 5.0, 2: 2.0})
    x, y, w = loader[0]
    np.testing.assert_allclose(w, np.array([1.0, 5.0, 2.0])[y])


def test_corrupt_file_is_skipped_mid_epoch_not_fatal(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, batch_size=8, image_size=(16, 16), seed=0)
    # damaged after indexing: the loader must substitute, report and go on
    victim = loader.real.paths[0]
    with open(victim, "wb") as handle:
        handle.write(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        batches = all_batches(loader)
    assert victim in loader.decode_failures
    assert all(np.bincount(y, minlength=3).max() - np.bincount(y, minlength=3).min() <= 1
               for _, y in batches)


def test_a_file_that_turns_out_corrupt_at_decode_time_is_substituted_and_reported(
        small_dataset, corrupt_pixel_data):
    # Indexing reads headers only: the file is listed, and caught when it is decoded.
    victim = str(sorted((small_dataset / "dog").iterdir())[1])
    corrupt_pixel_data(victim)
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                    verbose=False)
    assert victim in loader.real.paths and not loader.skipped
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        batches = all_batches(loader)
    assert set(loader.decode_failures) == {victim}
    y = np.concatenate([labels for _, labels in batches])
    assert np.bincount(y).tolist() == [20, 20, 20]


def synthetic_cache(root, per_class, size=16):
    with CacheWriter(root) as writer:
        for name, n in per_class.items():
            for i in range(n):
                writer.add(np.full((size, size, 3), 255, np.uint8), class_name=name,
                           record_id=f"{name}-{i}", source_id=None if i else f"{name}/held.png")
    return root


def test_synthetic_mixing_in_the_pydataset(small_dataset, tmp_path):
    cache = synthetic_cache(tmp_path / "cache", {"dog": 12, "snake": 12})
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                    synthetic_cache=cache, synthetic_weight=0.5,
                                    exclude_source_ids={"dog/held.png"})
    assert loader.synthetic_pool.excluded_leakage == 1
    x, y, w = (np.concatenate(parts) for parts in zip(*all_batches(loader)))
    white = (x == 255).all(axis=(1, 2, 3))  # the synthetic images are all white
    assert white.any() and not white[y == 0].any()
    np.testing.assert_allclose(w[white], 0.5)
    np.testing.assert_allclose(w[~white], 1.0)
    composition = loader.draws_served()[0]
    assert composition["cat"]["synthetic"] == 0 and composition["dog"]["synthetic"] > 0


def test_ramp_callback_drives_the_pydataset(small_dataset, tmp_path):
    cache = synthetic_cache(tmp_path / "cache", {"dog": 12})
    schedule = RampSchedule(epochs=3, warmup_epochs=1)
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                    synthetic_cache=cache, schedule=schedule)
    model = tiny_model(16, 3, 3)
    model.fit(loader, epochs=3, verbose=0, callbacks=[schedule.callback(loader)])
    composition = loader.draws_served()
    assert composition[0]["dog"]["synthetic"] == 0
    assert composition[2]["dog"]["synthetic"] > 0


@pytest.mark.parametrize("backend", ["keras", "keras_cv"])
def test_named_augmentation_pipelines(small_dataset, backend):
    if backend == "keras_cv":
        pytest.importorskip("keras_cv")
    from genaug.loaders import build_augmentation

    names = ["flip", "rotation", "contrast"] + (["randaugment"] if backend == "keras_cv" else [])
    augment = build_augmentation(names, backend=backend, seed=0)
    loader = BalancedBatchGenerator(small_dataset, batch_size=4, image_size=(16, 16), seed=0,
                                    augment=augment)
    x, _ = loader[0]
    assert x.shape == (4, 16, 16, 3) and np.isfinite(x).all()


def test_unknown_augmentation_is_a_clear_error():
    from genaug.exceptions import ConfigError
    from genaug.loaders import build_augmentation

    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_augmentation(["sharpen"])
    with pytest.raises(ConfigError, match="randaugment needs --augment-backend keras_cv"):
        build_augmentation(["randaugment"])


# --- the loaders keep every promise ------------------------------------------------------


def test_a_manifests_split_column_is_obeyed(split_manifest, make_cache, tmp_path):
    # Bug fixed: BalancedBatchGenerator trained on a manifest's test and validation rows.
    manifest, rows = split_manifest
    cache = make_cache(tmp_path / "cache", {"dog": 6},
                       source_ids={"dog": "images/dog/dog_003.png"})  # a validation row
    loader = BalancedBatchGenerator(manifest, batch_size=6, image_size=(16, 16), seed=0,
                                    synthetic_cache=cache, verbose=False)
    assert set(loader.real.paths) == rows["train"]
    assert loader.synthetic_pool.excluded_leakage == 1
    drawn = set()
    for epoch in range(4):
        mixed = loader.sampler.mixed(epoch)
        drawn |= {loader.real.paths[i] for i in mixed.index[mixed.source == 0]}
    assert drawn == rows["train"]


def test_in_memory_arrays_keep_their_shape_and_dtype():
    # Bug fixed: arrays were resized to 256x256 (uint8) or failed image by image (float).
    rng = np.random.default_rng(0)
    y = np.array([0] * 25 + [1] * 5)
    x = rng.integers(0, 255, (30, 16, 16, 3)).astype(np.uint8)
    loader = BalancedBatchGenerator((x, y), batch_size=10, seed=0)
    xb, _ = loader[0]
    assert xb.shape == (10, 16, 16, 3)
    model = tiny_model(16, 3, 2)
    assert len(model.fit(loader, epochs=1, verbose=0).history["loss"]) == 1
    floats = rng.random((30, 8, 8, 1)).astype(np.float32)
    loader = BalancedBatchGenerator(floats, y, batch_size=10, seed=0, balance="none",
                                    shuffle=False)
    xb, yb = loader[0]
    assert xb.dtype == np.float32 and xb.shape == (10, 8, 8, 1)
    np.testing.assert_array_equal(xb, floats[:10])
    resized = BalancedBatchGenerator((x, y), batch_size=10, image_size=(8, 8), seed=0)
    assert resized[0][0].shape == (10, 8, 8, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": (16, 16)}, r"cannot be resized to image_size=\(16, 16\)"),
    ({"color_mode": "rgb"}, r"color_mode='rgb' does not match the arrays' 1 channel"),
])
def test_what_arrays_cannot_do_is_one_error_up_front(kwargs, message):
    from genaug.exceptions import ConfigError

    x = np.zeros((6, 8, 8, 1), np.float32)
    with pytest.raises(ConfigError, match=message):
        BalancedBatchGenerator(x, np.array([0, 1] * 3), batch_size=2, **kwargs)


def test_skipped_files_are_reported_and_reachable(broken_folder, capsys):
    loader = BalancedBatchGenerator(broken_folder, batch_size=4, image_size=(16, 16), seed=0)
    out = capsys.readouterr().out
    assert ("Found 16 files belonging to 2 classes. Skipped 4 files (3 unreadable, 1 not an "
            "image): see loader.skipped.") in out
    assert len(loader.skipped) == 4
    BalancedBatchGenerator(broken_folder, batch_size=4, image_size=(16, 16), verbose=False)
    assert capsys.readouterr().out == ""


def test_seeded_augmentation_gives_the_same_batches_whatever_the_workers(small_dataset):
    # Bug fixed: with a seeded RandomFlip, g[0] changed on every call and workers=2 runs
    # trained on different images.
    from concurrent.futures import ThreadPoolExecutor

    def loader():
        keras.utils.set_random_seed(123)
        return BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                      augment=keras.layers.RandomFlip("horizontal", seed=1))

    sequential = loader()
    first = [sequential[i][0] for i in range(len(sequential))]
    np.testing.assert_array_equal(sequential[0][0], first[0])
    threaded = loader()
    with ThreadPoolExecutor(4) as pool:  # out of order, concurrently
        batches = dict(pool.map(lambda i: (i, threaded[i][0]), reversed(range(len(threaded)))))
    for i, batch in enumerate(first):
        np.testing.assert_array_equal(batches[i], batch)
    flips = [not np.array_equal(batch, plain) for batch, plain in
             zip(first, all_batches(BalancedBatchGenerator(small_dataset, batch_size=6,
                                                           image_size=(16, 16), seed=0)))]
    assert any(flips)  # it does augment
    other = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                   augment=keras.layers.RandomFlip("horizontal", seed=2))
    assert any(not np.array_equal(other[i][0], first[i]) for i in range(len(first)))


def test_fit_with_workers_is_reproducible(small_dataset):
    def run():
        keras.utils.set_random_seed(123)
        loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16),
                                        seed=0, workers=2,
                                        augment=keras.layers.RandomFlip(seed=1))
        return tiny_model(16, 3, 3).fit(loader, epochs=2, verbose=0).history["loss"]

    assert run() == run()


def test_fit_class_weight_on_a_balancing_generator_warns(small_dataset):
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0)
    with pytest.warns(DoubleCorrectionWarning, match="corrects the imbalance twice"):
        tiny_model(16, 3, 3).fit(loader, epochs=1, class_weight={0: 1.0, 1: 5.0, 2: 2.0},
                                 verbose=0)


def test_a_broken_cached_image_falls_back_along_the_chain(small_dataset, make_cache, tmp_path):
    cache = make_cache(tmp_path / "cache", {"dog": 3})
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                    synthetic_cache=cache, synthetic_ratio=0.5)
    for path in loader.synthetic_pool.paths:  # every cached dog breaks: the planned real dog serves
        open(path, "wb").write(b"garbage")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        x, y = (np.concatenate(parts) for parts in zip(*all_batches(loader)))
    assert set(loader.decode_failures) == set(loader.synthetic_pool.paths)
    assert not (x == 255).all(axis=(1, 2, 3)).any() and (y == 1).any()


def test_fit_class_weight_that_misses_classes_is_one_clear_error(image_folder_factory):
    folder = image_folder_factory({f"c{i}": 2 + i for i in range(5)})
    loader = BalancedBatchGenerator(folder, batch_size=4, image_size=(16, 16), seed=0,
                                    balance="none")
    model = tiny_model(16, 3, 5)
    with pytest.raises(ConfigError, match=r"missing 2 \(c2\), 3 \(c3\), 4 \(c4\)"):
        model.fit(loader, epochs=1, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    assert int(model.optimizer.iterations) == 0  # refused before the first step
