"""Progressive distillation of a tiny DDPM (``genaug distill-generator``) and the quality rule
of the generation benchmark."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from genaug.cache import SyntheticCache
from genaug.cli import main
from genaug.exceptions import ConfigError
from genaug.generation import distill_generator, load_backend
from genaug.generation._ddpm_distill import (
    _DistillRun,
    ddim_grid,
    ddim_step,
    student_target,
)
from genaug.generation._ddpm_model import build_sampler, build_train_scheduler, load_generator

ROOT = Path(__file__).resolve().parents[2]
TINY = {"max_steps": 2, "batch_size": 4, "progress": False, "log_every": 1}


@pytest.fixture(scope="module")
def distilled(tiny_generator, tmp_path_factory) -> Path:
    """The tiny generator distilled from 8 DDIM steps to 2 (two rounds)."""
    out = tmp_path_factory.mktemp("distilled") / "fast"
    distill_generator(tiny_generator, out_dir=out, steps=2, teacher_steps=8, **TINY)
    return out


def test_the_distilled_generator_records_its_teacher_rounds_and_steps(distilled,
                                                                      tiny_generator):
    meta = json.loads((distilled / "genaug_generator.json").read_text())
    assert meta["format"] == "genaug-generator/1"
    assert meta["sampling"] == {"sampler": "ddim", "steps": 2, "guidance_scale": 1.0}
    record = meta["distillation"]
    teacher = load_generator(tiny_generator)
    assert record["teacher"] == str(teacher.path) and record["teacher_hash"] == teacher.model_hash
    assert record["teacher_steps"] == 8 and record["steps"] == 2 and record["rounds"] == 2
    assert [r["steps"] for r in record["per_round"]] == [4, 2]
    assert len(record["losses"]) == 2 and all(np.isfinite(record["losses"]))
    assert record["guidance_scale"] == 2.0 and record["optimisation_steps"] == 4
    scheduler = json.loads((distilled / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    log = (distilled / "loss_log.csv").read_text().splitlines()
    assert log[0].startswith("round,sampling_steps,step,loss")
    assert [row.split(",")[:3] for row in log[1:]] == [["1", "4", "1"], ["1", "4", "2"],
                                                       ["2", "2", "1"], ["2", "2", "2"]]


def test_the_distilled_generator_samples_at_its_steps_deterministically(distilled):
    first = load_backend(distilled, pixel_check=False)
    assert (first.sampler_name, first.steps, first.guidance_scale) == ("ddim", 2, 1.0)
    assert first.info()["sampler"] == "ddim"
    images = first.generate("disc", 3, seeds=[0, 1, 2])
    again = load_backend(distilled, pixel_check=False).generate("disc", 3, seeds=[0, 1, 2])
    assert all(np.array_equal(a.image, b.image) for a, b in zip(images, again))
    assert not np.array_equal(images[0].image, images[1].image)
    assert images[0].provenance["steps"] == 2 and images[0].provenance["guidance_scale"] == 1.0
    with pytest.warns(UserWarning, match="distilled with guidance 2 built in"):
        guided = load_backend(distilled, pixel_check=False, guidance_scale=3.0)
    assert guided.guidance_scale == 1.0


def test_a_fitted_generator_keeps_todays_default_sampling(tiny_generator):
    backend = load_backend(tiny_generator, pixel_check=False)
    assert (backend.sampler_name, backend.steps, backend.guidance_scale) == ("dpm++", 20, 2.0)


def test_distillation_is_deterministic_for_a_seed(tiny_generator, distilled, tmp_path):
    again = tmp_path / "again"
    distill_generator(tiny_generator, out_dir=again, steps=2, teacher_steps=8, **TINY)
    assert load_generator(again).model_hash == load_generator(distilled).model_hash
    other = tmp_path / "other"
    distill_generator(tiny_generator, out_dir=other, steps=2, teacher_steps=8, seed=1, **TINY)
    assert load_generator(other).model_hash != load_generator(distilled).model_hash


def test_a_distilled_generator_can_be_halved_again(distilled, tmp_path):
    result = distill_generator(distilled, out_dir=tmp_path / "one", steps=1, **TINY)
    assert (result.sampling_steps, result.rounds) == (1, 1)
    meta = json.loads((tmp_path / "one" / "genaug_generator.json").read_text())
    assert meta["distillation"]["teacher_steps"] == 2 and meta["sampling"]["steps"] == 1
    assert meta["distillation"]["guidance_scale"] == 1.0  # the guidance is in the teacher


@pytest.mark.parametrize(("interrupted_call", "steps", "rounds"), [
    (4, 2, 2),  # in round two: its student, at two steps
    (3, 4, 1),  # before round two's first step: round one's student, at four steps
])
def test_ctrl_c_saves_the_student_it_has(tiny_generator, tmp_path, monkeypatch,
                                         interrupted_call, steps, rounds):
    step, calls = _DistillRun._step, []

    def interrupt(self):
        calls.append(1)
        if len(calls) == interrupted_call:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(_DistillRun, "_step", interrupt)
    result = distill_generator(tiny_generator, out_dir=tmp_path / "g", steps=2,
                               teacher_steps=8, **TINY)
    assert result.interrupted and (result.sampling_steps, result.rounds) == (steps, rounds)
    meta = json.loads((tmp_path / "g" / "genaug_generator.json").read_text())
    assert meta["sampling"]["steps"] == steps and meta["interrupted"]
    assert meta["distillation"]["rounds"] == rounds
    assert meta["distillation"]["rounds_planned"] == 2


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_the_student_target_is_the_clean_image_of_diffusers_ddim_step(steps):
    """What the student learns, stepped by diffusers' DDIM sampler on the student's grid,
    lands where the teacher's two steps did."""
    import torch

    schedule = build_train_scheduler(prediction_type="v_prediction")
    sampler = build_sampler(schedule.config, "ddim")
    sampler.set_timesteps(steps)
    alphas = schedule.alphas_cumprod
    generator = torch.Generator().manual_seed(steps)
    grid, mids, nexts = ddim_grid(schedule.config, steps)
    assert grid.tolist() == sampler.timesteps.tolist()
    assert ((nexts < mids) & (mids < grid) & (mids >= 0)).all()
    for t, t_next in zip(grid, nexts.tolist()):
        alpha = alphas[t].view(1, 1, 1, 1)
        alpha_next = alphas[t_next] if t_next >= 0 else torch.tensor(1.0)
        z = torch.randn((2, 1, 4, 4), generator=generator)
        x0 = torch.rand((2, 1, 4, 4), generator=generator) * 1.8 - 0.9
        z_next = ddim_step(x0, (z - alpha.sqrt() * x0) / (1 - alpha).sqrt(), alpha_next)
        target = student_target(z, z_next, alpha, alpha_next)
        velocity = (alpha.sqrt() * z - target) / (1 - alpha).sqrt()
        stepped = sampler.step(velocity, t, z).prev_sample
        torch.testing.assert_close(stepped, z_next, atol=1e-4, rtol=1e-4)


def test_distillation_options_are_checked(tiny_generator, distilled, tmp_path):
    out = tmp_path / "g"
    with pytest.raises(ConfigError, match="power of two"):
        distill_generator(tiny_generator, out_dir=out, steps=3, **TINY)
    with pytest.raises(ConfigError, match=r"`steps` \(8\) must be fewer than the teacher's 8"):
        distill_generator(tiny_generator, out_dir=out, steps=8, teacher_steps=8, **TINY)
    with pytest.raises(ConfigError, match="fewer than the teacher's 2"):
        distill_generator(distilled, out_dir=out, steps=2, **TINY)
    with pytest.raises(ConfigError, match="was distilled to 2 steps"):
        distill_generator(distilled, out_dir=out, steps=1, teacher_steps=4, **TINY)
    with pytest.raises(ConfigError, match="generator not found"):
        distill_generator(tmp_path / "missing", out_dir=out, steps=2, **TINY)
    with pytest.raises(ConfigError, match="names no training images"):
        distill_generator(_without_data(tiny_generator, tmp_path), out_dir=out, steps=2,
                          **TINY)
    assert not out.exists()


def _without_data(generator: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(generator, copy)
    config = json.loads((copy / "train_config.json").read_text())
    (copy / "train_config.json").write_text(json.dumps({**config, "data": None}))
    return copy


def test_distill_command_saves_and_refuses_bad_input_with_one_line(tiny_generator, tmp_path):
    runner = CliRunner()
    out = tmp_path / "fast"
    made = runner.invoke(main, ["distill-generator", str(tiny_generator), "--out", str(out),
                                "--steps", "4", "--teacher-steps", "8", "--max-steps", "1",
                                "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert made.exit_code == 0, made.output
    assert "into a 4-step DDIM sampler in 1 round(s)" in made.output
    for args, message in ((["--steps", "3"], "power of two"),
                          (["--steps", "64"], "must be fewer than the teacher's 64")):
        bad = runner.invoke(main, ["distill-generator", str(tiny_generator), "--out",
                                   str(tmp_path / "bad"), *args, "--quiet"])
        assert bad.exit_code == 2 and bad.output.count("Error:") == 1, bad.output
        assert message in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(main, ["distill-generator", str(tmp_path / "none"), "--out",
                                   str(tmp_path / "bad"), "--steps", "2"])
    assert missing.exit_code == 2 and missing.output.count("Error:") == 1
    assert "generator not found" in missing.output
    assert not (tmp_path / "bad").exists()


def test_generate_samples_a_distilled_generator_at_its_steps_by_default(distilled, shapes_dir,
                                                                        tmp_path):
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8", "--out", str(plan)])
    result = runner.invoke(main, ["generate", "--plan", str(plan), "--generator",
                                  str(distilled), "--synthetic-cache", str(tmp_path / "c"),
                                  "--no-pixel-check", "--blur-min", "0", "--structure-min",
                                  "0", "--phash-max", "-1", "--quiet"])
    assert result.exit_code == 0, result.output
    records = SyntheticCache(tmp_path / "c").records
    assert records and {r["steps"] for r in records} == {2}
    assert {r["guidance_scale"] for r in records} == {1.0}
    assert {r["generator"]["sampler"] for r in records} == {"ddim"}


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "generation_throughput", ROOT / "benchmarks" / "generation_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("kid", "accuracy", "held"), [
    (2.0, 90.0, True),     # equal
    (2.2, 89.0, True),     # at both limits
    (1.0, 95.0, True),     # better on both
    (2.21, 90.0, False),   # KID more than 10 % above
    (2.0, 88.9, False),    # accuracy more than 1 point below
    (3.0, 99.0, False),    # better accuracy does not buy worse KID
])
def test_the_benchmarks_quality_rule(kid, accuracy, held):
    rule = _benchmark().quality_held
    assert rule(kid=kid, accuracy=accuracy, reference_kid=2.0,
                reference_accuracy=90.0) is held


def test_the_quality_rule_measures_a_negative_reference_kid_by_its_magnitude():
    rule = _benchmark().quality_held
    assert rule(kid=-0.95, accuracy=90.0, reference_kid=-1.0, reference_accuracy=90.0)
    assert not rule(kid=-0.85, accuracy=90.0, reference_kid=-1.0, reference_accuracy=90.0)
