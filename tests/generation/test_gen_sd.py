import json
import os

import numpy as np
import pytest
from _gen_helpers import shape_image

from genaug.cache import SyntheticCache
from genaug.exceptions import ConfigError
from genaug.generation import (
    GateSpec,
    GenerationRequest,
    StableDiffusionBackend,
    generate_cache,
    load_backend,
    make_plan,
)


@pytest.fixture(scope="module")
def sd(tiny_sd):
    return load_backend(tiny_sd, device="cpu", steps=2, guidance_scale=3.0, strength=0.5)


def test_tiny_sd_text_to_image_and_image_to_image(sd, tiny_sd):
    assert isinstance(sd, StableDiffusionBackend) and os.environ["HF_HUB_OFFLINE"] == "1"
    assert sd.can_generate("a class nobody has photographed")
    source = np.repeat(shape_image("disc", np.random.default_rng(0), 16)[:, :, None], 3, 2)
    made = sd.generate_batch(
        [
            GenerationRequest(
                class_name="disc",
                seed=1,
                prompt="a disc, day light",
                negative_prompt="blurry",
                attributes={"lighting": "day"},
            ),
            GenerationRequest(
                class_name="disc",
                seed=2,
                prompt="a disc",
                source_image=source,
                source_id="disc/disc_00.png",
            ),
            GenerationRequest(class_name="new_shape", seed=3),
        ]
    )
    text, variation, default = (m.provenance for m in made)
    assert made[0].image.shape == (16, 16, 3) and made[0].image.dtype == np.uint8
    assert text["prompt"] == "a disc, day light" and text["negative_prompt"] == "blurry"
    assert text["mode"] == "txt2img" and text["source_id"] is None
    assert (text["seed"], text["steps"], text["guidance_scale"]) == (1, 2, 3.0)
    assert text["attributes"] == {"lighting": "day"}
    assert text["generator"]["backend"] == "sd"
    assert text["generator"]["model"] == str(tiny_sd.resolve())
    assert len(text["generator"]["model_hash"]) == 64
    assert variation["mode"] == "img2img" and variation["source_id"] == "disc/disc_00.png"
    assert variation["strength"] == 0.5
    assert default["prompt"] == "a photo of a new shape"
    again = sd.generate_batch(
        [
            GenerationRequest(
                class_name="disc", seed=1, prompt="a disc, day light", negative_prompt="blurry"
            )
        ]
    )[0]
    assert np.array_equal(again.image, made[0].image)


def test_sd_cache_has_prompts_sources_and_the_prompt_set_hash(sd, shapes_dir, tmp_path):
    with pytest.warns(UserWarning, match="not in class_names"):
        plan = make_plan(
            shapes_dir,
            target_per_class=4,
            class_names=["ring", "new_shape"],
            config={
                "negative_prompt": "blurry",
                "prompts": ["a {class_text} in {lighting} light"],
                "attributes": {"lighting": ["day", "night"]},
            },
        )
    summary = generate_cache(plan, backend=sd, cache_dir=tmp_path / "c",
                             gates=GateSpec(structure_min=None, blur_min=None, phash_max=None),
                             img2img_fraction=1.0, progress=False)
    assert summary["complete"]
    records = SyntheticCache(tmp_path / "c").records
    assert len(records) == 1 + 4 and {r["class"] for r in records} == {"ring", "new_shape"}
    for record in records:
        assert record["prompt_set_sha256"] == plan.prompt_set_sha256
        assert record["prompt"] == (
            f"a {record['class'].replace('_', ' ')} in {record['attributes']['lighting']} light"
        )
        assert record["negative_prompt"] == "blurry"
        assert record["steps"] == 2 and record["guidance_scale"] == 3.0
    ring = [r for r in records if r["class"] == "ring"]
    assert ring[0]["mode"] == "img2img" and ring[0]["source_id"].startswith("ring/")
    new = [r for r in records if r["class"] == "new_shape"]
    assert all(r["mode"] == "txt2img" and r["source_id"] is None for r in new)
    provenance = SyntheticCache(tmp_path / "c").provenance()
    assert provenance["prompt_set_sha256"] == [plan.prompt_set_sha256]
    env = json.loads((tmp_path / "c" / "env_report.json").read_text())
    assert env["generator"]["backend"] == "sd"


def test_sd_needs_a_local_checkpoint_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a local diffusers checkpoint"):
        StableDiffusionBackend(tmp_path / "empty")
    with pytest.raises(ConfigError, match="generator not found"):
        load_backend(tmp_path / "runwayml/stable-diffusion-v1-5")
