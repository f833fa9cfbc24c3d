"""The decoded image store: same batches as streaming, keyed, atomic, shared by processes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from genaug import BalancedBatchGenerator
from genaug.data import STORE_FORMAT, build_store, load_image, store_key
from genaug.exceptions import ConfigError, OutputError
from genaug.loaders import _stored


def epoch(generator):
    return [generator[i] for i in range(len(generator))]


def assert_same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_batches_identical_with_and_without_store(image_folder_factory, make_cache, tmp_path):
    root = image_folder_factory({"a": 12, "b": 3}, size=(20, 14))
    cache_root = make_cache(tmp_path / "synth", {"b": 5}, size=20)
    common = dict(batch_size=8, image_size=(16, 16), seed=3, synthetic_cache=cache_root,
                  synthetic_ratio=0.5, verbose=False)

    def flip():
        # One layer per generator: a layer's random state is its own.
        return keras.Sequential([keras.layers.RandomFlip("horizontal", seed=5)])

    streamed = BalancedBatchGenerator(root, cache=None, augment=flip(), **common)
    assert not isinstance(streamed.reader.real, _stored.StoredSource)
    streamed_batches = epoch(streamed)
    for cache in ("auto", "memory", tmp_path / "store"):
        generator = BalancedBatchGenerator(root, cache=cache, workers=2, augment=flip(),
                                           **common)
        assert isinstance(generator.reader.real, _stored.StoredSource)
        assert isinstance(generator.reader.synthetic_pool, _stored.StoredSource)
        assert_same_batches(streamed_batches, epoch(generator))


def test_store_keeps_mixup_and_substitution(small_dataset, corrupt_pixel_data, make_cache,
                                            tmp_path):
    victim = str(sorted((small_dataset / "dog").iterdir())[1])
    corrupt_pixel_data(victim)
    cache_root = make_cache(tmp_path / "synth", {"dog": 4})
    common = dict(batch_size=6, image_size=(16, 16), seed=1, synthetic_cache=cache_root,
                  synthetic_ratio=0.5, mixup=True, verbose=False)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        streamed = BalancedBatchGenerator(small_dataset, cache=None, **common)
        streamed_batches = epoch(streamed)
        generator = BalancedBatchGenerator(small_dataset, cache="memory", **common)
        assert_same_batches(streamed_batches, epoch(generator))
    assert set(generator.decode_failures) == set(streamed.decode_failures) == {victim}
    assert generator.draws_served() == streamed.draws_served()


def test_gather_path_is_taken(image_folder_factory, monkeypatch):
    root = image_folder_factory({"a": 6, "b": 2})
    generator = BalancedBatchGenerator(root, batch_size=4, image_size=(16, 16), seed=0,
                                       cache="memory", verbose=False)

    def no_per_image_reads(*args, **kwargs):
        raise AssertionError("a stored batch read an image on its own")

    monkeypatch.setattr(generator.reader, "read", no_per_image_reads)
    x, _ = generator[0]
    assert x.shape == (4, 16, 16, 3) and x.dtype == np.float32


def test_auto_streams_over_the_memory_budget(image_folder_factory, monkeypatch):
    root = image_folder_factory({"a": 4, "b": 2})
    monkeypatch.setattr(_stored, "memory_budget", lambda: 100)
    generator = BalancedBatchGenerator(root, batch_size=2, image_size=(16, 16), verbose=False)
    assert not isinstance(generator.reader.real, _stored.StoredSource)
    monkeypatch.setattr(_stored, "memory_budget", lambda: 10**9)
    generator = BalancedBatchGenerator(root, batch_size=2, image_size=(16, 16), verbose=False)
    assert isinstance(generator.reader.real, _stored.StoredSource)


def test_bad_cache_argument(image_folder_factory):
    root = image_folder_factory({"a": 2, "b": 2})
    with pytest.raises(ConfigError, match="cache must be"):
        BalancedBatchGenerator(root, batch_size=2, cache=3, verbose=False)


def files_of(root):
    return sorted(str(p) for p in Path(root).rglob("*.png"))


def test_changed_file_rebuilds_store(image_folder_factory, tmp_path):
    root = image_folder_factory({"a": 3, "b": 2})
    paths, args = files_of(root), dict(image_size=(8, 8), color_mode="rgb")
    first = build_store(paths, directory=tmp_path / "s", **args)
    assert build_store(paths, directory=tmp_path / "s", **args).path == first.path
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :, 1] = 200
    keras.utils.save_img(paths[0], image)
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = build_store(paths, directory=tmp_path / "s", **args)
    assert second.path != first.path
    np.testing.assert_array_equal(second.images[0], load_image(paths[0], **args))
    np.testing.assert_array_equal(second.images[1:], first.images[1:])


def test_store_of_another_format_is_rebuilt(image_folder_factory, tmp_path):
    root = image_folder_factory({"a": 3, "b": 2})
    paths, args = files_of(root), dict(image_size=(8, 8), color_mode="grayscale")
    store = build_store(paths, directory=tmp_path / "s", **args)
    meta = store.path.with_suffix(".json")
    np.save(store.path, np.full(store.images.shape, 7, np.uint8))
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": STORE_FORMAT + 1}))
    rebuilt = build_store(paths, directory=tmp_path / "s", **args)
    assert json.loads(meta.read_text())["format"] == STORE_FORMAT
    np.testing.assert_array_equal(rebuilt.images[2], load_image(paths[2], **args))


def test_full_disk_leaves_nothing_half_written(image_folder_factory, tmp_path, monkeypatch):
    root = image_folder_factory({"a": 3, "b": 2})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", disk_full)
    with pytest.raises(OutputError, match="disk of the image store .* is full"):
        build_store(files_of(root), image_size=(8, 8), color_mode="rgb",
                    directory=tmp_path / "s")
    assert sorted(p.suffix for p in (tmp_path / "s").iterdir()) == [".lock"]


BUILD = """
import sys
from genaug.data import build_store
store = build_store(sys.argv[2:], image_size=(24, 24), color_mode="rgb", directory=sys.argv[1])
print(store.path, int(store.images.sum()))
"""


def test_two_processes_build_one_store(image_folder_factory, tmp_path):
    root = image_folder_factory({"a": 30, "b": 30})
    paths = files_of(root)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-c", BUILD, str(tmp_path / "s"), *paths]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0].split() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert outputs[0] == outputs[1]
    key = store_key(paths, image_size=(24, 24), color_mode="rgb", interpolation="bilinear")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        f"{key}.json", f"{key}.lock", f"{key}.npy"]
