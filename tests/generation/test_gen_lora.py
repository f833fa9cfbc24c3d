"""``genaug fit-lora``: a LoRA adapter of a tiny random Stable Diffusion, trained on CPU, saved
in diffusers' format, reloaded by the sd backend, ``generate`` and the live producer."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genaug.cache import SyntheticCache
from genaug.cli import main
from genaug.exceptions import CacheError, ConfigError
from genaug.generation import (
    GenerationRequest,
    fit_lora,
    generate_cache,
    load_backend,
    make_plan,
)
from genaug.generation._lora import LORA_CONFIG, LORA_WEIGHTS, adapter_sha256
from genaug.generation._utils import weights_sha256

TINY = dict(resolution=16, rank=4, alpha=8.0, batch_size=4, progress=False, log_every=1)
# A high learning rate, so that three steps move the outputs visibly.
STEPS = dict(max_steps=3, learning_rate=1e-2)


def train(shapes_dir, tiny_sd, out, **options):
    return fit_lora(shapes_dir, sd_model=tiny_sd, out_dir=out, **{**TINY, **STEPS, **options})


@pytest.fixture(scope="module")
def adapter(shapes_dir, tiny_sd, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "adapter"
    result = train(shapes_dir, tiny_sd, out)
    assert result.steps == 3 and not result.interrupted
    return out


def test_the_adapter_is_diffusers_lora_with_a_config(adapter, tiny_sd):
    assert sorted(p.name for p in adapter.parent.iterdir()) == ["adapter"]  # no temp folder
    config = json.loads((adapter / LORA_CONFIG).read_text())
    assert config["base_model_hash"] == weights_sha256(tiny_sd)
    assert config["adapter_sha256"] == adapter_sha256(adapter / LORA_WEIGHTS)
    assert config["classes"] == ["bar", "disc", "ring"]
    assert config["class_counts"] == {"bar": 6, "disc": 12, "ring": 3}
    assert config["prompts"]["ring"] == "a photo of a ring"
    assert (config["rank"], config["alpha"], config["steps"], config["seed"]) == (4, 8.0, 3, 0)
    assert (config["resolution"], config["learning_rate"]) == (16, 1e-2)
    assert config["interrupted"] is False and config["precision"] == "fp32"
    from safetensors import safe_open

    with safe_open(str(adapter / LORA_WEIGHTS), framework="pt") as weights:
        lora_config = json.loads(weights.metadata()["lora_adapter_metadata"])
    assert (lora_config["unet.r"], lora_config["unet.lora_alpha"]) == (4, 8.0)
    # peft keeps target_modules as a set: saved in a fixed order, the same run hashes the same
    assert lora_config["unet.target_modules"] == ["to_k", "to_out.0", "to_q", "to_v"]
    log = (adapter / "loss_log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds,images_seen" and len(log) == 4

    # diffusers reads it, alpha / rank included: the fused weight is W + alpha/r * B @ A.
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, local_files_only=True)
    layer = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    base = dict(pipe.unet.named_modules())[layer].weight.detach().clone()
    pipe.load_lora_weights(adapter)
    assert pipe.get_active_adapters()
    pipe.fuse_lora()
    weights = load_file(adapter / LORA_WEIGHTS)
    down, up = (weights[f"unet.{layer}.lora.{part}.weight"] for part in ("down", "up"))
    fused = dict(pipe.unet.named_modules())[layer].weight.detach()
    assert up.abs().max() > 0  # trained (peft starts B at zero)
    torch.testing.assert_close(fused, base + 8.0 / 4 * up @ down)


def test_same_seed_same_adapter_and_another_seed_another(adapter, shapes_dir, tiny_sd,
                                                         tmp_path):
    again = train(shapes_dir, tiny_sd, tmp_path / "again")
    other = train(shapes_dir, tiny_sd, tmp_path / "other", seed=1)
    assert again.adapter_sha256 == adapter_sha256(adapter / LORA_WEIGHTS)
    assert other.adapter_sha256 != again.adapter_sha256


def test_the_sd_backend_fuses_it_changes_images_and_records_its_hash(adapter, tiny_sd):
    request = GenerationRequest(class_name="ring", seed=5)
    options = dict(device="cpu", steps=2, guidance_scale=3.0)
    with load_backend(tiny_sd, **options) as plain:
        base = plain.generate_batch([request])[0]
    with load_backend(tiny_sd, lora=adapter, **options) as adapted:
        made = adapted.generate_batch([request, request])
        info = adapted.info()
    sha = adapter_sha256(adapter / LORA_WEIGHTS)
    assert info["lora_sha256"] == sha and info["lora"] == str(adapter.resolve())
    assert info["model_hash"] == base.provenance["generator"]["model_hash"]
    assert made[0].provenance["generator"]["lora_sha256"] == sha
    assert "lora_sha256" not in base.provenance["generator"]
    assert np.array_equal(made[0].image, made[1].image)  # still deterministic per seed
    assert not np.array_equal(made[0].image, base.image)


def test_generate_records_the_adapter_and_will_not_resume_with_another(adapter, shapes_dir,
                                                                       tiny_sd, tmp_path):
    plan = tmp_path / "plan.json"
    cache = tmp_path / "cache"
    runner = CliRunner()
    made = runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "4",
                                "--out", str(plan)])
    assert made.exit_code == 0, made.output
    common = ["generate", "--plan", str(plan), "--sd-model", str(tiny_sd), "--synthetic-cache",
              str(cache), "--steps", "2", "--blur-min", "0", "--structure-min", "0",
              "--phash-max", "-1", "--device", "cpu", "--quiet"]
    result = runner.invoke(main, [*common, "--lora", str(adapter)])
    assert result.exit_code == 0, result.output
    sha = adapter_sha256(adapter / LORA_WEIGHTS)
    records = SyntheticCache(cache).records
    assert len(records) == 1 and records[0]["generator"]["lora_sha256"] == sha
    assert SyntheticCache(cache).provenance()["generators"][0]["lora_sha256"] == sha
    env = json.loads((cache / "env_report.json").read_text())
    assert env["parameters"]["lora"] == str(adapter)

    without = runner.invoke(main, common)
    assert without.exit_code == 2 and "different settings (generator)" in without.stderr
    plan_obj = make_plan(shapes_dir, target_per_class=4)
    with load_backend(tiny_sd, device="cpu", steps=2) as plain, \
            pytest.raises(CacheError, match="different settings"):
        generate_cache(plan_obj, backend=plain, cache_dir=cache, progress=False)
    assert len(SyntheticCache(cache).records) == 1


def test_the_live_producer_loads_the_adapter(adapter, shapes_dir, tiny_sd, tmp_path):
    from genaug.data import DatasetIndex
    from genaug.live import start_live_source

    source = start_live_source(tiny_sd, DatasetIndex.load(shapes_dir), image_size=(16, 16),
                               color_mode="rgb", cache_dir=tmp_path / "live", device="cpu",
                               producer="thread", lora=adapter, log=lambda message: None)
    try:
        info = source.worker.backend.info()
    finally:
        source.close()
    assert info["lora_sha256"] == adapter_sha256(adapter / LORA_WEIGHTS)


@pytest.mark.parametrize("live, message", [
    (["--live-lora", "{adapter}"], "--live-lora needs --live-generator"),
    (["--live-generator", "{generator}", "--live-lora", "{adapter}"],
     "--live-lora adapts a Stable Diffusion checkpoint"),
    (["--live-generator", "{sd}", "--live-lora", "{missing}"], "--live-lora"),
])
def test_live_lora_is_checked_before_training(adapter, shapes_dir, tiny_sd, tiny_generator,
                                              tmp_path, live, message):
    live = [a.format(adapter=adapter, generator=tiny_generator, sd=tiny_sd,
                     missing=tmp_path / "nope") for a in live]
    result = CliRunner().invoke(main, ["train", str(shapes_dir), *live, "--live-device", "cpu",
                                       "--output-dir", str(tmp_path / "o"),
                                       "--model-dir", str(tmp_path / "m")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


def test_ctrl_c_saves_what_was_learned(shapes_dir, tiny_sd, tmp_path, monkeypatch):
    clip = torch.nn.utils.clip_grad_norm_
    calls = []

    def interrupt_at_step_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", interrupt_at_step_three)
    result = train(shapes_dir, tiny_sd, tmp_path / "a", max_steps=10)
    assert result.interrupted and result.steps == 2
    config = json.loads((tmp_path / "a" / LORA_CONFIG).read_text())
    assert config["interrupted"] is True and config["steps"] == 2
    assert "interrupted" in result.describe()


def test_an_interrupt_before_the_first_step_or_while_saving_leaves_nothing(
        adapter, shapes_dir, tiny_sd, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", interrupt)
    with pytest.raises(ConfigError, match="before the first step; nothing was saved"):
        train(shapes_dir, tiny_sd, tmp_path / "a")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    from diffusers import StableDiffusionPipeline

    def torn_save(save_directory, **kwargs):
        (save_directory / LORA_WEIGHTS).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(StableDiffusionPipeline, "save_lora_weights", torn_save)
    before = {p.name: p.read_bytes() for p in adapter.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        train(shapes_dir, tiny_sd, adapter)  # replacing an adapter: the old one stays
    assert {p.name: p.read_bytes() for p in adapter.iterdir()} == before
    assert sorted(p.name for p in adapter.parent.iterdir()) == ["adapter"]


@pytest.mark.parametrize("option, message", [
    ({"rank": 0}, "`rank` must be at least 1"), ({"alpha": 0.0}, "`alpha` must be positive"),
    ({"max_steps": None}, "give `max_steps` or `max_seconds`"),
    ({"learning_rate": -1.0}, "`learning_rate` must be positive"),
    ({"batch_size": 0}, "`batch_size` must be at least 1"),
])
def test_bad_options_from_python_name_the_option(shapes_dir, tiny_sd, tmp_path, option,
                                                 message):
    with pytest.raises(ConfigError, match=message):
        train(shapes_dir, tiny_sd, tmp_path / "a", **option)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def bad_inputs(tmp_path, shapes_dir, tiny_sd):
    """Paths for the bad-input cases; outputs go under ``outs/``, which must stay empty."""
    inputs, outs = tmp_path / "inputs", tmp_path / "outs"
    (inputs / "no_images" / "cat").mkdir(parents=True)
    (inputs / "no_images" / "cat" / "notes.txt").write_text("not an image")
    (inputs / "not_sd").mkdir()
    (inputs / "not_sd" / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
         "scheduler": ["diffusers", "DDPMScheduler"]}))
    outs.mkdir()
    (outs / "blocker").write_text("keep")
    (outs / "data").mkdir()
    (outs / "data" / "mine.txt").write_text("keep")
    return {"inputs": inputs, "outs": outs, "data": shapes_dir, "sd": tiny_sd}


@pytest.mark.parametrize("args, message", [
    (["{data}", "--sd-model", "{inputs}/missing", "--out", "{outs}/a"], "not found"),
    (["{inputs}/no_images", "--sd-model", "{sd}", "--out", "{outs}/a"], "no usable images"),
    (["{data}", "--sd-model", "{inputs}/not_sd", "--out", "{outs}/a"],
     "holds a DDPMPipeline, not a Stable Diffusion"),
    (["{data}", "--sd-model", "{inputs}", "--out", "{outs}/a"], "no model_index.json"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/a", "--rank", "0"],
     "Invalid value for '--rank'"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/a", "--rank", "-3"],
     "Invalid value for '--rank'"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/blocker/sub"], "cannot write to"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/blocker"], "cannot write to"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/data"],
     "holding something other than a LoRA adapter"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/a", "--prompt-template", "a {{colour}}"],
     "--prompt-template"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/a", "--resolution", "18"],
     "--resolution must be a multiple of 4"),
    (["{data}", "--sd-model", "{sd}", "--out", "{outs}/a", "--max-steps", "0"],
     "Invalid value for '--max-steps'"),
])
def test_bad_input_is_one_error_line_and_nothing_written(bad_inputs, args, message):
    args = [a.format(**bad_inputs) for a in args]
    result = CliRunner().invoke(main, ["fit-lora", *args, "--quiet"])
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    outs = bad_inputs["outs"]
    assert sorted(p.name for p in outs.iterdir()) == ["blocker", "data"]
    assert (outs / "blocker").read_text() == "keep"
    assert [p.name for p in (outs / "data").iterdir()] == ["mine.txt"]


def test_without_peft_one_line_names_the_extra(adapter, shapes_dir, tiny_sd, tmp_path,
                                               monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    result = CliRunner().invoke(main, ["fit-lora", str(shapes_dir), "--sd-model", str(tiny_sd),
                                       "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "Error: peft is not installed" in result.stderr
    assert "pip install 'genaug[lora]'" in result.stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"genaug\[lora\]"):
        load_backend(tiny_sd, device="cpu", lora=adapter)


def test_an_adapter_is_checked_against_its_base_model_and_its_config(adapter, tiny_sd,
                                                                     tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / LORA_WEIGHTS).write_bytes((adapter / LORA_WEIGHTS).read_bytes())
    config = json.loads((adapter / LORA_CONFIG).read_text())
    for change, message in (({"base_model_hash": "0" * 64}, "trained on another base model"),
                            ({"adapter_sha256": "0" * 64}, "damaged or replaced"),
                            ({"format": "other"}, "is not a genaug-lora/1 file")):
        (copy / LORA_CONFIG).write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=message):
            load_backend(tiny_sd, device="cpu", lora=copy)
    (copy / LORA_CONFIG).write_text(json.dumps(config))
    (copy / LORA_WEIGHTS).write_bytes(b"torn")
    with pytest.raises(ConfigError, match="cannot read the LoRA weights"):
        load_backend(tiny_sd, device="cpu", lora=copy)
    (copy / LORA_WEIGHTS).write_bytes((adapter / LORA_WEIGHTS).read_bytes())
    with pytest.raises(ConfigError, match="--lora .* not found"):
        load_backend(tiny_sd, device="cpu", lora=tmp_path / "missing")
    (copy / LORA_CONFIG).unlink()  # a diffusers LoRA folder made elsewhere loads as it is
    with load_backend(tiny_sd, device="cpu", steps=2, lora=copy) as backend:
        assert backend.info()["lora_sha256"] == config["adapter_sha256"]


def test_generate_lora_needs_sd_model(adapter, tiny_generator, tmp_path):
    result = CliRunner().invoke(main, ["generate", "--plan", str(tmp_path / "p.json"),
                                       "--generator", str(tiny_generator), "--lora",
                                       str(adapter), "--synthetic-cache", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--lora adapts a Stable Diffusion" in result.stderr
    assert not (tmp_path / "c").exists()
