import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import genaug
from genaug.cache import CacheWriter
from genaug.exceptions import ConfigError, DoubleCorrectionWarning


def epoch_of(dataset):
    parts = list(dataset.as_numpy_iterator())
    return [np.concatenate(column) for column in zip(*parts)]


def test_drop_in_keeps_keras_names_and_returns_class_names(small_dataset):
    ds = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), batch_size=8,
                                             seed=0, verbose=False)
    assert isinstance(ds, tf.data.Dataset)
    assert ds.class_names == ["cat", "dog", "snake"]
    x, y = epoch_of(ds)
    assert x.dtype == np.float32 and x.shape[1:] == (16, 16, 3)
    assert np.bincount(y).tolist() == [20, 20, 20]  # oversampled to the largest class


def test_pixels_match_keras_own_loader(small_dataset):
    ours = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), seed=0,
                                               balance="none", shuffle=False, verbose=False)
    theirs = keras.utils.image_dataset_from_directory(small_dataset, image_size=(16, 16),
                                                      shuffle=False, verbose=False)
    (x1, y1), (x2, y2) = epoch_of(ours), epoch_of(theirs)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(x1, x2)


@pytest.mark.parametrize("balance", ["oversample", "balanced_batches"])
def test_deterministic_and_reshuffled_per_epoch(small_dataset, balance):
    make = lambda seed: genaug.image_dataset_from_directory(  # noqa: E731
        small_dataset, image_size=(16, 16), batch_size=6, seed=seed, balance=balance,
        verbose=False)
    a, b = make(3), make(3)
    first_a, first_b = epoch_of(a), epoch_of(b)
    np.testing.assert_array_equal(first_a[0], first_b[0])
    assert not np.array_equal(first_a[0], epoch_of(make(4))[0])
    assert not np.array_equal(first_a[0], epoch_of(a)[0])  # second pass = next epoch


def test_balanced_batches_are_balanced(small_dataset):
    ds = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), batch_size=6,
                                             seed=0, balance="balanced_batches", verbose=False)
    for _, y in ds.as_numpy_iterator():
        counts = np.bincount(y, minlength=3)
        assert counts.max() - counts.min() <= 1


def test_validation_split_is_stratified_unbalanced_and_disjoint(small_dataset):
    train, val = genaug.image_dataset_from_directory(
        small_dataset, image_size=(16, 16), validation_split=0.25, subset="both", seed=0,
        verbose=False)
    assert set(train.file_paths).isdisjoint(val.file_paths)
    _, y_val = epoch_of(val)
    # real images once, every class present; 2.5 rounds half up
    assert np.bincount(y_val).tolist() == [5, 1, 3]


def frozen_model():
    """A classifier fit cannot change (learning rate 0): the loss fit reports for an epoch is
    then the mean over its samples of weight x cross-entropy, whatever their order."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    return model


def cross_entropy(model, x, y):
    return -np.log(model.predict(x, verbose=0)[np.arange(len(y)), y])


def test_fit_with_class_weight_and_with_sample_weights(small_dataset):
    model = frozen_model()
    plain = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), seed=0,
                                                balance="none", verbose=False)
    x, y = epoch_of(plain)
    losses = cross_entropy(model, x, y)
    weights = genaug.compute_class_weights(y, plain.class_names)
    per_sample = np.array([weights[label] for label in y])
    assert not np.allclose(per_sample, 1.0)
    reported = model.fit(plain, epochs=1, class_weight=weights, verbose=0).history["loss"][0]
    assert reported == pytest.approx(np.mean(per_sample * losses), rel=1e-4)
    assert reported != pytest.approx(np.mean(losses), rel=1e-2)  # the weights changed it
    # the loader's own class weights, as sample weights, reach the loss the same way
    weighted_plain = genaug.image_dataset_from_directory(
        small_dataset, image_size=(16, 16), seed=0, balance="none", class_weight="balanced",
        verbose=False)
    _, y, w = epoch_of(weighted_plain)
    np.testing.assert_allclose(w, [weights[label] for label in y], rtol=1e-6)
    reported = model.fit(weighted_plain, epochs=1, verbose=0).history["loss"][0]
    assert reported == pytest.approx(np.mean(per_sample * losses), rel=1e-4)
    weighted = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), seed=0,
                                                   class_weight="balanced", verbose=False)
    # fit sees the next epoch: 20 / 4 / 10 images oversampled to 20 each are the same draws
    x, y, w = epoch_of(weighted)
    np.testing.assert_allclose(w, 1.0)  # oversampled: the delivered distribution is flat
    reported = model.fit(weighted, epochs=1, verbose=0).history["loss"][0]
    assert reported == pytest.approx(np.mean(cross_entropy(model, x, y)), rel=1e-4)


def test_synthetic_mixing_and_leakage_guard(small_dataset, tmp_path):
    train, val = genaug.image_dataset_from_directory(
        small_dataset, image_size=(16, 16), validation_split=0.25, subset="both", seed=0,
        verbose=False)
    held = [p for p in val.file_paths]
    held_id = "dog/" + held[[i for i, p in enumerate(held) if "/dog/" in p][0]].split("/")[-1]
    with CacheWriter(tmp_path / "cache") as writer:
        for i in range(10):
            writer.add(np.full((16, 16, 3), 255, np.uint8), class_name="dog",
                       record_id=f"d{i}", source_id=held_id if i == 0 else None)
    train, val = genaug.image_dataset_from_directory(
        small_dataset, image_size=(16, 16), validation_split=0.25, subset="both", seed=0,
        synthetic_cache=tmp_path / "cache", synthetic_ratio=0.5, verbose=False)
    assert train.sampler.synthetic_pool.excluded_leakage == 1
    x, y = epoch_of(train)
    white = (x == 255).all(axis=(1, 2, 3))
    assert white.any() and set(y[white].tolist()) == {1}
    xv, _ = epoch_of(val)
    assert not (xv == 255).all(axis=(1, 2, 3)).any()  # never in validation


def test_modes_and_formats_decoded_like_pil(image_folder_factory):
    for mode, ext in (("P", "png"), ("I;16", "png"), ("RGBA", "png"), ("RGB", "webp"),
                      ("RGB", "bmp"), ("L", "jpg")):
        root = image_folder_factory({"a": 2, "b": 2}, mode=mode, ext=ext)
        ds = genaug.image_dataset_from_directory(root, image_size=(16, 16), balance="none",
                                                 shuffle=False, verbose=False)
        x, _ = epoch_of(ds)
        loader = genaug.BalancedBatchGenerator(root, image_size=(16, 16), balance="none",
                                               shuffle=False, batch_size=4)
        np.testing.assert_allclose(x, loader[0][0], atol=2, err_msg=f"{mode} {ext}")


@pytest.mark.parametrize("kwargs, message", [
    ({"subset": "training"}, "validation_split and subset must be given together"),
    ({"validation_split": 0.2, "subset": "training"}, "needs a seed"),
    ({"labels": [0, 1]}, "explicit label lists are not supported"),
    ({"label_mode": "binary"}, "needs exactly 2 classes"),
])
def test_argument_errors(small_dataset, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        genaug.image_dataset_from_directory(small_dataset, verbose=False, **kwargs)


def test_mixup_blends_synthetic_with_a_real_image_of_its_class(small_dataset, tmp_path):
    with CacheWriter(tmp_path / "cache") as writer:
        for i in range(10):
            writer.add(np.full((16, 16, 3), 255, np.uint8), class_name="dog", record_id=f"d{i}")
    ds = genaug.image_dataset_from_directory(
        small_dataset, image_size=(16, 16), seed=0, synthetic_cache=tmp_path / "cache",
        synthetic_ratio=0.5, mixup=True, verbose=False)
    x, y = epoch_of(ds)
    mixed = ds.sampler.mixed(0)
    blended = x[mixed.partner >= 0]
    assert len(blended) and (y[mixed.partner >= 0] == 1).all()
    # lam in [0.3, 0.7] of white: brighter than any real dog, never pure white
    assert (blended.mean(axis=(1, 2, 3)) > x[(y == 1) & (mixed.partner < 0)].mean()).all()
    assert not (blended == 255).all(axis=(1, 2, 3)).any()


def tiny_model(classes=3, size=16):
    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(classes,
                                                                         activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


# --- the loaders keep every promise ------------------------------------------------------


def test_a_manifests_test_rows_are_never_loaded_and_its_validation_rows_validate(
        split_manifest):
    # Bug fixed: the split column was ignored, so every test row was trained on.
    manifest, rows = split_manifest
    ds = genaug.image_dataset_from_directory(manifest, image_size=(16, 16), seed=0,
                                             verbose=False)
    assert set(ds.file_paths) == rows["train"]
    _, y = epoch_of(ds)
    assert np.bincount(y).tolist() == [11, 11]  # cat: 10 train rows + 1 without a split
    train, val = genaug.image_dataset_from_directory(manifest, image_size=(16, 16), seed=0,
                                                     subset="both", verbose=False)
    assert set(train.file_paths) == rows["train"]
    assert set(val.file_paths) == rows["validation"]
    with pytest.warns(UserWarning, match="validation_split=0.2 is ignored"):
        train, val = genaug.image_dataset_from_directory(
            manifest, image_size=(16, 16), seed=0, validation_split=0.2, subset="both",
            verbose=False)
    assert set(train.file_paths) == rows["train"]
    assert set(val.file_paths) == rows["validation"]


def test_synthetic_images_derived_from_a_manifests_test_rows_are_excluded(
        split_manifest, make_cache, tmp_path):
    manifest, _ = split_manifest
    cache = make_cache(tmp_path / "cache", {"dog": 6},
                       source_ids={"dog": "images/dog/dog_000.png"})  # a test row
    ds = genaug.image_dataset_from_directory(manifest, image_size=(16, 16), seed=0,
                                             synthetic_cache=cache, verbose=False)
    assert ds.sampler.synthetic_pool.excluded_leakage == 1 and len(ds.sampler.synthetic_pool) == 5


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted"])
def test_fit_survives_a_file_that_breaks_after_indexing(small_dataset, damage):
    # Bug fixed: model.fit stopped with "InvalidArgumentError: Unknown image file format".
    ds = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), batch_size=6,
                                             seed=0, balance="balanced_batches", verbose=False)
    victim = ds.file_paths[len(ds.file_paths) // 2]
    whole = open(victim, "rb").read()
    if damage == "deleted":
        os.remove(victim)
    else:
        with open(victim, "wb") as handle:
            handle.write(b"garbage" if damage == "garbage" else whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        history = tiny_model().fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert victim in ds.decode_failures
    # The next epoch: every batch keeps its classes, the epoch its length; the batch with the
    # broken file is read again (with a stand-in) after the others.
    planned = [tuple(ds.sampler.mixed(2).labels[b * 6:(b + 1) * 6]) for b in range(10)]
    delivered = [tuple(y) for _, y in ds.as_numpy_iterator()]
    assert any(delivered == planned[:b] + planned[b + 1:] + [planned[b]] for b in range(10))


def test_a_broken_file_in_single_image_mode_and_in_a_mixup_partner(small_dataset, make_cache,
                                                                   tmp_path):
    cache = make_cache(tmp_path / "cache", {"dog": 10})
    ds = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), batch_size=None,
                                             seed=0, synthetic_cache=cache, synthetic_ratio=0.5,
                                             mixup=True, verbose=False)
    dogs = [p for p in ds.file_paths if "/dog/" in p]
    for path in dogs[:2]:  # real dogs are the mixup partners
        open(path, "wb").write(b"garbage")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        images = [x for x, _ in ds.as_numpy_iterator()]
    assert len(images) == ds.sampler.plan.epoch_size
    assert set(ds.decode_failures) == set(dogs[:2])


def test_a_partial_pass_before_fit_does_not_move_the_epoch(small_dataset):
    # Bug fixed: train.take(1) moved the sampler to epoch 1, so every later epoch shifted.
    def make():
        return genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16),
                                                   batch_size=6, seed=0, verbose=False)

    fresh = make()
    first, second = epoch_of(fresh)[1], epoch_of(fresh)[1]
    previewed = make()
    list(previewed.take(1))
    for _ in previewed:
        break
    assert previewed.sampler.epoch == 0
    np.testing.assert_array_equal(epoch_of(previewed)[1], first)
    assert previewed.sampler.epoch == 1  # a complete pass moves it
    np.testing.assert_array_equal(epoch_of(previewed)[1], second)


def test_skipped_files_are_counted_on_the_found_line(broken_folder, capsys):
    ds = genaug.image_dataset_from_directory(broken_folder, image_size=(16, 16), seed=0)
    out = capsys.readouterr().out
    assert ("Found 16 files belonging to 2 classes. Skipped 4 files (3 unreadable, 1 not an "
            "image): see dataset.skipped.") in out
    assert sorted(s.kind for s in ds.skipped) == ["not an image"] + ["unreadable"] * 3
    assert {os.path.basename(s.path) for s in ds.skipped} == {
        "corrupt.png", "truncated.png", "dangling.png", "README.txt"}


def test_fit_class_weight_on_a_balancing_loader_warns(small_dataset):
    weights = {0: 1.0, 1: 5.0, 2: 2.0}
    balanced = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), seed=0,
                                                   verbose=False)
    with pytest.warns(DoubleCorrectionWarning, match="corrects the imbalance twice"):
        tiny_model().fit(balanced, epochs=1, class_weight=weights, verbose=0)
    plain = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16), seed=0,
                                                balance="none", verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_model().fit(plain, epochs=1, class_weight=weights, verbose=0)
    assert not [w for w in caught if "twice" in str(w.message)]


# --- an index that reads headers only, a resize skipped where it changes nothing ----------


def test_a_file_that_turns_out_corrupt_at_decode_time_is_substituted_and_reported(
        small_dataset, corrupt_pixel_data):
    dogs = sorted(str(p) for p in (small_dataset / "dog").iterdir())
    corrupt_pixel_data(dogs[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is reported while indexing
        ds = genaug.image_dataset_from_directory(small_dataset, image_size=(16, 16),
                                                 batch_size=6, seed=0, verbose=False)
    assert dogs[1] in ds.file_paths and not ds.skipped
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        x, y = epoch_of(ds)
    assert set(ds.decode_failures) == {dogs[1]}
    assert np.bincount(y).tolist() == [20, 20, 20]  # the epoch keeps its classes and length
    dog_pixels = x[y == 1]
    assert dog_pixels.shape[0] == 20 and dog_pixels.max() > 0


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "area",
                                           "lanczos3", "gaussian"])
def test_pixels_match_keras_at_the_files_own_size_for_every_interpolation(
        image_folder_factory, interpolation):
    # At its own size the resize is skipped where it would return the pixels unchanged.
    root = image_folder_factory({"a": 3, "b": 2}, size=(12, 10))
    for image_size in ((10, 12), (7, 9)):
        ours = genaug.image_dataset_from_directory(
            root, image_size=image_size, interpolation=interpolation, balance="none",
            shuffle=False, verbose=False)
        theirs = keras.utils.image_dataset_from_directory(
            root, image_size=image_size, interpolation=interpolation, shuffle=False,
            verbose=False)
        np.testing.assert_allclose(epoch_of(ours)[0], epoch_of(theirs)[0], atol=1e-4)


def test_a_file_whose_size_changed_after_indexing_is_delivered_at_image_size(
        image_folder_factory):
    root = image_folder_factory({"a": 4, "b": 4}, size=(16, 16))
    ds = genaug.image_dataset_from_directory(root, image_size=(16, 16), batch_size=4,
                                             balance="none", shuffle=False, verbose=False)
    grown = image_folder_factory({"a": 1}, size=(32, 32), root=root / "grown")
    os.replace(grown / "a" / "a_000.png", root / "a" / "a_001.png")
    x, y = epoch_of(ds)
    # The batch holding it is read again (by PIL, resized) after the other one.
    assert x.shape == (8, 16, 16, 3) and y.tolist() == [1] * 4 + [0] * 4
    assert not ds.decode_failures


@pytest.mark.parametrize("weights, message", [
    ({0: 1.0, 1: 2.0}, r"missing 2 \(c2\), 3 \(c3\), 4 \(c4\)"),
    ({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 7: 3.0}, r"unknown 7"),
])
def test_fit_class_weight_that_misses_or_invents_classes_is_one_clear_error(
        image_folder_factory, weights, message):
    folder = image_folder_factory({f"c{i}": 2 + i for i in range(5)})
    plain = genaug.image_dataset_from_directory(folder, image_size=(16, 16), seed=0,
                                                balance="none", verbose=False)
    model = tiny_model(classes=5)
    with pytest.raises(ConfigError, match=message):
        model.fit(plain, epochs=1, class_weight=weights, verbose=0)
    assert model.optimizer.iterations.numpy() == 0  # refused before the first step
