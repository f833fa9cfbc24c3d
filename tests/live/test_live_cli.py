"""`genaug train --live-generator` with a real (tiny) DDPM generator on the CPU."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from genaug.cache import SyntheticCache
from genaug.cli import main

TINY = ["--epochs", "2", "--image-size", "16", "--model-width", "8", "--batch-size", "8",
        "--quiet", "--balanced"]


def train(tmp_path, *args):
    result = CliRunner().invoke(main, ["train", *args, *TINY, "--output-dir",
                                       str(tmp_path / "out"), "--model-dir",
                                       str(tmp_path / "models")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result, json.loads((tmp_path / "out" / "metrics.json").read_text())


@pytest.fixture
def unchecked_backend(monkeypatch):
    """The tiny generator is undertrained: its noise would (rightly) fail the pixel check."""
    import genaug.generation

    load = genaug.generation.load_backend
    monkeypatch.setattr(genaug.generation, "load_backend",
                        lambda path, **kw: load(path, **kw, steps=2, pixel_check=False))


@pytest.fixture
def lenient_gates(monkeypatch):
    """Its noise would (rightly) fail the blur and structure gates too: leave those out."""
    from dataclasses import replace

    from genaug.generation import GateSpec

    build = GateSpec.build
    monkeypatch.setattr(GateSpec, "build", lambda spec, **kw: build(
        replace(spec, blur_min=None, structure_min=None), **kw))


@pytest.fixture
def reference_classifier(tmp_path):
    import keras

    from genaug.classifier import save_classifier

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    return save_classifier(model, tmp_path / "reference.keras",
                           class_names=["cat", "dog", "snake"], image_size=(16, 16),
                           color_mode="rgb")


def test_fit_consumes_fresh_images_and_persists_them(live_data, tmp_path, unchecked_backend,
                                                     lenient_gates, reference_classifier):
    data, generator = live_data
    cache = tmp_path / "cache"
    _, metrics = train(tmp_path, str(data), "--live-generator", str(generator),
                       "--live-device", "cpu", "--synthetic-ratio", "0.5",
                       "--synthetic-cache", str(cache), "--live-buffer", "16",
                       "--live-verify-model", str(reference_classifier),
                       "--live-verify-threshold", "0.0",
                       "--live-producer", "thread")  # the patches live in this process
    live = metrics["live"]
    assert live["producer"] == "thread"
    for key in ("produced_per_s", "consumed_per_s", "reuse_counts", "fallbacks",
                "consumer_wait_s"):
        assert key in live
    assert live["generated"] > 0 and live["producer_error"] is None
    assert live["consumed"] + live["fallbacks"]["cache"] + live["fallbacks"]["real"] > 0
    records = SyntheticCache(cache).records
    assert len(records) == live["accepted"] > 0
    assert all(r["generator"]["backend"] == "ddpm" for r in records)
    assert all(set(r["quality"]) == {"verifier", "phash"} for r in records)


@pytest.mark.parametrize(("method", "gate"), [("feature-distance", "feature_distance"),
                                            ("class-margin", "class_margin")])
def test_the_selection_gate_runs_in_the_live_producer(live_data, tmp_path, unchecked_backend,
                                                      monkeypatch, reference_classifier,
                                                      method, gate):
    from dataclasses import replace

    from genaug.generation import ClassMarginGate, GateSpec

    build = GateSpec.build
    seen = {}

    def lenient(spec, **kw):  # the tiny generator's noise is far from every class: keep it all
        seen["spec"] = spec
        select_model = spec.select_model
        if spec.select_method == "class-margin":
            select_model = ClassMarginGate(select_model, reference_images=kw["reference_images"],
                                           class_names=kw["class_names"], threshold=1e9)
        return build(replace(spec, select_model=select_model, select_max_ratio=1e9,
                             blur_min=None, structure_min=None), **kw)

    monkeypatch.setattr(GateSpec, "build", lenient)
    data, generator = live_data
    cache = tmp_path / "cache"
    _, metrics = train(tmp_path, str(data), "--live-generator", str(generator),
                       "--live-device", "cpu", "--synthetic-ratio", "0.5",
                       "--synthetic-cache", str(cache), "--live-buffer", "16",
                       "--synthetic-select", method,
                       "--select-model", str(reference_classifier), "--live-producer", "thread")
    assert seen["spec"].select_model == str(reference_classifier)
    assert seen["spec"].select_method == method
    live = metrics["live"]
    assert live["generated"] > 0 and live["producer_error"] is None
    assert "rejected_by_gate" in live and "rejected_by_class" in live
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["live_rejections"]["rejected_by_class"] == live["rejected_by_class"]
    records = SyntheticCache(cache).records
    assert records and all(gate in r["quality"] for r in records)
    assert "synthetic_selection" not in metrics  # the cache is not selected again


def test_a_live_selection_needs_its_model(live_data, tmp_path):
    data, generator = live_data
    result = CliRunner().invoke(main, ["train", str(data), "--live-generator", str(generator),
                                       "--synthetic-select", "feature-distance", *TINY,
                                       "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "give --select-model" in result.output


def test_live_verify_model_is_checked_like_any_input(live_data, tmp_path):
    data, generator = live_data
    for extra, message in (([], "--live-verify-model needs --live-generator"),
                           (["--live-generator", str(generator), "--live-device", "cpu"],
                            "model not found")):
        result = CliRunner().invoke(main, ["train", str(data), "--live-verify-model",
                                           str(tmp_path / "missing.keras"), *extra, *TINY,
                                           "--output-dir", str(tmp_path / "o")])
        assert result.exit_code == 2 and f"Error: {message}" in result.output, result.output
        assert not (tmp_path / "o").exists()


def test_a_generator_failing_its_sanity_check_stops_and_the_run_falls_back(live_data,
                                                                          tmp_path):
    data, generator = live_data
    with pytest.warns(UserWarning, match="live generator stopped: GenerationError"):
        result, metrics = train(tmp_path, str(data), "--live-generator", str(generator),
                                "--live-device", "cpu", "--synthetic-ratio", "0.5",
                                "--live-producer", "process")  # the error crosses processes
    live = metrics["live"]
    assert live["producer"] == "process"
    assert "does not look like the real data" in live["producer_error"]
    assert live["consumed"] == 0 and live["fallbacks"]["cache"] == 0
    # training finished, every epoch, with each synthetic slot served by a real image
    assert len(metrics["history"]["loss"]) == 2 and Path(metrics["model_path"]).is_file()
    planned = sum(row["synthetic_draws"] for row in metrics["composition"]["classes"].values())
    assert live["fallbacks"]["real"] == live["misses"] >= planned > 0
    assert live["warning"].startswith(
        f"the live generator served no fresh image: all {live['fallbacks']['real']} synthetic "
        "slots fell back (0 to the cache")
    assert f"warning: {live['warning']}" in result.output  # and says so in one line


def test_without_cuda_the_run_falls_back_with_a_clear_message(live_data, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data, generator = live_data
    result = CliRunner().invoke(main, ["train", str(data), "--live-generator", str(generator),
                                       "--synthetic-ratio", "0.5", "--epochs", "1",
                                       "--image-size", "16", "--model-width", "8",
                                       "--balanced", "--output-dir", str(tmp_path / "o"),
                                       "--model-dir", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "CUDA is not available" in result.output
    assert "live" not in json.loads((tmp_path / "o" / "metrics.json").read_text())


def test_start_live_source_takes_explicit_options_and_auto_is_a_thread(live_data, tmp_path):
    import warnings

    from genaug.data import DatasetIndex
    from genaug.exceptions import ConfigError
    from genaug.live import start_live_source

    data, generator = live_data
    train = DatasetIndex.from_directory(data)
    options = dict(image_size=(8, 8), color_mode="rgb", cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match="`producer` must be auto, process or thread"):
        start_live_source(generator, train, device="cpu", producer="gpu", **options)
    with pytest.raises(ConfigError, match="`device` must be cuda, cuda:N or cpu"):
        start_live_source(generator, train, device="tpu", **options)
    messages = []
    live = start_live_source(generator, train, device="cpu", log=messages.append, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the undertrained generator fails its pixel check
        live.close()
    assert live.statistics()["producer"] == "thread" and "(in a thread)" in messages[0]
