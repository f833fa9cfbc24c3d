import functools
import itertools
import threading
import time

import keras
import numpy as np
import pytest
from _live_helpers import fit_with_live

from genaug import BalancedBatchGenerator
from genaug.cache import CacheWriter, SyntheticCache
from genaug.generation import GeneratedImage, GeneratorBackend
from genaug.live import FreshBuffer, GenerationWorker, LiveSource


class NoiseBackend(GeneratorBackend):
    """A stand-in generator: white images, optionally failing."""

    backend_name = "noise"
    batch_size = 4

    def __init__(self, classes, *, fail_after=None):
        self._classes = tuple(classes)
        self.fail_after, self.calls = fail_after, 0
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
        return [GeneratedImage(np.full((8, 8, 3), 255, np.uint8),
                               {"generator": self.info(), "seed": r.seed, "prompt": None},
                               r.class_name) for r in requests]

    def close(self):
        self.closed = True


class HeldBackend(NoiseBackend):
    """A generator whose images come once ``release`` is set, or after ``patience`` seconds
    (a consumer that waited for them would then get them, and fail its test)."""

    def __init__(self, classes, *, patience=60.0):
        super().__init__(classes)
        self.release, self.patience = threading.Event(), patience

    def generate_batch(self, requests):
        self.release.wait(self.patience)
        return super().generate_batch(requests)


class Release(keras.callbacks.Callback):
    """Set ``event`` when training ends."""

    def __init__(self, event):
        super().__init__()
        self.event = event

    def on_train_end(self, logs=None):
        self.event.set()


def record_waits(live) -> list[int]:
    """The classes of the buffer reads that may wait (a positive timeout), in order."""
    waits, take = [], live.buffer.take

    def spy(label, timeout=0.0):
        if timeout > 0:
            waits.append(label)
        return take(label, timeout=timeout)

    live.buffer.take = spy
    return waits


def live_source(backend, class_names, *, image_size=(8, 8), color_mode="rgb",
                cache_writer=None, **options):
    worker = GenerationWorker(backend, class_names=class_names, image_size=image_size,
                              color_mode=color_mode, cache_writer=cache_writer)
    return LiveSource(worker, class_names=class_names, **options)


def test_rejections_are_counted_per_gate(tmp_path):
    from genaug.generation import FunctionGate, GateChain

    gates = GateChain([FunctionGate("dark", lambda image, c: float(image.mean()),
                                    threshold=100, higher_is_better=False),
                       FunctionGate("any", lambda image, c: 1.0, threshold=0.0)])
    worker = GenerationWorker(NoiseBackend(["dog"]), class_names=["cat", "dog"],
                              image_size=(8, 8), color_mode="rgb", gates=gates)
    live = LiveSource(worker, class_names=["cat", "dog"], capacity=8, timeout=0.5)
    with live:
        deadline = time.time() + 10
        while live.statistics()["rejected"] == 0 and time.time() < deadline:
            time.sleep(0.05)
    stats = live.statistics()
    assert stats["rejected"] > 0 and stats["accepted"] == 0  # white images are not dark
    assert stats["rejected_by_gate"] == {"dark": stats["rejected"]}
    assert stats["rejected_by_class"] == {"dog": {"dark": stats["rejected"]}}


class LevelBackend(NoiseBackend):
    """Flat images, one grey level per class."""

    def __init__(self, levels):
        super().__init__(list(levels))
        self.levels = levels

    def generate_batch(self, requests):
        return [GeneratedImage(np.full((8, 8, 3), self.levels[r.class_name], np.uint8),
                               {"generator": self.info(), "seed": r.seed, "prompt": None},
                               r.class_name) for r in requests]


def mean_pixel_features():
    """A real ``FeatureExtractor`` whose feature is the mean pixel (a pooling layer)."""
    from genaug.classifier import FeatureExtractor

    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.GlobalAveragePooling2D(name="features")])
    return FeatureExtractor(model=model, image_size=(8, 8), color_mode="grayscale",
                            layer="features", source="mean pixel")


def test_the_margin_gate_drops_live_images_nearer_another_class(tmp_path):
    from genaug.generation import build_gate_chain

    real = {"cat": (30, 35, 45, 50), "dog": (190, 195, 205, 210)}
    gates = build_gate_chain(
        blur_min=None, structure_min=None, phash_max=None, select_model=mean_pixel_features(),
        select_method="class-margin", class_names=["cat", "dog"],
        reference_images=lambda name: [np.full((8, 8, 3), v, np.uint8) for v in real[name]])
    # every cat looks like a dog; every dog like a dog
    worker = GenerationWorker(LevelBackend({"cat": 185, "dog": 200}), class_names=["cat", "dog"],
                              image_size=(8, 8), color_mode="rgb", gates=gates,
                              cache_writer=CacheWriter(tmp_path / "cache"))
    live = LiveSource(worker, class_names=["cat", "dog"], capacity=8, timeout=0.5)
    with live:
        deadline = time.time() + 10
        while time.time() < deadline and not (live.statistics()["accepted"]
                                               and live.statistics()["rejected"]):
            time.sleep(0.05)
    stats = live.statistics()
    assert stats["accepted"] > 0 and stats["rejected"] > 0
    assert stats["rejected_by_class"] == {"cat": {"class_margin": stats["rejected"]}}
    assert stats["rejected_by_gate"] == {"class_margin": stats["rejected"]}
    records = SyntheticCache(tmp_path / "cache").records
    assert records and {r["class"] for r in records} == {"dog"}


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
                       cache_writer=writer, capacity=8, timeout=60.0)
    with live:
        image = live.take(1)  # returns as soon as the first image is in
    assert image is not None and image.shape == (4, 4, 1)
    assert not live.running and backend.closed
    cache = SyntheticCache(tmp_path / "cache")
    assert len(cache) >= 1 and all(r["class"] == "dog" for r in cache.records)
    assert cache.records[0]["generator"]["backend"] == "noise"
    assert not [p for p in (tmp_path / "cache").rglob(".*")]  # no temp file left
    assert live.producible.tolist() == [False, True]


def test_a_failing_producer_stops_cleanly_and_is_reported(tmp_path):
    backend = NoiseBackend(["dog"], fail_after=1)
    live = live_source(backend, ["cat", "dog"], capacity=64, timeout=0.01)
    with pytest.warns(UserWarning, match="live generator stopped: RuntimeError: device lost"):
        live.start()
        live._thread.join(5)
    assert not live.running and "device lost" in live.statistics()["producer_error"]
    assert backend.closed  # the producer closed its worker itself, before any close()
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
    backend = HeldBackend(["dog", "snake"])  # nothing until the training ends
    live = live_source(backend, ["cat", "dog", "snake"], timeout=0.2)
    waits = record_waits(live)
    fit_with_live(small_dataset, live, epochs=1, callbacks=[Release(backend.release)])
    stats = live.statistics()
    assert stats["fallbacks"]["real"] > 0 and stats["consumed"] == 0
    # one wait per starving class (dog, snake), not one per batch or per synthetic slot
    batches = len(BalancedBatchGenerator(small_dataset, batch_size=6, image_size=(8, 8)))
    assert batches >= 5 and stats["misses"] > batches
    assert sorted(waits) == [1, 2]


def test_a_starved_class_is_waited_for_again_once_the_producer_delivers_it():
    backend = HeldBackend(["dog"])
    live = live_source(backend, ["cat", "dog"], timeout=0.05)
    waits = record_waits(live)
    with live:
        assert live.take(1) is None  # the first batch is still being made: wait, miss
        assert live.take(1) is None and waits == [1]  # starved: no second wait
        backend.release.set()
        deadline = time.perf_counter() + 60
        while 1 in live._starved and time.perf_counter() < deadline:  # until delivered
            time.sleep(0.01)
        assert live.take(1) is not None and waits == [1, 1]  # waited for again


def test_interrupt_during_fit_leaves_no_thread_running(small_dataset, tmp_path):
    live = live_source(NoiseBackend(["dog", "snake"]), ["cat", "dog", "snake"],
                       cache_writer=CacheWriter(tmp_path / "cache"), timeout=0.5)
    with pytest.raises(KeyboardInterrupt):
        fit_with_live(small_dataset, live, callbacks=[ShutdownTracker(fail_at=1)])
    assert not live.running
    assert not [t for t in threading.enumerate() if t.name == "genaug-live"]
    cache = SyntheticCache(tmp_path / "cache")
    assert not cache.problems  # every record has its file, every file its record


def test_a_batch_goes_into_the_buffer_at_once_and_the_freshest_are_kept():
    buffer = FreshBuffer(2, capacity=3, max_reuse=2)
    buffer.put_batch(1, np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1))  # 0, 1 dropped
    assert buffer.sizes() == [0, 3] and buffer.dropped_unused == 2
    assert buffer.remaining_uses().tolist() == [0, 6]
    taken = [int(buffer.take(1)[0, 0, 0]) for _ in range(6)]
    assert taken == [2, 3, 4, 2, 3, 4]  # least used first, oldest first among equals
    assert buffer.take(1) is None and buffer.sizes() == [0, 0]
    buffer.put_batch(1, np.full((2, 1, 1, 1), 7, np.uint8))
    buffer.put_batch(1, np.full((2, 1, 1, 1), 8, np.uint8))  # full: the oldest 7 makes room
    assert sorted(int(buffer.take(1)[0, 0, 0]) for _ in range(3)) == [7, 8, 8]
    assert buffer.dropped_unused == 3


def test_jobs_are_sized_from_the_demand_within_the_memory_bound():
    from genaug.live._source import producer_batch_size

    sized = functools.partial(producer_batch_size, max_reuse=4, default=256,
                              image_bytes=32 * 32 * 3, room=10_000)
    assert sized(slots_per_second=None) == 256  # not measured yet: the backend's batch
    # an H200 run: 16 synthetic slots per step at 34 steps/s, each image serving 4 slots
    assert sized(slots_per_second=16 * 34) == 68  # half a second of fresh images
    assert sized(slots_per_second=1e9) == 10_000  # the buffer's room
    assert sized(slots_per_second=1e9, max_bytes=2**20) == 2**20 // (32 * 32 * 3)
    assert sized(slots_per_second=0.1) == 1


def test_a_job_goes_to_the_classes_whose_supply_falls_furthest_short():
    from genaug.live._source import allocate

    need, room = np.array([10, 10, 0]), np.array([100, 100, 100])
    assert allocate(8, need=need, have=np.array([40, 0, 0]), room=room,
                    max_reuse=4).tolist() == [0, 8, 0]
    assert allocate(8, need=need, have=np.array([0, 0, 0]), room=room,
                    max_reuse=4).tolist() == [4, 4, 0]
    assert allocate(8, need=need, have=np.array([0, 0, 0]), room=np.array([100, 3, 100]),
                    max_reuse=4).tolist() == [5, 3, 0]
    assert allocate(8, need=need, have=np.zeros(3), room=np.zeros(3), max_reuse=4).sum() == 0


def test_the_worker_samples_the_next_job_while_it_gates_this_one():
    from genaug.generation import FunctionGate, GateChain
    from genaug.live import LiveJob

    jobs = 4
    sampling = [threading.Event() for _ in range(jobs)]  # job k's sampling has begun

    class Announcing(NoiseBackend):
        def generate_batch(self, requests):
            sampling[self.calls].set()
            return super().generate_batch(requests)

    gated, overlapped = itertools.count(), []

    def waits_for_the_next_sampling(image, class_name):
        job, position = divmod(next(gated), 4)
        if position == 0 and job + 1 < jobs:  # one after the other, this would wait in vain
            overlapped.append(sampling[job + 1].wait(30))
        return 1.0

    worker = GenerationWorker(Announcing(["cat", "dog"]), class_names=["cat", "dog"],
                              image_size=(8, 8), color_mode="rgb", gates=GateChain(
                                  [FunctionGate("next", waits_for_the_next_sampling,
                                                threshold=0)]))
    for k in range(jobs):
        worker.submit(LiveJob(np.array([0, 1, 1, 0]), np.arange(4) + 4 * k))
    batches = []
    while len(batches) < jobs:
        batches += worker.collect(timeout=1.0)
    worker.close()
    assert overlapped == [True] * (jobs - 1)  # each job gated while the next one sampled
    assert all(b.images.shape == (4, 8, 8, 3) and b.images.dtype == np.uint8 for b in batches)
    assert [b.labels.tolist() for b in batches] == [[0, 1, 1, 0]] * jobs
    assert sum(b.generated.sum() for b in batches) == 4 * jobs


def test_statistics_give_the_share_of_slots_served_fresh(small_dataset):
    live = live_source(NoiseBackend(["dog", "snake"]), ["cat", "dog", "snake"], timeout=1.0)
    fit_with_live(small_dataset, live)
    stats = live.statistics()
    served = stats["consumed"] + stats["fallbacks"]["cache"] + stats["fallbacks"]["real"]
    assert stats["fresh_share"] == pytest.approx(stats["consumed"] / served)
