"""The class-margin and pixel-statistics gates: on their own, in ``genaug generate`` and on
the command line, on constructed data whose verdicts are known."""

import json

import numpy as np
import pytest
from _gen_helpers import MeanFeature, PlacedBackend
from click.testing import CliRunner
from PIL import Image

from genaug.cache import REJECTIONS_LOG, SyntheticCache
from genaug.cli import main
from genaug.exceptions import ConfigError
from genaug.generation import (
    ClassMarginGate,
    GateChain,
    GateSpec,
    PixelStatisticsGate,
    build_gate_chain,
    generate_cache,
    make_plan,
)
from genaug.sampling import select_by_class_margin


def flat(value, size=8):
    return np.full((size, size, 1), value, np.uint8)


def framed(background, centre, size=16):
    """A ``centre``-valued square on a ``background`` (the look of a garment on black)."""
    image = np.full((size, size, 1), background, np.uint8)
    image[size // 4:-size // 4, size // 4:-size // 4] = centre
    return image


REAL_LEVELS = {"dark": (30, 35, 45, 50), "bright": (190, 195, 205, 210), "lonely": (120,)}


def real_flat(class_name):
    return [flat(v) for v in REAL_LEVELS.get(class_name, ())]


def test_the_margin_gate_drops_an_image_nearer_another_class_and_keeps_one_near_its_own():
    gate = ClassMarginGate(MeanFeature((8, 8)), reference_images=real_flat,
                           class_names=["dark", "bright", "lonely"])
    chain = GateChain([gate])
    images = [flat(60), flat(180), flat(200), flat(90)]
    labels = ["dark", "dark", "bright", "lonely"]
    verdicts = [chain.finish(image, name, p) for image, name, p
                in zip(images, labels, chain.prepare(images, labels))]
    assert [passed for passed, _ in verdicts] == [True, False, True, True]
    # 60 is 2 dark radii (10) from dark's centre and 14 bright radii from bright's
    assert verdicts[0][1]["class_margin"]["score"] == pytest.approx(2 / 14)
    assert verdicts[3][1]["class_margin"]["note"] == "not applicable"  # no centre of its own
    # one rule: the train-time selection decides the same images the same way
    real = np.array([[v] for c in ("dark", "bright", "lonely") for v in REAL_LEVELS[c]], float)
    real_labels = [0] * 4 + [1] * 4 + [2]
    selection = select_by_class_margin(real, real_labels, [[60.0], [180.0], [200.0], [90.0]],
                                       [0, 0, 1, 2], class_names=["dark", "bright", "lonely"])
    assert selection.keep.tolist() == [passed for passed, _ in verdicts]
    assert chain.acceptance_rates()["dark"]["by_gate"]["class_margin"] == 0.5


def test_the_margin_gate_floors_a_tight_rare_classs_radius():
    wide = [flat(v) for v in range(20, 120, 5)]  # radius about 45
    tight = [flat(200), flat(201), flat(200)]  # radius about 1
    references = {"wide": wide, "tight": tight}.get
    floored = ClassMarginGate(MeanFeature((8, 8)), reference_images=references,
                              class_names=["wide", "tight"])
    unfloored = ClassMarginGate(MeanFeature((8, 8)), reference_images=references,
                                class_names=["wide", "tight"], radius_floor=0.0)
    slightly_off = [flat(180)]  # 20 from tight (many of its radii), 110 from wide (about 2.4)
    assert unfloored.passes(unfloored.score_batch(slightly_off, ["tight"])[0]) is False
    assert floored.passes(floored.score_batch(slightly_off, ["tight"])[0]) is True


def test_bad_gate_options_are_refused():
    with pytest.raises(ConfigError, match="radius_floor must be >= 0"):
        ClassMarginGate(MeanFeature((8, 8)), reference_images=real_flat, class_names=["a"],
                        radius_floor=-1)
    with pytest.raises(ConfigError, match="needs `class_names`"):
        build_gate_chain(select_model=MeanFeature((8, 8)), select_method="class-margin")
    with pytest.raises(ConfigError, match="`select_method` must be one of"):
        build_gate_chain(select_model=MeanFeature((8, 8)), select_method="nearest",
                         class_names=["a"])
    with pytest.raises(ConfigError, match="tolerances must be positive"):
        PixelStatisticsGate(reference_images=real_flat, border_tolerance=0)


BLACK = [framed(0, 200), framed(4, 180), framed(2, 220), framed(0, 160)]
WHITE = [framed(255, 40), framed(250, 60), framed(252, 30), framed(255, 50)]


def real_framed(class_name):
    return {"black": BLACK, "white": WHITE, "single": BLACK[:1]}.get(class_name, [])


def test_the_pixel_gate_rejects_a_grey_background_where_the_class_is_black():
    gate = PixelStatisticsGate(reference_images=real_framed)
    chain = GateChain([gate])
    cases = [(framed(128, 200), "black", False),  # grey background, black class
             (framed(255, 200), "black", False),  # white background, black class
             (framed(3, 190), "black", True),     # real-like
             (framed(0, 255), "black", True),     # brighter item, same background
             (framed(254, 45), "white", True),    # a white class keeps white
             (framed(0, 45), "white", False),
             (framed(128, 200), "single", True)]  # one real image: no spread to judge by
    for image, class_name, expected in cases:
        passed, quality = chain.check(image, class_name)
        assert passed is expected, (class_name, quality)
    assert quality["pixel_statistics"]["note"] == "not applicable"
    rates = chain.acceptance_rates()
    assert (rates["black"]["checked"], rates["black"]["accepted"]) == (4, 2)


def test_the_pixel_gate_sees_the_histogram_too():
    # same black border, but the inside is a uniform mid grey where the real images are
    # bright items: the border mean matches, the histogram does not
    odd = np.zeros((16, 16, 1), np.uint8)
    odd[2:-2, 2:-2] = 100
    gate = PixelStatisticsGate(reference_images=real_framed)
    assert gate.passes(gate.score(odd, "black")) is False


def test_the_pixel_gate_sees_the_border_alone():
    # the pixels of a real image moved to the top and bottom rows: the same histogram, a
    # bright border where the class's background is black
    moved = np.zeros((16, 16, 1), np.uint8)
    moved[[0, 1, 14, 15]] = 200
    gate = PixelStatisticsGate(reference_images=real_framed)
    assert np.sort(moved, axis=None).tolist() == np.sort(BLACK[0], axis=None).tolist()
    assert gate.passes(gate.score(moved, "black")) is False


def write_classes(root, images_by_class):
    for name, images in images_by_class.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image[:, :, 0]).save(root / name / f"{name}_{i}.png")
    return root


def no_standard_gates(**gates):
    """``generate_cache`` options with the blur, structure and pHash gates off, and ``gates``."""
    return dict(gates=GateSpec(blur_min=None, structure_min=None, phash_max=None, **gates),
                max_retries=1, progress=False)


def test_generate_drops_images_nearer_another_class_per_class(tmp_path):
    data = write_classes(tmp_path / "data", {
        "dark": [flat(v, 16) for v in REAL_LEVELS["dark"]],
        "bright": [flat(v, 16) for v in REAL_LEVELS["bright"]],
        "full": [flat(v, 16) for v in (100, 105, 110, 115, 120, 125)]})
    plan = make_plan(data, target_per_class=6)
    backend = PlacedBackend({"dark": flat(185, 16), "bright": flat(200, 16)})
    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                             **no_standard_gates(select_model=MeanFeature((8, 8)),
                                                 select_method="class-margin"))
    assert [g["name"] for g in summary["gates"]] == ["class_margin"]
    dark, bright = summary["classes"]["dark"], summary["classes"]["bright"]
    assert (dark["accepted"], dark["rejected_by_gate"]) == (0, {"class_margin": 4})
    assert (bright["accepted"], bright["rejected_by_gate"]) == (2, {})
    rejections = [json.loads(line) for line in
                  (tmp_path / "c" / REJECTIONS_LOG).read_text().splitlines()]
    assert {r["class"] for r in rejections} == {"dark"}
    assert all(r["quality"]["class_margin"]["score"] > 1 for r in rejections)
    assert {r["class"] for r in SyntheticCache(tmp_path / "c").records} == {"bright"}


def test_generate_rejects_a_grey_background_for_a_black_class(tmp_path):
    data = write_classes(tmp_path / "data", {"black": BLACK, "white": WHITE,
                                             "full": BLACK * 2})
    plan = make_plan(data, target_per_class=6)
    backend = PlacedBackend({"black": framed(128, 200), "white": framed(253, 45)})
    summary = generate_cache(plan, backend=backend, cache_dir=tmp_path / "c",
                             **no_standard_gates(pixel_statistics=True))
    black, white = summary["classes"]["black"], summary["classes"]["white"]
    assert (black["accepted"], black["rejected_by_gate"]) == (0, {"pixel_statistics": 4})
    assert (white["accepted"], white["rejected_by_gate"]) == (2, {})


def test_the_gates_measure_against_the_training_split_of_a_variation_plan(tmp_path):
    from genaug.generation._generate import _GenerationRun

    data = write_classes(tmp_path / "data", {
        "black": [framed(0, 150 + 10 * i) for i in range(10)],
        "full": [framed(0, 150 + 5 * i) for i in range(20)]})
    plan = make_plan(data, target_per_class=12, variation_strength=0.5, val_split=0.2,
                     test_split=0.2)
    backend = PlacedBackend({})
    backend.supports_source_images, backend.strength = True, 0.5
    run = _GenerationRun(plan, backend=backend, cache_dir=tmp_path / "c",
                         gates=GateSpec(pixel_statistics=True, blur_min=None, structure_min=None),
                         max_retries=0, image_size=None, color_mode=None, batch_size=None,
                         img2img_fraction=0.0, data=None, max_seconds=None, workers=1,
                         progress=False, parameters=None, echo=None)
    real = run._read_data()
    gates = run._build_gates(real)
    training = {real.path_by_id[i] for i in plan.classes["black"]["source_ids"]}
    assert set(real.training_paths["black"]) == training and len(training) < 10
    pixel, phash = gates.get("pixel_statistics"), gates.get("phash")
    assert len(list(pixel.reference_images("black"))) == len(training)
    assert len(list(phash.reference_images("black"))) == 10  # copies of any real image


def test_generate_cli_class_margin_and_pixel_statistics(tmp_path, monkeypatch):
    import genaug.generation

    data = write_classes(tmp_path / "data", {"black": BLACK, "white": WHITE, "full": BLACK * 2})
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    assert runner.invoke(main, ["plan", str(data), "--target-per-class", "6", "--out",
                                str(plan)]).exit_code == 0
    backend = PlacedBackend({"black": framed(128, 200), "white": framed(253, 45)})
    backend.close = lambda: None
    monkeypatch.setattr(genaug.generation, "load_backend", lambda *a, **kw: backend)
    base = ["generate", "--plan", str(plan), "--generator", str(tmp_path), "--synthetic-cache",
            str(tmp_path / "c"), "--blur-min", "0", "--structure-min", "0", "--phash-max",
            "-1", "--max-retries", "0", "--quiet"]
    alone = runner.invoke(main, [*base, "--synthetic-select", "class-margin"])
    assert alone.exit_code == 2 and "--synthetic-select class-margin and --select-model go" \
        in alone.output
    model_only = runner.invoke(main, [*base, "--select-model", str(plan)])
    assert model_only.exit_code == 2
    assert "--select-model needs --synthetic-select" in model_only.output
    result = runner.invoke(main, [*base, "--pixel-statistics"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "c" / "generation_summary.json").read_text())
    assert summary["classes"]["black"]["rejected_by_gate"] == {"pixel_statistics": 2}
    assert summary["classes"]["white"]["rejected_by_gate"] == {}
    assert "pixel_statistics" in result.output  # the per-class table names the gate
