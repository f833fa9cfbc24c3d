"""Variations of real images: planned from training images only, made by partial noising."""

import json

import numpy as np
import pytest
from _gen_helpers import shape_image

from genaug.cache import SyntheticCache
from genaug.data import DatasetIndex, split_dataset
from genaug.exceptions import ConfigError
from genaug.generation import (
    GateSpec,
    GenerationPlan,
    GenerationRequest,
    generate_cache,
    load_backend,
    make_plan,
)

NO_GATES = dict(gates=GateSpec(structure_min=None, blur_min=None, phash_max=None), progress=False)


def test_a_variation_plan_draws_its_sources_from_the_training_split_only(shapes_dir, tmp_path):
    plan = make_plan(shapes_dir, target_per_class=14, variation_strength=0.5,
                     val_split=0.2, test_split=0.3, split_seed=4)
    splits = split_dataset(DatasetIndex.load(shapes_dir), validation_split=0.2, test_split=0.3,
                           seed=4)
    held_out = splits.held_out_ids()
    assert held_out  # the split holds images of every kind out
    sources = {name: [item.source_id for item in plan.items(name)] for name in plan.class_names}
    assert all(sources.values()) and all(None not in ids for ids in sources.values())
    for name, ids in sources.items():
        assert not set(ids) & held_out
        assert all(rid.startswith(f"{name}/") for rid in ids)
        # each training image of the class in turn before any is used twice
        first_round = min(len(ids), len(plan.classes[name]["source_ids"]))
        assert len(set(ids[:first_round])) == first_round
    assert {item.strength for name in plan.class_names for item in plan.items(name)} == {0.5}
    # saved and loaded, the plan makes the same images from the same sources
    again = GenerationPlan.load(plan.save(tmp_path / "plan.json"))
    assert [i.source_id for i in again.items("bar")] == sources["bar"]
    assert again.sha256 == plan.sha256
    assert "variations of training images: 21 (strength 0.5" in "\n".join(
        plan.summary_lines())


def test_half_the_planned_images_are_variations_and_plain_plans_are_unchanged(shapes_dir):
    plan = make_plan(shapes_dir, target_per_class=10, variation_strength=0.4,
                     variation_fraction=0.5)
    made = [item.source_id is not None for item in plan.items("ring")]
    assert made == [False, True] * 3 + [False]
    plain = make_plan(shapes_dir, target_per_class=10)
    assert "variation" not in plain.to_dict()
    assert all(item.source_id is None for item in plain.items("ring"))
    assert "source_ids" not in plain.classes["ring"]


def test_variation_options_are_checked(shapes_dir):
    with pytest.raises(ConfigError, match="`variation_strength` must be in"):
        make_plan(shapes_dir, target_per_class=10, variation_strength=1.5)
    with pytest.raises(ConfigError, match="`variation_fraction` must be in"):
        make_plan(shapes_dir, target_per_class=10, variation_strength=0.5,
                  variation_fraction=0.0)


def test_a_weak_variation_stays_near_its_source_and_a_full_one_does_not(tiny_generator):
    source = shape_image("disc", np.random.default_rng(1), size=16)[..., None]

    def vary(strength, seed=3):
        backend = load_backend(tiny_generator, sampler="ddim", steps=50, strength=strength,
                               pixel_check=False)
        return backend.generate_batch([GenerationRequest(
            class_name="disc", seed=seed, source_image=source,
            source_id="disc/disc_00.png")])[0]

    weak, full = vary(0.02), vary(1.0)
    distance = {name: float(np.abs(made.image.astype(float) - source).mean())
                for name, made in (("weak", weak), ("full", full))}
    assert distance["weak"] < 8 and distance["full"] > 40  # measured: 4.4 and 96
    assert weak.provenance["strength"] == 0.02 and weak.provenance["mode"] == "variation"
    assert np.array_equal(vary(0.02).image, weak.image)  # same seed, same image
    assert not np.array_equal(vary(1.0, seed=4).image, full.image)


def test_generating_a_variation_plan_records_sources_and_is_deterministic(
        shapes_dir, tiny_generator, tmp_path):
    plan = make_plan(shapes_dir, target_per_class=8, variation_strength=0.5)
    backend = load_backend(tiny_generator, steps=4, strength=0.5, pixel_check=False,
                           batch_size=4)
    for name in ("a", "b"):
        generate_cache(plan, backend=backend, cache_dir=tmp_path / name, **NO_GATES)
    records = {name: SyntheticCache(tmp_path / name).records for name in ("a", "b")}
    assert records["a"] and all(
        r["mode"] == "variation" and r["strength"] == 0.5 for r in records["a"])
    planned = {item.record_id: item.source_id for name in plan.class_names
               for item in plan.items(name)}
    assert all(r["source_id"] == planned[r["id"]] for r in records["a"])
    for a, b in zip(records["a"], records["b"]):
        assert a["id"] == b["id"] and a["source_id"] == b["source_id"]
        pixels = [(tmp_path / name / r["path"]).read_bytes() for name, r in (("a", a), ("b", b))]
        assert pixels[0] == pixels[1]


def test_a_variation_plan_refuses_a_backend_noising_otherwise(shapes_dir, tiny_generator,
                                                              tmp_path):
    plan = make_plan(shapes_dir, target_per_class=8, variation_strength=0.5)
    other = load_backend(tiny_generator, steps=2, strength=0.6, pixel_check=False)
    with pytest.raises(ConfigError, match="plan makes variations at strength 0.5 but the "
                                          "backend noises them to 0.6"):
        generate_cache(plan, backend=other, cache_dir=tmp_path / "c", **NO_GATES)
    same = load_backend(tiny_generator, steps=2, strength=0.5, pixel_check=False)
    with pytest.raises(ConfigError, match="already makes variations"):
        generate_cache(plan, backend=same, cache_dir=tmp_path / "c", img2img_fraction=0.5,
                       **NO_GATES)
    broken = json.loads(plan.to_json())
    broken["classes"]["bar"]["source_ids"] = ["bar/gone.png"]
    with pytest.raises(ConfigError, match="1 source image.* not in the data .*bar/gone.png"):
        generate_cache(GenerationPlan.from_dict(broken), backend=same,
                       cache_dir=tmp_path / "c", **NO_GATES)
    assert not (tmp_path / "c").exists()
