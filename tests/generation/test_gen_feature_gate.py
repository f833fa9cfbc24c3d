"""The feature-distance gate: in ``genaug generate`` and as a gate object on its own."""

import json

import numpy as np
import pytest
from _gen_helpers import FakeBackend, MeanFeature
from click.testing import CliRunner

from genaug.cache import SyntheticCache
from genaug.cli import main
from genaug.exceptions import ConfigError
from genaug.generation import (
    FeatureDistanceGate,
    GateChain,
    GateSpec,
    build_gate_chain,
    generate_cache,
    make_plan,
)


def grey(value):
    return np.full((4, 4, 1), value, np.uint8)


def reference(calls):
    real = {"a": [grey(v) for v in (90, 95, 105, 110)], "lonely": [grey(10)]}

    def images(class_name):
        calls.append(class_name)
        return real.get(class_name, [])
    return images


def test_far_images_fail_near_ones_pass_and_real_features_are_computed_once():
    calls = []
    gate = FeatureDistanceGate(MeanFeature(), reference_images=reference(calls))
    chain = GateChain([gate])
    # class a: centre 100, radius 10 (0.95 quantile of 5, 5, 10, 10 is 10)
    images = [grey(v) for v in (104, 118, 125, 50)]
    prepared = chain.prepare(images, ["a"] * 4)
    verdicts = [chain.finish(image, "a", p) for image, p in zip(images, prepared)]
    assert [passed for passed, _ in verdicts] == [True, True, False, False]
    scores = [quality["feature_distance"]["score"] for _, quality in verdicts]
    assert scores == pytest.approx([0.4, 1.8, 2.5, 5.0])
    assert verdicts[0][1]["feature_distance"]["threshold"] == 2.0
    in_only = FeatureDistanceGate(MeanFeature(), reference_images=reference([]), threshold=1.0)
    assert [in_only.passes(s) for s in in_only.score_batch(images, ["a"] * 4)] == [
        True, False, False, False]
    # a class with fewer than 2 real images has no radius: not applicable, passes
    passed, quality = chain.check(grey(250), "lonely")
    assert passed and quality["feature_distance"]["note"] == "not applicable"
    chain.check(grey(100), "a")
    assert sorted(calls) == ["a", "lonely"]  # each class's real images embedded once
    rates = chain.acceptance_rates()["a"]
    assert (rates["checked"], rates["accepted"]) == (5, 3)


def test_bad_gate_parameters():
    with pytest.raises(ConfigError, match="select_max_ratio"):
        FeatureDistanceGate(MeanFeature(), reference_images=None, threshold=0)
    with pytest.raises(ConfigError, match="model not found"):
        build_gate_chain(select_model="missing.keras", reference_images=reference([]))


@pytest.fixture(scope="module")
def selector(shapes_dir, tmp_path_factory):
    """A tiny saved classifier with a ``features`` layer, as ``genaug train`` saves one."""
    import keras

    from genaug.classifier import save_classifier

    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(name="features"),
                              keras.layers.Dense(3, activation="softmax")])
    path = tmp_path_factory.mktemp("selector") / "selector.keras"
    return save_classifier(model, path, class_names=["bar", "disc", "ring"], image_size=(16, 16),
                           color_mode="grayscale")


def test_generate_gates_with_the_selection_model(shapes_dir, selector, tmp_path):
    plan = make_plan(shapes_dir, target_per_class=9)
    summary = generate_cache(plan, backend=FakeBackend(), cache_dir=tmp_path / "c",
                             gates=GateSpec(select_model=selector, select_max_ratio=3.0,
                                            blur_min=None, structure_min=None, phash_max=None),
                             progress=False)
    assert [g["name"] for g in summary["gates"]] == ["feature_distance"]
    assert summary["gates"][0]["model"] == str(selector)
    for record in SyntheticCache(tmp_path / "c").records:
        gate = record["quality"]["feature_distance"]
        assert gate["passed"] and gate["threshold"] == 3.0 and gate["score"] <= 3.0
    assert summary["classes"]
    for row in summary["classes"].values():
        assert "feature_distance" in row["gate_acceptance"]  # counted like the other gates
        assert set(row["rejected_by_gate"]) <= {"feature_distance"}


def test_generate_cli_selection_options(shapes_dir, selector, tiny_generator, tmp_path):
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8", "--out", str(plan)])
    base = ["generate", "--plan", str(plan), "--generator", str(tiny_generator),
            "--synthetic-cache", str(tmp_path / "c")]
    alone = runner.invoke(main, [*base, "--synthetic-select", "feature-distance"])
    assert alone.exit_code == 2 and "--synthetic-select feature-distance and --select-model go" \
        in alone.output
    missing = runner.invoke(main, [*base, "--synthetic-select", "feature-distance",
                                   "--select-model", str(tmp_path / "none.keras")])
    assert missing.exit_code == 2 and "Error: model not found" in missing.output
    result = runner.invoke(main, [*base, "--synthetic-select", "feature-distance", "--select-model",
                                  str(selector), "--no-pixel-check", "--steps", "1",
                                  "--blur-min", "0", "--structure-min", "0", "--quiet"])
    summary = json.loads((tmp_path / "c" / "generation_summary.json").read_text())
    assert "feature_distance" in [g["name"] for g in summary["gates"]], result.output
    assert not (tmp_path / "none.keras").exists()
