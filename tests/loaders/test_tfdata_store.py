"""The tf.data loader's image store: same batches as streaming, gathered in bulk."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import genaug
from genaug.data import build_store
from genaug.loaders import _stored
from genaug.loaders._tfdata import _TFPipeline


def take_epoch(dataset):
    return [tuple(np.asarray(column) for column in batch) for batch in dataset]


def assert_same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def loader(root, cache, **kwargs):
    return genaug.image_dataset_from_directory(root, seed=3, verbose=False, cache=cache,
                                               **kwargs)


@pytest.mark.parametrize("image_size", [(20, 20), (16, 16)], ids=["own-size", "resized"])
def test_batches_identical_with_and_without_store(image_folder_factory, make_cache, tmp_path,
                                                  image_size):
    root = image_folder_factory({"a": 12, "b": 3}, size=(20, 20))
    synthetic = make_cache(tmp_path / "synth", {"b": 5}, size=20)
    common = dict(batch_size=8, image_size=image_size, synthetic_cache=synthetic,
                  synthetic_ratio=0.5, mixup=True, class_weight="balanced")

    def flip():
        return keras.Sequential([keras.layers.RandomFlip("horizontal", seed=5)])

    streamed = loader(root, None, augment=flip(), **common)
    assert streamed._pipeline.build_store is None
    reference = [take_epoch(streamed) for _ in range(2)]
    for cache in ("auto", "memory", tmp_path / "store"):
        dataset = loader(root, cache, augment=flip(), **common)
        assert dataset._pipeline.build_store is not None
        for epoch in reference:
            assert_same_batches(epoch, take_epoch(dataset))
    stored = dataset._pipeline.store()
    # Resized pixels are fractional: the store keeps TensorFlow's float32 values.
    assert stored.images.dtype == (np.uint8 if image_size == (20, 20) else np.float32)
    assert stored.path is not None and stored.path.parent == tmp_path / "store"


@pytest.mark.parametrize("where", ["memory", "directory"])
def test_a_batch_is_one_gather_not_a_decode_per_image(image_folder_factory, monkeypatch,
                                                       tmp_path, where):
    root = image_folder_factory({"a": 6, "b": 2})
    calls = []
    store_rows = _TFPipeline.store_rows
    monkeypatch.setattr(_TFPipeline, "store_rows", lambda self, rows: calls.append(
        len(rows)) or store_rows(self, rows))
    dataset = loader(root, "memory" if where == "memory" else tmp_path / "store",
                     batch_size=4, image_size=(16, 16))
    dataset._pipeline.store()
    monkeypatch.setattr(dataset._pipeline, "native_image", None)  # no decoding after the store
    batches = take_epoch(dataset)
    # In memory the rows are gathered in the graph; memory-mapped, by one numpy call a batch.
    assert calls == ([] if where == "memory" else [4] * len(batches))
    assert batches[0][0].shape == (4, 16, 16, 3) and batches[0][0].dtype == np.float32
    if where == "memory":  # the variable holds the pixels, the array was let go
        assert dataset._pipeline.pixels.numpy().shape == (8, 16, 16, 3)
        assert len(dataset._pipeline.store().images) == 0


def test_broken_file_is_read_again_like_streaming(small_dataset, corrupt_pixel_data):
    victim = str(sorted((small_dataset / "dog").iterdir())[1])
    corrupt_pixel_data(victim)
    common = dict(batch_size=6, image_size=(16, 16))
    with pytest.warns(UserWarning, match="unreadable"):
        streamed = loader(small_dataset, None, **common)
        reference = take_epoch(streamed)
        dataset = loader(small_dataset, "memory", **common)
        assert_same_batches(reference, take_epoch(dataset))
    assert set(dataset.decode_failures) == set(streamed.decode_failures) == {victim}
    assert list(dataset._pipeline.store().errors) == [dataset._pipeline.paths.tolist().index(
        victim.encode())]


def test_auto_streams_over_the_memory_budget(image_folder_factory, monkeypatch):
    root = image_folder_factory({"a": 4, "b": 2})
    monkeypatch.setattr(_stored, "memory_budget", lambda: 100)
    assert loader(root, "auto", batch_size=2, image_size=(16, 16))._pipeline.build_store is None
    monkeypatch.setattr(_stored, "memory_budget", lambda: 10**9)
    assert loader(root, "auto", batch_size=2, image_size=(16, 16))._pipeline.build_store is not None


def test_pillow_and_tensorflow_stores_of_one_folder_are_apart(image_folder_factory, tmp_path):
    root = image_folder_factory({"a": 4, "b": 2}, size=(20, 14))
    dataset = loader(root, tmp_path / "store", batch_size=2, image_size=(16, 16))
    take_epoch(dataset)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    pillow = build_store(paths, image_size=(16, 16), color_mode="rgb", directory=tmp_path / "store")
    assert pillow.images.dtype == np.uint8
    assert len(list((tmp_path / "store").glob("*.npy"))) == 2
