import keras
import numpy as np
import pytest

from genaug import BalancedBatchGenerator, RampSchedule
from genaug.synthetic import CacheWriter


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
    assert loader.synthetic.excluded_leakage == 1
    x, y, w = (np.concatenate(parts) for parts in zip(*all_batches(loader)))
    white = (x == 255).all(axis=(1, 2, 3))  # the synthetic images are all white
    assert white.any() and not white[y == 0].any()
    np.testing.assert_allclose(w[white], 0.5)
    np.testing.assert_allclose(w[~white], 1.0)
    composition = loader.composition()[0]
    assert composition["cat"]["synthetic"] == 0 and composition["dog"]["synthetic"] > 0


def test_ramp_callback_drives_the_pydataset(small_dataset, tmp_path):
    cache = synthetic_cache(tmp_path / "cache", {"dog": 12})
    schedule = RampSchedule(epochs=3, warmup_epochs=1)
    loader = BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(16, 16), seed=0,
                                    synthetic_cache=cache, schedule=schedule)
    model = tiny_model(16, 3, 3)
    model.fit(loader, epochs=3, verbose=0, callbacks=[schedule.callback(loader)])
    composition = loader.composition()
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
