import threading
import time

import keras
import numpy as np
import pytest
from _live_helpers import fit_with_live

from genaug import BalancedBatchGenerator
from genaug.generation import GeneratedImage, GeneratorBackend
from genaug.live import FreshBuffer, GenerationWorker, LiveSource
from genaug.synthetic import CacheWriter, SyntheticCache


class NoiseBackend(GeneratorBackend):
    """A stand-in generator: white images, optionally slow or failing."""

    backend_name = "noise"
    batch_size = 4

    def __init__(self, classes, *, delay=0.0, fail_after=None):
        self._classes = tuple(classes)
        self.delay, self.fail_after, self.calls = delay, fail_after, 0
        self.closed = False

    @property
    def class_names(self):
        return self._classes

    def info(self):
        return {"backend": "noise", "model": "test", "model_hash": "0"}

    def generate_batch(self, requests):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("device lost")
        time.sleep(self.delay)
        return [GeneratedImage(np.full((8, 8, 3), 255, np.uint8),
                               {"generator": self.info(), "seed": r.seed, "prompt": None},
                               r.class_name) for r in requests]

    def close(self):
        self.closed = True


def live_source(backend, class_names, *, image_size=(8, 8), color_mode="rgb",
                cache_writer=None, **options):
    worker = GenerationWorker(backend, class_names=class_names, image_size=image_size,
                              color_mode=color_mode, cache_writer=cache_writer)
    return LiveSource(worker, class_names=class_names, **options)


def test_buffer_reuse_is_bounded_and_least_used_first():
    buffer = FreshBuffer(2, capacity=2, max_reuse=2)
    a, b = np.zeros(1), np.ones(1)
    buffer.put(0, a)
    buffer.put(0, b)
    taken = [buffer.take(0)[0] for _ in range(4)]
    assert sorted(taken) == [0, 0, 1, 1]
    assert buffer.take(0) is None and buffer.take(1) is None
    assert dict(buffer.uses) == {1: 2, 2: 2}


def test_producer_fills_the_buffer_persists_to_cache_and_shuts_down(tmp_path):
    backend = NoiseBackend(["dog"])
    writer = CacheWriter(tmp_path / "cache")
    live = live_source(backend, ["cat", "dog"], image_size=(4, 4), color_mode="grayscale",
                       cache_writer=writer, capacity=8, timeout=2.0)
    with live:
        image = live.take(1)
    assert image is not None and image.shape == (4, 4, 1)
    assert not live.running and backend.closed
    cache = SyntheticCache(tmp_path / "cache")
    assert len(cache) >= 1 and all(r["class"] == "dog" for r in cache.records)
    assert cache.records[0]["generator"]["backend"] == "noise"
    assert not [p for p in (tmp_path / "cache").rglob(".*")]  # no temp file left
    assert live.producible.tolist() == [False, True]


def test_a_failing_producer_stops_cleanly_and_is_reported(tmp_path):
    live = live_source(NoiseBackend(["dog"], fail_after=1), ["cat", "dog"], capacity=64,
                       timeout=0.01)
    with pytest.warns(UserWarning, match="live generator stopped: RuntimeError: device lost"):
        live.start()
        live._thread.join(5)
    assert not live.running and "device lost" in live.statistics()["producer_error"]
    live.close()


class ShutdownTracker(keras.callbacks.Callback):
    def __init__(self, fail_at=None):
        super().__init__()
        self.fail_at = fail_at

    def on_train_batch_end(self, batch, logs=None):
        if self.fail_at is not None and batch == self.fail_at:
            raise KeyboardInterrupt  # what Ctrl-C raises in the training loop


def test_fit_consumes_fresh_images(small_dataset):
    live = live_source(NoiseBackend(["dog", "snake"]), ["cat", "dog", "snake"], timeout=1.0)
    fit_with_live(small_dataset, live)
    stats = live.statistics()
    assert stats["consumed"] > 0 and stats["produced_per_s"] > 0
    assert not live.running
    assert sum(stats["reuse_counts"].values()) == stats["consumed"]


def test_slow_producer_falls_back_without_stalling(small_dataset):
    live = live_source(NoiseBackend(["dog", "snake"], delay=5.0), ["cat", "dog", "snake"],
                       timeout=0.2)
    started = time.perf_counter()
    fit_with_live(small_dataset, live, epochs=1)
    stats = live.statistics()
    assert stats["fallbacks"]["real"] > 0 and stats["consumed"] == 0
    # one wait per starving class (dog, snake), not one per batch or per synthetic slot
    batches = len(BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(8, 8)))
    assert batches >= 5 and stats["misses"] > batches
    assert 0.2 * 2 <= stats["consumer_wait_s"] < 0.2 * 2 + 0.15
    assert time.perf_counter() - started < 30


def test_a_starved_class_is_waited_for_again_once_the_producer_delivers_it():
    live = live_source(NoiseBackend(["dog"], delay=0.3), ["cat", "dog"], timeout=0.05)
    with live:
        assert live.take(1) is None  # the first batch is still being made: wait, miss
        waited = live.statistics()["consumer_wait_s"]
        assert live.take(1) is None  # starved: no second wait
        assert live.statistics()["consumer_wait_s"] - waited < 0.01
        deadline = time.perf_counter() + 5
        while not live.buffer.sizes()[1] and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert live.take(1) is not None and 1 not in live._starved


def test_interrupt_during_fit_leaves_no_thread_running(small_dataset, tmp_path):
    live = live_source(NoiseBackend(["dog", "snake"]), ["cat", "dog", "snake"],
                       cache_writer=CacheWriter(tmp_path / "cache"), timeout=0.5)
    with pytest.raises(KeyboardInterrupt):
        fit_with_live(small_dataset, live, callbacks=[ShutdownTracker(fail_at=1)])
    assert not live.running
    assert not [t for t in threading.enumerate() if t.name == "genaug-live"]
    cache = SyntheticCache(tmp_path / "cache")
    assert not cache.problems  # every record has its file, every file its record
