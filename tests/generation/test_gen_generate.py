import json
import threading
import time

import numpy as np
import pytest
from _gen_helpers import FakeBackend, coin
from PIL import Image

from genaug.cache import ENV_REPORT, GENERATION_SUMMARY, REJECTIONS_LOG, SyntheticCache
from genaug.exceptions import CacheError, ConfigError
from genaug.generation import (
    FunctionGate,
    GateSpec,
    GenerationError,
    GenerationRequest,
    VerifierGate,
    _generate,
    generate_cache,
    load_backend,
    make_plan,
)


@pytest.fixture(scope="module")
def backend(tiny_generator):
    return load_backend(tiny_generator, device="cpu", steps=2, pixel_check=False, batch_size=4)


@pytest.fixture(scope="module")
def plan(shapes_dir):
    return make_plan(
        shapes_dir,
        target_per_class=9,
        config={"attributes": {"lighting": {"day": 50, "night": 50}}},
    )  # bar 3, ring 6


class Interrupting:
    """Wraps a backend and raises KeyboardInterrupt (Ctrl-C) on its n-th batch."""

    def __init__(self, inner, at_call):
        self.inner, self.at_call, self.calls = inner, at_call, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate_batch(self, requests):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return self.inner.generate_batch(requests)


def comparable(cache_dir):
    records = SyntheticCache(cache_dir).records
    out = {}
    for record in records:
        record = dict(record)
        record.pop("created")
        out[record["id"]] = (record, (cache_dir / record["path"]).read_bytes())
    return out


def test_generate_writes_a_verified_cache_with_provenance(backend, plan, tmp_path):
    cache = tmp_path / "cache"
    options = dict(gates=GateSpec(structure_min=None, blur_min=10), image_size=24,
                   color_mode="rgb", progress=False)
    summary = generate_cache(plan, backend=backend, cache_dir=cache, **options,
                             parameters={"cli": "test"})
    assert summary["complete"] and summary["integrity"]["ok"]
    records = SyntheticCache(cache, class_names=plan.class_names).records
    assert len(records) == summary["totals"]["accepted"] == 9 - summary["totals"]["exhausted"]
    for record in records:
        assert record["generator"]["backend"] == "ddpm"
        assert len(record["generator"]["model_hash"]) == 64
        assert set(record["quality"]) == {"blur", "phash"}
        assert record["quality"]["blur"]["threshold"] == 10.0
        assert record["attributes"]["lighting"] in ("day", "night")
        assert record["attempts"] >= 1 and record["steps"] == 2
        assert record["id"] == f"{record['class']}-{record['plan_index']:06d}"
        with Image.open(cache / record["path"]) as image:
            assert image.size == (24, 24) and image.mode == "RGB"
    seeds = {r["seed"] for r in records}
    assert len(seeds) == len(records)
    stored = json.loads((cache / GENERATION_SUMMARY).read_text())
    assert set(stored["classes"]) == {"bar", "ring"}
    ring = stored["classes"]["ring"]
    assert ring["requested"] == 6 and {
        "accepted",
        "rejected_by_gate",
        "exhausted",
        "first_attempt_success_rate",
        "meets_goal",
    } <= set(ring)
    assert stored["goal_first_attempt_success_rate"] == 0.8
    env = json.loads((cache / ENV_REPORT).read_text())
    assert {"python", "torch", "diffusers", "tensorflow"} <= set(env["versions"])
    assert env["device"]["device"] == "cpu" and env["parameters"] == {"cli": "test"}
    assert env["seeds"]["plan_seed"] == plan.seed and env["backend_settings"]["steps"] == 2
    assert (cache / "synthetic_meta.csv").is_file()
    # running the same command again adds nothing
    again = generate_cache(plan, backend=backend, cache_dir=cache, **options)
    assert again["totals"] == summary["totals"]
    assert len((cache / "synthetic_meta.jsonl").read_text().splitlines()) == len(records)


def test_retries_stop_at_the_limit_with_new_deterministic_seeds(backend, plan, tmp_path):
    never = FunctionGate("never", lambda image, c: 0.0, threshold=1.0)
    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                             gates=GateSpec(structure_min=None, blur_min=None, phash_max=None,
                                            extra_gates=[never]),
                             max_retries=2, progress=False)
    assert summary["totals"]["accepted"] == 0 and summary["totals"]["exhausted"] == 9
    log = [json.loads(line) for line in (tmp_path / "c" / REJECTIONS_LOG).read_text().splitlines()]
    assert len(log) == 9 * 3
    ring0 = [e for e in log if e["id"] == "ring-000000"]
    assert [e["attempt"] for e in ring0] == [1, 2, 3]
    assert [e["exhausted"] for e in ring0] == [False, False, True]
    items = plan.items("ring")
    assert [e["seed"] for e in ring0] == [items[0].seed_for(a) for a in range(3)]
    assert len({e["seed"] for e in log}) == 27
    ring = summary["classes"]["ring"]
    assert ring["rejected_by_gate"] == {"never": 18}
    assert ring["first_attempt_success_rate"] == 0.0 and ring["meets_goal"] is False
    assert summary["warnings"] == []  # fewer than 20 candidates per class: no verdict yet


@pytest.mark.parametrize("at_call", [2, 4])
def test_resume_after_interruption_gives_the_uninterrupted_cache(backend, plan, tmp_path, at_call):
    options = dict(gates=GateSpec(structure_min=None, blur_min=10, phash_max=20,
                                  extra_gates=[FunctionGate("coin", coin, threshold=1.0)]),
                   max_retries=2, batch_size=2, progress=False)
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "whole", **options)
    expected = comparable(tmp_path / "whole")
    log = (tmp_path / "whole" / REJECTIONS_LOG).read_text().splitlines()
    assert len(log) > 0  # retries happened

    broken = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        generate_cache(plan, backend=Interrupting(backend, at_call), cache_dir=broken, **options)
    partial = SyntheticCache(broken)
    assert not partial.problems and len(partial) < len(expected)  # consistent, unfinished
    interrupted = json.loads((broken / GENERATION_SUMMARY).read_text())
    assert interrupted["interrupted"] and not interrupted["complete"]
    summary = generate_cache(plan, backend=backend, cache_dir=broken, **options)
    assert summary["complete"]
    assert comparable(broken) == expected
    lines = (broken / "synthetic_meta.jsonl").read_text().splitlines()
    assert len(lines) == len(expected)  # no duplicate records


def test_resume_refuses_other_settings_and_unknown_classes(backend, plan, shapes_dir, tmp_path):
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                   gates=GateSpec(structure_min=None, blur_min=10), progress=False)
    with pytest.raises(CacheError, match="different settings .*max_retries"):
        generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                       gates=GateSpec(structure_min=None, blur_min=10), max_retries=1,
                       progress=False)
    with pytest.warns(UserWarning, match="not in class_names"):
        new = make_plan(shapes_dir, target_per_class=2, class_names=["ring", "cube"])
    with pytest.raises(ConfigError, match="cannot make class.*cube"):
        generate_cache(new, backend=backend, cache_dir=tmp_path / "d", progress=False)


def test_two_runs_cannot_write_one_cache_at_once(backend, plan, tmp_path):
    from genaug.cache import lock_cache

    (tmp_path / "c").mkdir()
    held = lock_cache(tmp_path / "c")
    try:
        with pytest.raises(CacheError, match="another process is writing into"):
            generate_cache(plan, backend=backend, cache_dir=tmp_path / "c", progress=False)
    finally:
        held.close()
    assert generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                          gates=GateSpec(structure_min=None, blur_min=10),
                          progress=False)["complete"]


def test_noise_from_the_generator_is_refused_and_leaves_no_cache(tiny_generator, plan,
                                                                 tmp_path):
    checked = load_backend(tiny_generator, steps=2)
    with pytest.raises(GenerationError, match="nothing was written") as refused:
        generate_cache(plan, backend=checked, cache_dir=tmp_path / "c", progress=False)
    # the library names its Python parameter, not the command-line flag
    assert "`pixel_check=False`" in str(refused.value) and "--" not in str(refused.value)
    assert not (tmp_path / "c").exists()  # nothing written: no folder to block the next run
    # the next run, with other settings, goes ahead
    summary = generate_cache(plan, backend=load_backend(tiny_generator, steps=1,
                                                        pixel_check=False),
                             cache_dir=tmp_path / "c",
                             gates=GateSpec(structure_min=None, blur_min=None), progress=False)
    assert summary["totals"]["accepted"] > 0


def test_a_cache_without_images_does_not_block_other_settings(backend, plan, tmp_path):
    never = FunctionGate("never", lambda image, c: 0.0, threshold=1.0)
    empty = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                           gates=GateSpec(extra_gates=[never]), max_retries=0, progress=False)
    assert empty["totals"]["accepted"] == 0 and (tmp_path / "c" / REJECTIONS_LOG).is_file()
    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                             gates=GateSpec(structure_min=None, blur_min=None), progress=False)
    assert summary["totals"]["accepted"] > 0
    log = tmp_path / "c" / REJECTIONS_LOG
    assert not log.exists() or "never" not in log.read_text()  # started afresh
    with pytest.raises(CacheError, match="different settings"):  # now it has images to keep
        generate_cache(plan, backend=backend, cache_dir=tmp_path / "c", progress=False)


def test_variations_use_real_sources(backend, plan, tmp_path):
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                   gates=GateSpec(structure_min=None, blur_min=None, phash_max=None),
                   img2img_fraction=0.5, progress=False)
    records = SyntheticCache(tmp_path / "c").records
    sources = [r["source_id"] for r in records if r["plan_index"] % 2 == 1]
    assert sources and all(
        s.startswith(f"{r['class']}/")
        for s, r in zip(sources, [r for r in records if r["plan_index"] % 2 == 1])
    )
    assert all(r["source_id"] is None for r in records if r["plan_index"] % 2 == 0)
    assert np.mean([r["mode"] == "variation" for r in records]) == pytest.approx(
        len(sources) / len(records)
    )


class _Unsure:
    """A stand-in reference classifier that never commits to a class (p = 1/3 each)."""

    input_shape, output_shape = (None, 16, 16, 1), (None, 3)

    def predict(self, x):
        return self(x)

    def __call__(self, x, training=False):
        return np.full((len(x), 3), 1 / 3)


def test_verifier_collapse_is_reported_per_class_and_loudly(backend, plan, tmp_path):
    messages = []
    verifier = VerifierGate(_Unsure(), threshold=0.6)  # classes bound from the plan
    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                             gates=GateSpec(structure_min=None, blur_min=None, phash_max=None,
                                            verify_model=verifier),
                             progress=False, echo=messages.append)
    ring = summary["classes"]["ring"]
    assert ring["gate_acceptance"] == {"verifier": 0.0} and ring["exhausted"] == 6
    assert summary["this_run_acceptance"]["ring"]["by_gate"] == {"verifier": 0.0}
    loud = [m for m in messages if m.startswith("WARNING: ACCEPTANCE COLLAPSE")]
    assert len(loud) == 1 and "class 'ring'" in loud[0] and "balanced sampling" in loud[0]
    assert [w for w in summary["warnings"] if "'ring'" in w]  # 24 candidates: reported
    assert not [w for w in summary["warnings"] if "'bar'" in w]  # 12: too few to judge


class AnnouncingBackend(FakeBackend):
    """A FakeBackend that sets ``sampling[k]`` as its k-th call (a job's sampling) begins."""

    def __init__(self, jobs: int, **options):
        super().__init__(**options)
        self.sampling = [threading.Event() for _ in range(jobs)]

    def generate_batch(self, requests):
        self.sampling[self.calls].set()
        return super().generate_batch(requests)


def test_the_next_job_samples_while_this_one_is_gated(shapes_dir, tmp_path):
    plan = make_plan(shapes_dir, target_per_class=20)  # 8 + 14 + 17 = 39 images
    backend = AnnouncingBackend(10, seconds=0.1, batch_size=4)  # 10 jobs of 0.1 s sampling
    overlapped = []

    def slow(image, class_name):  # 0.1 s of gating per job
        if not overlapped:  # one after the other, the next job would not be sampling yet
            overlapped.append(backend.sampling[1].wait(30))
        time.sleep(0.025)
        return 1.0

    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                             gates=GateSpec(structure_min=None, blur_min=None, phash_max=None,
                                            extra_gates=[FunctionGate("slow", slow,
                                                                      threshold=0.0)]),
                             progress=False, workers=2)
    assert overlapped == [True]
    split = summary["time_split"]
    assert summary["totals"]["accepted"] == 39 and backend.calls == 10
    assert split["sampling"] >= 0.9 and split["gates"] >= 0.9  # each stage's own time
    assert set(split) == {"sampling", "gates", "writing", "waiting"}


def test_the_cache_does_not_depend_on_batching_or_workers(backend, plan, tmp_path):
    options = dict(gates=GateSpec(structure_min=None, blur_min=10, phash_max=20,
                                  extra_gates=[FunctionGate("coin", coin, threshold=1.0)]),
                   max_retries=2, progress=False)
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "a", batch_size=3, workers=1,
                   **options)
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "b", batch_size=7, workers=3,
                   **options)
    assert comparable(tmp_path / "a") == comparable(tmp_path / "b")


def test_every_batch_is_sampled_at_one_shape_so_no_image_depends_on_its_batch(
        tiny_generator, plan, tmp_path):
    backend = load_backend(tiny_generator, device="cpu", steps=2, pixel_check=False,
                           batch_size=4)
    shapes, predict = [], backend.predictor._predict

    def spy(x, t, labels):
        shapes.append(len(x))
        return predict(x, t, labels)

    backend.predictor._predict = spy
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "c", batch_size=3,
                   gates=GateSpec(structure_min=None, blur_min=None, phash_max=None),
                   progress=False)
    assert set(shapes) == {4}  # jobs of 3, each padded to the batch size
    assert backend.fixed_shape is False  # the run's setting does not outlive it
    shapes.clear()
    backend.generate_batch([GenerationRequest(class_name="ring", seed=1)])
    assert set(shapes) == {1}  # outside a run, as it comes


def test_batches_mix_classes_so_a_stopped_run_fills_every_class_partly(plan, tmp_path):
    lenient = dict(gates=GateSpec(structure_min=None, blur_min=None, phash_max=None),
                   progress=False)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the third batch of two
        generate_cache(plan, backend=Interrupting(FakeBackend(batch_size=2), 3),
                       cache_dir=tmp_path / "c", **lenient)
    counts = SyntheticCache(tmp_path / "c").counts()
    assert counts == {"ring": 3, "bar": 1}  # 6 and 3 needed: in proportion


class StepClock:
    """``generate_cache``'s clock, moved by hand: ``perf_counter`` reads it, ``time`` (the
    wall time stamped on files) is the real one."""

    time = staticmethod(time.time)

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class ClockedBackend(FakeBackend):
    """A FakeBackend whose every batch moves ``clock`` on by ``seconds``."""

    def __init__(self, clock, seconds, **options):
        super().__init__(**options)
        self.clock, self.step = clock, seconds

    def generate_batch(self, requests):
        self.clock.now += self.step
        return super().generate_batch(requests)


def test_max_seconds_stops_with_every_class_partly_filled_and_a_rerun_completes(
        plan, tmp_path, monkeypatch):
    lenient = dict(gates=GateSpec(structure_min=None, blur_min=None, phash_max=None),
                   progress=False)
    generate_cache(plan, backend=FakeBackend(batch_size=2), cache_dir=tmp_path / "whole",
                   **lenient)
    clock = StepClock()
    with monkeypatch.context() as patch:  # the run's clock moves 0.3 s per batch sampled
        patch.setattr(_generate, "time", clock)
        stopped = generate_cache(plan, backend=ClockedBackend(clock, 0.3, batch_size=2),
                                 cache_dir=tmp_path / "c", max_seconds=0.5, **lenient)
    assert stopped["stopped_by"] == "max_seconds" and not stopped["complete"]
    assert 0 < stopped["totals"]["accepted"] < 9 and stopped["totals"]["pending"] > 0
    assert all(c["accepted"] > 0 for c in stopped["classes"].values())
    again = generate_cache(plan, backend=FakeBackend(batch_size=2), cache_dir=tmp_path / "c",
                           **lenient)
    assert again["complete"] and again["stopped_by"] is None
    assert comparable(tmp_path / "c") == comparable(tmp_path / "whole")
    with pytest.raises(ConfigError, match="`max_seconds` must be positive"):
        generate_cache(plan, backend=FakeBackend(), cache_dir=tmp_path / "d", max_seconds=0)


def test_the_integrity_pass_reports_a_damaged_image(backend, plan, tmp_path):
    options = dict(gates=GateSpec(structure_min=None, blur_min=None), image_size=24,
                   progress=False)
    generate_cache(plan, backend=backend, cache_dir=tmp_path / "c", **options)
    record = SyntheticCache(tmp_path / "c").records[0]
    (tmp_path / "c" / record["path"]).write_bytes(b"garbage")
    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c", **options)
    assert not summary["integrity"]["ok"] and not summary["complete"]
    assert f"1 unreadable image file(s): {record['path']}" in summary["integrity"]["problems"][0]
