"""``genaug quality``: per-class FID/KID/SSIM/diversity/duplicates/pass rate and the command."""

import json

import numpy as np
import pytest
from _evidence_helpers import make_cache
from click.testing import CliRunner

from genaug.cache import CacheWriter, SyntheticCache
from genaug.classifier import load_feature_extractor
from genaug.cli import main
from genaug.data import DatasetIndex
from genaug.evidence import fid, kid, measure_quality, quality_table
from genaug.evidence._quality import near_duplicate_flags, verification_summary


@pytest.fixture(scope="module")
def feature_model(tmp_path_factory):
    """A small random-weight CNN with a 'features' layer, saved like genaug's classifiers."""
    import keras

    from genaug.classifier import save_classifier

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(12, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    path = tmp_path_factory.mktemp("model") / "features.keras"
    return save_classifier(keras.Model(inputs, outputs), path, class_names=["cat", "dog", "fox"],
                           image_size=(16, 16), color_mode="rgb")


def test_feature_extractor_uses_the_features_layer(feature_model):
    extractor = load_feature_extractor(feature_model)
    assert extractor.layer == "features" and extractor.dimension == 12
    assert extractor.image_size == (16, 16) and extractor.color_mode == "rgb"
    out = extractor(np.zeros((3, 16, 16, 3), np.uint8))
    assert out.shape == (3, 12)


def test_feature_extractor_falls_back_to_the_penultimate_layer(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(5, name="embedding"), keras.layers.Dense(2)])
    model.save(tmp_path / "user.keras")
    extractor = load_feature_extractor(tmp_path / "user.keras")
    assert extractor.layer == "embedding" and extractor.color_mode == "grayscale"
    assert extractor(np.zeros((2, 8, 8, 1), np.uint8)).shape == (2, 5)


def test_verification_summary():
    accepted = [{"quality": {"clip": {"passed": True}, "cls": {"passed": True}}, "attempts": 1},
                {"quality": {"clip": {"passed": True}, "cls": {"passed": True}}, "attempts": 3}]
    rejected = [{"quality": {"clip": {"passed": True}, "cls": {"passed": False}}},
                {"quality": {"clip": {"passed": False}}}]
    summary = verification_summary(accepted, rejected)
    assert (summary["candidates"], summary["pass_rate"]) == (4, 0.5)
    assert summary["per_gate"] == {"clip": 0.75, "cls": 2 / 3}
    assert summary["first_attempt_rate"] == 0.5
    # Without the rejection log the attempt counts still give the candidates.
    estimated = verification_summary(accepted)
    assert estimated["candidates"] == 4 and "no rejection log" in estimated["source"]
    assert verification_summary([{"quality": None}])["pass_rate"] is None


def test_near_duplicate_flags():
    hashes = np.zeros((3, 64), bool)
    hashes[1, :3] = True  # 3 bits from hash 0
    hashes[2, :] = True  # far from both
    assert near_duplicate_flags(hashes, distance=4).tolist() == [True, True, False]
    assert near_duplicate_flags(hashes, distance=2).tolist() == [False, False, False]
    assert near_duplicate_flags(hashes, others=hashes[2:], distance=0).tolist() == [False, False,
                                                                                     True]


def embed(extractor, paths):
    from genaug.data import load_image

    return extractor(np.stack([load_image(p, image_size=extractor.image_size,
                                          color_mode=extractor.color_mode) for p in paths]))


def test_measure_quality_per_class_and_overall(tiny_data, tiny_cache, feature_model):
    index = DatasetIndex.load(tiny_data)
    cache = SyntheticCache(tiny_cache, class_names=index.class_names)
    lines = []
    extractor = load_feature_extractor(feature_model)
    result = measure_quality(index, cache, extractor, kid_subsets=5, progress=lines.append)
    features = {"real": {}, "synthetic": {}}
    for name, paths in index.paths_by_class().items():
        features["real"][name] = embed(extractor, paths)
        synthetic = [cache.path(r) for r in cache.by_class().get(name, [])]
        if synthetic:
            features["synthetic"][name] = embed(extractor, synthetic)
    assert len(lines) == 3
    assert set(result["classes"]) == {"cat", "dog", "fox"}
    cat, fox = result["classes"]["cat"], result["classes"]["fox"]
    assert cat["n_synthetic"] == 0 and cat["fid"] is None and "no synthetic images" in cat[
        "warnings"]
    assert (fox["n_real"], fox["n_synthetic"]) == (6, 12)
    # the class's own real and synthetic images, embedded by the extractor
    real_fox, syn_fox = features["real"]["fox"], features["synthetic"]["fox"]
    assert fox["fid"] == pytest.approx(fid(real_fox, syn_fox))
    assert (fox["kid"], fox["kid_std"]) == pytest.approx(
        kid(real_fox, syn_fox, subsets=5, subset_size=6, seed=0)[:2])
    assert fox["kid_subset_size"] == 6
    assert 0 < fox["ssim_nearest_real"]["mean"] < 1
    assert fox["diversity"]["ratio"] > 0
    assert fox["verification"]["pass_rate"] == pytest.approx(12 / 15)
    assert fox["verification"]["rejected"] == 3
    overall = result["overall"]
    assert (overall["n_real"], overall["n_synthetic"]) == (40, 20)
    # Class-matched: as many real as synthetic images per class with synthetic images.
    assert overall["matched_classes"] == ["dog", "fox"] and overall["matched_per_side"] == 8 + 6
    pooled = [np.concatenate(list(features[kind].values())) for kind in ("real", "synthetic")]
    assert overall["pooled"]["fid"] == pytest.approx(fid(*pooled))
    # All real images of those classes (dog 10 for 8 synthetic, fox 6 for 12) mix the classes
    # otherwise than the synthetic side, which alone raises FID: matching removes that.
    unmatched = fid(np.concatenate([features["real"]["dog"], real_fox]), pooled[1])
    assert overall["fid"] < unmatched / 10
    assert overall["verification"]["pass_rate"] == pytest.approx(20 / 25)
    assert result["class_mean"]["classes_with_synthetic"] == 2
    assert "not Inception" in result["feature_space"]["note"]
    table = quality_table(result)
    assert table.splitlines()[0].split()[:3] == ["class", "real", "synth"]
    assert "ALL (matched)" in table


def test_copies_of_real_images_are_caught(tiny_data, feature_model, tmp_path):
    index = DatasetIndex.load(tiny_data)
    from genaug.data import load_image

    with CacheWriter(tmp_path / "copies") as writer:
        for i in np.flatnonzero(index.labels == 2):
            writer.add(load_image(index.paths[i]), class_name="fox")
    cache = SyntheticCache(tmp_path / "copies", class_names=index.class_names)
    result = measure_quality(index, cache, load_feature_extractor(feature_model), kid_subsets=3)
    fox = result["classes"]["fox"]
    assert fox["near_copy_of_real_rate"] == 1.0
    assert fox["ssim_nearest_real"]["max"] == pytest.approx(1.0)
    assert abs(fox["fid"]) < 1e-6  # identical feature sets


def test_shifted_synthetic_images_score_worse(tiny_data, feature_model, tmp_path):
    index = DatasetIndex.load(tiny_data)
    extractor = load_feature_extractor(feature_model)
    scores = {}
    for shift in (0.0, 90.0):
        directory = make_cache(tmp_path / f"shift{shift:.0f}", {"cat": 24}, seed=5, shift=shift)
        cache = SyntheticCache(directory, class_names=index.class_names)
        scores[shift] = measure_quality(index, cache, extractor, kid_subsets=10)["classes"]["cat"]
    assert scores[90.0]["fid"] > 5 * scores[0.0]["fid"]
    assert scores[90.0]["kid"] > scores[0.0]["kid"] + 3 * scores[0.0]["kid_std"]


def test_quality_command_with_a_user_model(tiny_data, tiny_cache, feature_model, tmp_path):
    result = CliRunner().invoke(main, [
        "quality", str(tiny_data), "--synthetic-cache", str(tiny_cache), "--feature-model",
        str(feature_model), "--output-dir", str(tmp_path), "--kid-subsets", "5"])
    assert result.exit_code == 0, result.output
    assert "ALL (matched)" in result.output and "not Inception" in result.output
    data = json.loads((tmp_path / "quality.json").read_text())
    assert data["feature_space"]["source"].startswith("user model")
    assert data["classes"]["dog"]["n_synthetic"] == 8


def test_quality_command_trains_a_feature_classifier_without_a_model(tiny_data, tiny_cache,
                                                                     tmp_path):
    result = CliRunner().invoke(main, [
        "quality", str(tiny_data), "--synthetic-cache", str(tiny_cache), "--output-dir",
        str(tmp_path), "--feature-epochs", "1", "--image-size", "16", "--kid-subsets", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "quality.json").read_text())
    assert "trained by genaug on the real images" in data["feature_space"]["source"]
    assert data["feature_space"]["layer"] == "features"
    assert (tmp_path / "quality_feature_model" / "feature_model.keras").is_file()


def test_quality_command_rejects_an_empty_cache(tiny_data, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["quality", str(tiny_data), "--synthetic-cache",
                                       str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "has no usable images" in result.output


def test_the_default_feature_model_is_trained_through_the_handed_function(feature_model,
                                                                          tmp_path):
    """The evidence package does not import the training application: it is handed a
    training function and loads the classifier that function saved."""
    from genaug.evidence import train_feature_extractor

    calls = []

    def train_classifier(**options):
        calls.append(options)
        return {"model_path": str(feature_model), "balanced_accuracy": 0.75}

    extractor = train_feature_extractor("data", train_classifier=train_classifier,
                                        output_dir=tmp_path, epochs=3, seed=4)
    (options,) = calls
    assert options["balanced"] is True and options["epochs"] == 3 and options["seed"] == 4
    assert options["model_dir"] == str(tmp_path) and options["color_mode"] == "auto"
    assert extractor.layer == "features" and extractor.details["classifier_epochs"] == 3
    assert extractor.details["classifier_balanced_accuracy"] == 0.75
