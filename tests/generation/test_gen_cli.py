import json
import re

import pytest
from click.testing import CliRunner

from genaug.cache import SyntheticCache
from genaug.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def test_plan_command_writes_a_plan_and_prints_the_table(runner, shapes_dir, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "negative_prompt: blurry\nattributes:\n  burn_level: {light: 40, medium: 35, dark: 25}\n"
    )
    out = tmp_path / "plan.json"
    result = runner.invoke(
        main,
        [
            "plan",
            str(shapes_dir),
            "--target-per-class",
            "12",
            "--config",
            str(config),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "balance check: OK" in result.output and "total images to generate: 15" in result.output
    plan = json.loads(out.read_text())
    assert plan["classes"]["ring"]["attributes"]["burn_level"]["quotas"] == {
        "light": 4,
        "medium": 3,
        "dark": 2,
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "{cfg}"], "unknown key(s) colours"),
        (["--config", "{missing}"], "config file not found"),
        (["--min-threshold", "50"], "cannot exceed --target-per-class"),
    ],
)
def test_plan_errors_are_one_line(runner, shapes_dir, tmp_path, args, message):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"colours": ["red"]}))
    args = [a.format(cfg=cfg, missing=tmp_path / "nope.yaml") for a in args]
    result = runner.invoke(
        main,
        [
            "plan",
            str(shapes_dir),
            "--target-per-class",
            "10",
            "--out",
            str(tmp_path / "p.json"),
            *args,
        ],
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.json").exists()


def test_generate_errors_are_one_line(runner, tiny_generator, tiny_sd, tmp_path):
    missing = runner.invoke(
        main,
        [
            "generate",
            "--plan",
            str(tmp_path / "nope.json"),
            "--generator",
            str(tiny_generator),
            "--synthetic-cache",
            str(tmp_path / "c"),
        ],
    )
    assert missing.exit_code == 2 and "Error: plan not found" in missing.output
    (tmp_path / "plan.json").write_text("{}")
    for extra in ([], ["--generator", str(tiny_generator), "--sd-model", str(tiny_sd)]):
        result = runner.invoke(
            main,
            [
                "generate",
                "--plan",
                str(tmp_path / "plan.json"),
                "--synthetic-cache",
                str(tmp_path / "c"),
                *extra,
            ],
        )
        assert result.exit_code == 2 and "exactly one of --generator" in result.output
    bad = runner.invoke(
        main,
        [
            "generate",
            "--plan",
            str(tmp_path / "plan.json"),
            "--generator",
            str(tiny_generator),
            "--synthetic-cache",
            str(tmp_path / "c"),
        ],
    )
    assert bad.exit_code == 2 and "is not a genaug plan" in bad.output
    assert "Traceback" not in bad.output


def test_fit_generator_and_generate_commands(runner, shapes_dir, tmp_path, monkeypatch):
    generator = tmp_path / "models" / "generator"
    result = runner.invoke(
        main,
        [
            "fit-generator",
            str(shapes_dir),
            "--out",
            str(generator),
            "--resolution",
            "16",
            "--model-size",
            "tiny",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--prediction-type",
            "v_prediction",
            "--snr-gamma",
            "5",
            "--lr-schedule",
            "cosine",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "for 2 steps" in result.output and (generator / "loss_log.csv").is_file()
    config = json.loads((generator / "train_config.json").read_text())
    assert (config["prediction_type"], config["snr_gamma"], config["lr_schedule"]) == (
        "v_prediction", 5.0, "cosine")
    plan = tmp_path / "plan.json"
    assert (
        runner.invoke(
            main,
            [
                "plan",
                str(shapes_dir),
                "--target-per-class",
                "8",
                "--min-threshold",
                "4",
                "--out",
                str(plan),
            ],
        ).exit_code
        == 0
    )
    # a user gate given on the command line
    (tmp_path / "my_gates.py").write_text(
        "from genaug.generation import FunctionGate\n"
        "def bright():\n"
        "    return FunctionGate('bright', lambda image, c: float(image.max()), threshold=0)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = tmp_path / "cache"
    args = [
        "generate",
        "--plan",
        str(plan),
        "--generator",
        str(generator),
        "--synthetic-cache",
        str(cache),
        "--no-pixel-check",
        "--steps",
        "2",
        "--blur-min",
        "5",
        "--structure-min",
        "0",
        "--gate",
        "my_gates:bright",
        "--quiet",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "requested" in result.output and "cache:" in result.output
    records = SyntheticCache(cache).records
    assert (
        len(records)
        + json.loads((cache / "generation_summary.json").read_text())["totals"]["exhausted"]
        == 7
    )
    assert all(set(r["quality"]) == {"blur", "bright", "phash"} for r in records)
    env = json.loads((cache / "env_report.json").read_text())
    assert env["parameters"]["gates"] == ["my_gates:bright"]
    bad_gate = runner.invoke(main, [*args[:-3], "--gate", "my_gates:nothing"])
    assert bad_gate.exit_code == 2 and "cannot load gate" in bad_gate.output


def test_generate_that_accepts_nothing_exits_non_zero_with_one_line(runner, tiny_generator,
                                                                    shapes_dir, tmp_path,
                                                                    monkeypatch):
    plan = tmp_path / "plan.json"
    runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8", "--out", str(plan)])
    (tmp_path / "strict_gates.py").write_text(
        "from genaug.generation import FunctionGate\n"
        "def never():\n"
        "    return FunctionGate('never', lambda image, c: 0.0, threshold=1.0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(main, ["generate", "--plan", str(plan), "--generator",
                                  str(tiny_generator), "--synthetic-cache", str(tmp_path / "c"),
                                  "--no-pixel-check", "--steps", "1", "--max-retries", "0",
                                  "--gate", "strict_gates:never", "--quiet"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "none of the 7 planned images was accepted" in errors[0]
    assert "never 7" in errors[0] and "Traceback" not in result.output


def test_generate_errors_name_the_command_line_flags(runner, tiny_generator, shapes_dir,
                                                     tmp_path):
    plan = tmp_path / "plan.json"
    runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8", "--out", str(plan)])
    # the undertrained generator makes noise, which the pixel check refuses
    result = runner.invoke(main, ["generate", "--plan", str(plan), "--generator",
                                  str(tiny_generator), "--synthetic-cache", str(tmp_path / "c"),
                                  "--steps", "1", "--quiet"])
    assert result.exit_code == 2 and "Error: the generated batch" in result.output
    assert "--sampler ddim" in result.output and "--no-pixel-check" in result.output
    assert "pixel_check" not in result.output and "`" not in result.output
    assert not (tmp_path / "c").exists()
    bad = runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "4",
                               "--min-threshold", "5", "--out", str(tmp_path / "p.json")])
    assert "Error: --min-threshold (5) cannot exceed --target-per-class (4)" in bad.output


def test_generate_max_seconds_stops_and_says_how_to_continue(runner, tiny_generator,
                                                             shapes_dir, tmp_path):
    plan = tmp_path / "plan.json"
    runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8", "--out", str(plan)])
    args = ["generate", "--plan", str(plan), "--generator", str(tiny_generator),
            "--synthetic-cache", str(tmp_path / "c"), "--no-pixel-check", "--steps", "1",
            "--blur-min", "0", "--structure-min", "0", "--quiet"]
    stopped = runner.invoke(main, [*args, "--max-seconds", "0.001"])  # before the first batch
    assert "stopped after --max-seconds 0.001: 7 images pending" in stopped.output
    assert stopped.exit_code == 1 and "none of the 7 planned images" in stopped.output
    finished = runner.invoke(main, args)
    assert finished.exit_code == 0, finished.output
    assert " of 7 accepted" in finished.output and "0 pending" in finished.output


def test_a_variation_plan_is_generated_at_its_own_strength(runner, tiny_generator, shapes_dir,
                                                           tmp_path):
    plan = tmp_path / "plan.json"
    made = runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8",
                                "--variation-strength", "0.4", "--out", str(plan)])
    assert made.exit_code == 0, made.output
    assert "variations of training images: 7 (strength 0.4" in made.output
    result = runner.invoke(main, ["generate", "--plan", str(plan), "--generator",
                                  str(tiny_generator), "--synthetic-cache", str(tmp_path / "c"),
                                  "--no-pixel-check", "--steps", "2", "--blur-min", "0",
                                  "--structure-min", "0", "--phash-max", "-1", "--quiet"])
    assert result.exit_code == 0, result.output
    records = SyntheticCache(tmp_path / "c").records
    assert len(records) == 7 and all(r["strength"] == 0.4 and r["source_id"] for r in records)
    other = runner.invoke(main, ["generate", "--plan", str(plan), "--generator",
                                 str(tiny_generator), "--synthetic-cache", str(tmp_path / "d"),
                                 "--strength", "0.6", "--quiet"])
    assert other.exit_code == 2 and other.output.count("Error:") == 1
    assert "plan makes variations at strength 0.4" in other.output
    bad = runner.invoke(main, ["plan", str(shapes_dir), "--target-per-class", "8",
                               "--variation-strength", "0", "--out", str(tmp_path / "p.json")])
    assert bad.exit_code == 2 and not (tmp_path / "p.json").exists()


def test_generate_keeps_its_old_flags_for_one_release_out_of_the_help(runner, tmp_path):
    old = runner.invoke(main, ["generate", "--plan", str(tmp_path / "plan.json"),
                               "--generator", str(tmp_path), "--cache", str(tmp_path / "c"),
                               "--select", "class-margin"])
    assert old.exit_code == 2
    assert "Error: --synthetic-select class-margin and --select-model go together" in old.output
    shown = runner.invoke(main, ["generate", "--help"]).output
    assert "--synthetic-cache" in shown and "--synthetic-select" in shown
    assert "--cache" not in shown and not re.search(r"--select(?![-\w])", shown)


def test_every_flag_of_every_gate_setting_is_an_option_of_generate():
    from genaug.generation import GateSpec

    options = {opt: param for param in main.get_command(None, "generate").params
               for opt in param.opts}
    defaults = GateSpec.defaults()
    assert set(GateSpec.flags()) == set(defaults) - {"extra_gates"}
    for name, flag in GateSpec.flags().items():
        param = options[flag.name]
        assert param.name == name and param.help == flag.help  # messages name the field
        if flag.field_default and flag.kind is not bool:
            assert param.default == defaults[name], flag.name


def test_an_added_gate_setting_becomes_an_option_and_reaches_the_spec(monkeypatch):
    """The generated options and their reading back know no gate setting by name."""
    from dataclasses import dataclass, field

    import click

    import genaug.generation
    from genaug.cli._options import gate_options, gate_spec_from_options
    from genaug.generation import GateFlag, GateSpec

    @dataclass(frozen=True)
    class Extended(GateSpec):
        colour_min: float | None = field(default=0.1, metadata={"flag": GateFlag(
            "--colour-min", "Least saturation (0 turns it off).", low=0, high=1, off=0)})

    monkeypatch.setattr(genaug.generation, "GateSpec", Extended)
    seen = {}

    @click.command()
    @gate_options
    def command(**options):
        seen["spec"] = gate_spec_from_options(options)
        seen["rest"] = options

    result = CliRunner().invoke(command, ["--colour-min", "0.3", "--phash-max", "-1",
                                          "--select", "class-margin"])
    assert result.exit_code == 0, result.output
    assert seen["spec"] == Extended(colour_min=0.3, phash_max=None, select_method="class-margin")
    assert seen["rest"] == {}
    assert CliRunner().invoke(command, ["--colour-min", "0"]).exit_code == 0
    assert seen["spec"].colour_min is None  # its off value leaves the gate out
    assert "--colour-min" in CliRunner().invoke(command, ["--help"]).output
    added = next(param for param in command.params if param.name == "colour_min")
    assert added.default == 0.1 and added.show_default
    bad = CliRunner().invoke(command, ["--colour-min", "2"])
    assert bad.exit_code == 2 and "Invalid value for '--colour-min'" in bad.output
