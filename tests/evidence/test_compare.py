"""``genaug compare``: arms, aggregation, verdicts, warnings and the files it writes."""

import json

import pytest
from click.testing import CliRunner

from genaug.cli import main
from genaug.evidence import compare_markdown, convergence, parse_arms, run_compare, summarize
from genaug.evidence._arms import arm_config
from genaug.evidence._summary import rarest_classes
from genaug.exceptions import ConfigError
from genaug.sampling import SyntheticRecipe
from training.pipeline import TrainConfig

CLASSES = ("a", "b", "c", "d")


def fake_metrics(balanced_accuracy, *, seed=0, losses=(1.0, 0.5, 0.4, 0.39, 0.39, 0.39)):
    """A metrics dict shaped like run_training's, with chosen scores."""
    return {
        "balanced_accuracy": balanced_accuracy,
        "macro_f1": balanced_accuracy - 0.05,
        "cohen_kappa": balanced_accuracy - 0.1,
        "per_class": {c: {"precision": 0.5, "recall": balanced_accuracy if c == "d" else 0.9,
                          "f1": 0.5, "support": 5} for c in CLASSES},
        "train_counts": {"a": 100, "b": 50, "c": 20, "d": 5},
        "history": {"loss": list(losses), "val_loss": list(losses)},
    }


def fake_runner(scores, *, fail=()):
    """runner(config) that returns ``scores[(arm-ish, seed)]`` without training."""

    def run(config):
        arm = config.model_name.split("_seed")[0].removeprefix("compare_")
        if (arm, config.seed) in fail:
            raise RuntimeError("out of memory (simulated)")
        return fake_metrics(scores[(arm, config.seed)], seed=config.seed)

    return run


def test_arm_configs_differ_only_in_the_arm_fields(tmp_path):
    base = TrainConfig(data_dir="d", epochs=7, image_size=24,
                       synthetic=SyntheticRecipe(ratio=0.3, mixup=True))
    arms = {a.name: a for a in parse_arms("plain,class_weights,balanced,balanced_synthetic")}
    plain = arm_config(base, arms["plain"], seed=3, output_dir=tmp_path)
    weights = arm_config(base, arms["class_weights"], seed=3, output_dir=tmp_path)
    synthetic = arm_config(base, arms["balanced_synthetic"], seed=3, output_dir=tmp_path,
                           synthetic_cache="cache")
    assert (plain.balanced, plain.class_weights, plain.synthetic_cache) == (False, False, None)
    assert weights.class_weights and not weights.balanced
    assert synthetic.balanced and synthetic.synthetic_cache == "cache"
    # Synthetic-only options never reach arms without synthetic data.
    assert plain.synthetic == SyntheticRecipe()
    assert synthetic.synthetic == SyntheticRecipe(ratio=0.3, mixup=True)
    for config in (plain, weights, synthetic):
        assert (config.epochs, config.image_size, config.seed) == (7, 24, 3)
    assert plain.output_dir == str(tmp_path / "compare" / "plain" / "seed3")
    assert len({plain.model_name, weights.model_name, synthetic.model_name}) == 3


def test_live_options_reach_only_the_arm_with_synthetic_data(tmp_path):
    base = TrainConfig(data_dir="d", live_generator="sd", live_lora="lora",
                       live_verify_model="reference.keras")
    arms = {a.name: a for a in parse_arms("balanced,balanced_synthetic")}
    plain = arm_config(base, arms["balanced"], seed=0, output_dir=tmp_path)
    synthetic = arm_config(base, arms["balanced_synthetic"], seed=0, output_dir=tmp_path,
                           synthetic_cache="cache")
    assert (plain.live_generator, plain.live_lora, plain.live_verify_model) == (None,) * 3
    assert (synthetic.live_generator, synthetic.live_lora, synthetic.live_verify_model) == (
        "sd", "lora", "reference.keras")


def test_the_selection_arm_is_balanced_synthetic_with_feature_distance_selection(tmp_path):
    base = TrainConfig(data_dir="d", select_model="selector.keras")
    arms = {a.name: a for a in parse_arms("balanced,balanced_synthetic,"
                                          "balanced_synthetic_select")}
    assert arms["balanced_synthetic_select"].reference == "balanced_synthetic"
    balanced, synthetic, select = (
        arm_config(base, arms[name], seed=0, output_dir=tmp_path, synthetic_cache="cache")
        for name in ("balanced", "balanced_synthetic", "balanced_synthetic_select"))
    assert select.synthetic_select == "feature-distance" and synthetic.synthetic_select is None
    assert (select.select_model, select.synthetic.warmup_epochs) == ("selector.keras", 2)
    # the selection arm's own warm-up: the model selects
    assert synthetic.synthetic.warmup_epochs == 0
    assert (balanced.synthetic_select, balanced.select_model) == (None, None)
    assert select.balanced and select.synthetic_cache == "cache"


def test_arm_errors():
    with pytest.raises(ConfigError, match="unknown arm.*bogus"):
        parse_arms("plain,bogus")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_arms("plain,plain")
    with pytest.raises(ConfigError, match="needs --synthetic-cache"):
        run_compare(TrainConfig(), arms="balanced,balanced_synthetic", seeds="0",
                    output_dir="unused", runner=fake_runner({}))


def test_rarest_classes_are_the_bottom_quartile_at_least_one():
    assert rarest_classes({"a": 100, "b": 50, "c": 20, "d": 5}) == ["d"]
    assert rarest_classes({"a": 9, "b": 1}) == ["b"]
    counts = {f"c{i}": 100 - i for i in range(8)}
    assert rarest_classes(counts) == ["c7", "c6"]


def test_convergence_flags_a_loss_still_falling():
    assert convergence({"val_loss": [1.0, 0.6, 0.5, 0.48, 0.47, 0.47]})["converged"] is True
    falling = convergence({"val_loss": [1.0, 0.9, 0.8, 0.7, 0.5, 0.3]})
    assert falling["converged"] is False and "last 2 of 6 epochs" in falling["reason"]
    assert convergence({"loss": [1.0, 0.5]})["converged"] is False
    assert convergence({})["converged"] is None


def test_summary_and_verdict_from_known_inputs(tmp_path):
    scores = {("plain", 0): 0.50, ("plain", 1): 0.52, ("plain", 2): 0.49,
              ("balanced", 0): 0.60, ("balanced", 1): 0.61, ("balanced", 2): 0.60,
              ("balanced_synthetic", 0): 0.58, ("balanced_synthetic", 1): 0.59,
              ("balanced_synthetic", 2): 0.585}
    lines = []
    result = run_compare(TrainConfig(data_dir="d"), arms="plain,balanced,balanced_synthetic",
                         seeds="0,1,2", output_dir=tmp_path, synthetic_cache="cache",
                         runner=fake_runner(scores), progress=lines.append)
    assert len(lines) == 18 and lines[0] == "[1/9] plain seed=0: training ..."
    assert "done in" in lines[1] and "balanced accuracy 0.500" in lines[1]
    by_pair = {(c["arm"], c["reference"]): c for c in result["comparisons"]}
    assert set(by_pair) == {("balanced", "plain"), ("balanced_synthetic", "plain"),
                            ("balanced_synthetic", "balanced")}
    assert by_pair[("balanced", "plain")]["verdict"].startswith("balanced sampling helped")
    synthetic = by_pair[("balanced_synthetic", "balanced")]
    assert synthetic["outcome"] == "hurt"
    assert synthetic["verdict"].startswith("synthetic data hurt (balanced accuracy -0.018")
    assert result["verdict"] == synthetic["verdict"]
    diffs = synthetic["metrics"]["balanced_accuracy"]["differences"]
    assert diffs == pytest.approx([-0.02, -0.02, -0.015])
    assert result["summary"]["balanced"]["balanced_accuracy"]["mean"] == pytest.approx(0.6033333)
    assert result["summary"]["plain"]["runs"] == 3
    assert list(result["rarest_classes"]) == ["d"]
    assert result["runs"][0]["scores"]["rare_recall"] == pytest.approx(0.50)
    assert not any("seed(s)" in w for w in result["warnings"])
    written = json.loads((tmp_path / "compare.json").read_text())
    assert len(written["runs"]) == 9 and written["setup"]["synthetic_cache"] == "cache"
    markdown = (tmp_path / "compare.md").read_text()
    assert "synthetic data hurt" in markdown and "balanced sampling helped" in markdown
    assert "| balanced | 3 | 0.603 ± 0.006 |" in markdown
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path):
    scores = {(arm, s): 0.5 + 0.01 * s for arm in ("plain", "balanced") for s in (0, 1)}
    lines = []
    result = run_compare(TrainConfig(data_dir="d"), arms="plain,balanced", seeds="0,1",
                         output_dir=tmp_path, runner=fake_runner(scores, fail={("balanced", 0)}),
                         progress=lines.append)
    statuses = [(r["arm"], r["seed"], r["status"]) for r in result["runs"]]
    assert statuses == [("plain", 0, "ok"), ("balanced", 0, "failed"), ("plain", 1, "ok"),
                        ("balanced", 1, "ok")]
    assert any("balanced seed=0: FAILED" in line and "out of memory" in line for line in lines)
    assert any("balanced seed=0 failed: RuntimeError: out of memory" in w
               for w in result["warnings"])
    comparison = result["comparisons"][0]["metrics"]["balanced_accuracy"]
    assert comparison["n"] == 1 and comparison["outcome"] == "no clear difference"
    assert any("only 2 seed(s)" in w for w in result["warnings"])
    assert "failed: RuntimeError" in compare_markdown(result)


def test_warns_when_arms_have_not_converged():
    runs = [{"arm": arm, "seed": 0, "status": "ok", "output_dir": "x",
             "metrics": fake_metrics(0.5, losses=(2.0, 1.5, 1.0, 0.5))} for arm in ("plain",
                                                                                   "balanced")]
    result = summarize(runs, arms=["plain", "balanced"], seeds=[0])
    assert any("may not have converged" in w for w in result["warnings"])


def test_warns_when_the_test_sets_differ_between_arms():
    first, second = fake_metrics(0.5), fake_metrics(0.6)
    second["per_class"]["a"]["support"] = 7
    runs = [{"arm": "plain", "seed": 0, "status": "ok", "output_dir": "x", "metrics": first},
            {"arm": "balanced", "seed": 0, "status": "ok", "output_dir": "y", "metrics": second}]
    result = summarize(runs, arms=["plain", "balanced"], seeds=[0])
    assert any("different test sets" in w for w in result["warnings"])


def test_compare_command_trains_two_arms_at_two_seeds(tiny_data, tmp_path):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(main, [
        "compare", str(tiny_data), "--arms", "plain,balanced", "--seeds", "0,1",
        "--epochs", "2", "--image-size", "16", "--model-width", "8", "--val-split", "0.2",
        "--output-dir", str(out), "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert result.output.count(": training ...") == 4
    assert "[4/4] balanced seed=1: done in" in result.output
    assert "balanced vs plain:" in result.output
    data = json.loads((out / "compare.json").read_text())
    assert data["arms"] == ["plain", "balanced"] and data["seeds"] == [0, 1]
    assert [(r["arm"], r["seed"], r["status"]) for r in data["runs"]] == [
        ("plain", 0, "ok"), ("balanced", 0, "ok"), ("plain", 1, "ok"), ("balanced", 1, "ok")]
    for run in data["runs"]:
        assert set(run["scores"]) == {"balanced_accuracy", "macro_f1", "cohen_kappa",
                                      "rare_recall"}
        assert run["metrics"]["config"]["seed"] == run["seed"]
        assert run["metrics"]["config"]["balanced"] == (run["arm"] == "balanced")
        assert (out / "compare" / run["arm"] / f"seed{run['seed']}" / "metrics.json").is_file()
    # At each seed both arms saw the same real test images.
    assert not any("different test sets" in w for w in data["warnings"])
    assert list(data["rarest_classes"]) == ["fox"]
    (comparison,) = data["comparisons"]
    assert comparison["metrics"]["cohen_kappa"]["n"] == 2
    assert any("only 2 seed(s)" in w for w in data["warnings"])
    assert any("may not have converged" in w for w in data["warnings"])
    assert "## Paired differences: balanced − plain" in (out / "compare.md").read_text()
    assert (out / "compare.png").stat().st_size > 1000


def test_compare_command_rejects_bad_input_before_training(tiny_data, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["compare", str(tmp_path / "nope"), "--seeds", "0"])
    assert missing.exit_code == 2 and "DATA_DIR not found" in missing.output
    no_cache = runner.invoke(main, ["compare", str(tiny_data), "--arms", "balanced_synthetic"])
    assert no_cache.exit_code == 2
    assert "arm balanced_synthetic needs --synthetic-cache" in no_cache.output
    bad_arm = runner.invoke(main, ["compare", str(tiny_data), "--arms", "plain,magic"])
    assert bad_arm.exit_code == 2 and "unknown arm(s) magic" in bad_arm.output
    bad_seeds = runner.invoke(main, ["compare", str(tiny_data), "--seeds", "0,x"])
    assert bad_seeds.exit_code == 2 and "comma-separated integers" in bad_seeds.output
    assert not (tmp_path / "outputs").exists()


@pytest.fixture
def oracle_arm():
    """An extra synthetic arm, registered for one test (an oracle is balanced_synthetic trained
    on a cache of real held-out images; registering it keeps both in one comparison)."""
    from genaug.evidence import ARMS, Arm, register_arm

    arm = register_arm(Arm("oracle", "real held-out images",
                           {"balanced": True, "class_weights": False,
                            "synthetic_cache": "oracle_cache"}, needs_cache=True))
    yield arm
    del ARMS[arm.name]


def test_every_synthetic_arm_is_compared_with_balanced_with_a_paired_ci(tmp_path, oracle_arm):
    scores = {("plain", s): 0.50 + 0.01 * s for s in range(3)}
    scores |= {("balanced", s): 0.60 + 0.01 * s for s in range(3)}
    scores |= {("balanced_synthetic", s): 0.60 + 0.012 * s for s in range(3)}
    scores |= {("oracle", s): 0.65 + 0.01 * s + 0.002 * (s == 1) for s in range(3)}
    caches = {}
    runner = fake_runner(scores)

    def recording_runner(config):
        caches[config.model_name.split("_seed")[0]] = config.synthetic_cache
        return runner(config)

    result = run_compare(TrainConfig(data_dir="d"), arms="plain,balanced,balanced_synthetic,oracle",
                         seeds="0,1,2", output_dir=tmp_path, synthetic_cache="cache",
                         runner=recording_runner, progress=None)
    assert caches == {"compare_plain": None, "compare_balanced": None,
                      "compare_balanced_synthetic": "cache", "compare_oracle": "oracle_cache"}
    pairs = {(c["arm"], c["reference"]): c for c in result["comparisons"]}
    assert set(pairs) == {("balanced", "plain"), ("balanced_synthetic", "plain"),
                          ("balanced_synthetic", "balanced"), ("oracle", "plain"),
                          ("oracle", "balanced")}
    assert pairs[("oracle", "balanced")]["verdict"].startswith("real held-out images helped")
    assert pairs[("oracle", "plain")]["subject"] == "balanced sampling with real held-out images"
    oracle = pairs[("oracle", "balanced")]["metrics"]
    assert set(oracle) == {"balanced_accuracy", "macro_f1", "cohen_kappa", "rare_recall"}
    assert oracle["balanced_accuracy"]["ci_low"] > 0
    markdown = (tmp_path / "compare.md").read_text()
    for arm in ("balanced_synthetic", "oracle"):
        section = markdown.split(f"## Paired differences: {arm} − balanced")[1].split("##")[0]
        for metric in ("balanced accuracy", "macro-F1", "recall of the rarest classes"):
            row = next(line for line in section.splitlines() if line.startswith(f"| {metric} |"))
            assert row.count("[") == 1  # the 95 % CI
    setup = json.loads((tmp_path / "compare.json").read_text())["setup"]
    assert setup["arm_definitions"]["oracle"]["reference"] == "balanced"


def test_an_arm_that_is_no_refinement_of_balanced_is_compared_with_it_as_an_alternative():
    from genaug.evidence._arms import comparisons

    pairs = {(a, r): s for a, r, s in comparisons(["plain", "class_weights", "balanced"])}
    assert pairs == {("class_weights", "plain"): "class weights",
                     ("class_weights", "balanced"): "class weights instead of balanced sampling",
                     ("balanced", "plain"): "balanced sampling"}


def test_arm_registry_errors(tmp_path):
    from genaug.evidence import ARMS, Arm, register_arm

    with pytest.raises(ConfigError, match="already registered"):
        register_arm(Arm("balanced", "again"))
    with pytest.raises(ConfigError, match="unknown reference arm nowhere"):
        register_arm(Arm("lost", "x", reference="nowhere"))
    assert "lost" not in ARMS
    odd = Arm("odd", "a typo", {"balancd": True})
    with pytest.raises(ConfigError, match="arm odd sets unknown option.*balancd"):
        arm_config(TrainConfig(), odd, seed=0, output_dir=tmp_path)


def test_lever_arms_change_one_option_each_and_build_on_balanced(tmp_path):
    from genaug.evidence import ARMS
    from genaug.evidence._arms import LEGACY_SYNTHETIC_RECIPE

    base = TrainConfig(data_dir="d", epochs=10, synthetic=SyntheticRecipe(weight=0.7))
    levers = {"balanced_synthetic_cooldown": ({}, {"cooldown_epochs": "20%"}),
              "balanced_synthetic_fill": ({}, {"fill_to": "mean"}),
              "balanced_synthetic_weight03": ({}, {"weight": 0.3}),
              "balanced_synthetic_smooth": ({}, {"label_smoothing": 0.1}),
              "balanced_synthetic_mixup": ({}, {"mixup": True}),
              "balanced_synthetic_confusion": ({"synthetic_allocation": "confusion"},
                                               {"warmup_epochs": 2})}
    reference = arm_config(base, ARMS["balanced_synthetic"], seed=0, output_dir=tmp_path,
                           synthetic_cache="c")
    for name, (options, recipe) in levers.items():
        assert ARMS[name].reference == "balanced" and ARMS[name].needs_cache
        config = arm_config(base, ARMS[name], seed=0, output_dir=tmp_path, synthetic_cache="c")
        differing = {k for k, v in vars(config).items() if getattr(reference, k) != v}
        assert differing == {*options, "synthetic", "output_dir", "model_name"}, name
        assert config.synthetic.changed() == {"weight": 0.7, **recipe}, name
    cooled = arm_config(base, ARMS["balanced_synthetic_cooldown"], seed=0, output_dir=tmp_path,
                        synthetic_cache="c")
    assert cooled.synthetic.cooldown_for(cooled.epochs) == 2
    # The legacy arm pins the first default recipe, whatever the shared options say.
    legacy = arm_config(base, ARMS["balanced_synthetic_legacy"], seed=0, output_dir=tmp_path,
                        synthetic_cache="c")
    assert legacy.synthetic == LEGACY_SYNTHETIC_RECIPE == TrainConfig().synthetic
    assert (legacy.synthetic_select, legacy.select_model, legacy.synthetic_allocation) == (
        None, None, None)
    # Arms without a cache get the lever options' defaults.
    smooth = TrainConfig(synthetic=SyntheticRecipe(label_smoothing=0.2, fill_to=5,
                                                   cooldown_epochs=2))
    plain = arm_config(smooth, ARMS["balanced"], seed=0, output_dir=tmp_path)
    assert plain.synthetic == SyntheticRecipe()


def test_compare_command_runs_a_lever_arm_by_name(tiny_data, tiny_cache, tmp_path):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(main, [
        "compare", str(tiny_data), "--arms", "balanced,balanced_synthetic_cooldown",
        "--seeds", "0", "--epochs", "2", "--image-size", "16", "--model-width", "8",
        "--synthetic-cache", str(tiny_cache), "--output-dir", str(out),
        "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert "balanced_synthetic_cooldown vs balanced:" in result.output
    data = json.loads((out / "compare.json").read_text())
    assert [r["status"] for r in data["runs"]] == ["ok", "ok"]
    cooled = data["runs"][1]["metrics"]
    assert cooled["synthetic_schedule"]["factors"] == [1.0, 0.0]  # 20 % of 2 epochs: 1
    assert sum(r["synthetic"] for r in cooled["composition"]["per_epoch"][0].values()) > 0
    assert data["runs"][1]["config"]["synthetic"]["cooldown_epochs"] == "20%"
    definition = data["setup"]["arm_definitions"]["balanced_synthetic_cooldown"]
    assert (definition["recipe"], definition["pins_recipe"]) == ({"cooldown_epochs": "20%"},
                                                                 False)


def test_resume_keeps_ok_runs_with_the_same_options_and_trains_the_rest(tmp_path):
    scores = {("plain", s): 0.5 for s in (0, 1)} | {("balanced", s): 0.6 for s in (0, 1)}
    trained = []

    def runner(config):
        trained.append((config.model_name, config.epochs))
        return fake_runner(scores, fail=failing)(config)

    failing = {("balanced", 1)}
    base = TrainConfig(data_dir="d", epochs=3)
    run_compare(base, arms="plain,balanced", seeds="0,1", output_dir=tmp_path, runner=runner,
                progress=None)
    assert len(trained) == 4
    trained.clear()
    failing = set()
    lines = []
    # The same options (printed differently): only the failed run trains again.
    result = run_compare(TrainConfig(data_dir="d", epochs=3, verbose=0), arms="plain,balanced",
                         seeds="0,1", output_dir=tmp_path, runner=runner, progress=lines.append,
                         resume=True)
    assert trained == [("compare_balanced_seed1", 3)]
    assert sum("kept from compare.json" in line for line in lines) == 3
    assert [r["status"] for r in result["runs"]] == ["ok"] * 4
    assert json.loads((tmp_path / "compare.json").read_text())["summary"]["balanced"]["runs"] == 2
    # Other options: everything trains again; without resume, everything trains too.
    trained.clear()
    run_compare(TrainConfig(data_dir="d", epochs=4), arms="plain,balanced", seeds="0,1",
                output_dir=tmp_path, runner=runner, progress=None, resume=True)
    assert [epochs for _, epochs in trained] == [4] * 4
    trained.clear()
    run_compare(TrainConfig(data_dir="d", epochs=4), arms="plain", seeds="0",
                output_dir=tmp_path, runner=runner, progress=None)
    assert len(trained) == 1


def test_compare_resume_option_reaches_run_compare(tiny_data, tmp_path, monkeypatch):
    import genaug.evidence

    seen = {}

    def fake_run_compare(base, **kwargs):
        seen.update(kwargs)
        return {"comparisons": [], "warnings": [], "runs": [{"status": "ok"}]}

    monkeypatch.setattr(genaug.evidence, "run_compare", fake_run_compare)
    result = CliRunner().invoke(main, ["compare", str(tiny_data), "--arms", "plain",
                                       "--seeds", "0", "--resume",
                                       "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert seen["resume"] is True


def test_oracle_cache_adds_an_oracle_arm_on_its_own_cache(tiny_data, tiny_cache, tmp_path):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(main, [
        "compare", str(tiny_data), "--arms", "balanced", "--seeds", "0", "--epochs", "1",
        "--image-size", "16", "--model-width", "8", "--oracle-cache", str(tiny_cache),
        "--output-dir", str(out), "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert "oracle vs balanced:" in result.output
    data = json.loads((out / "compare.json").read_text())
    oracle = [r for r in data["runs"] if r["arm"] == "oracle"]
    assert len(oracle) == 1 and oracle[0]["status"] == "ok"
    assert oracle[0]["config"]["synthetic_cache"] == str(tiny_cache)
    per_epoch = oracle[0]["metrics"]["composition"]["per_epoch"]
    assert sum(row["synthetic"] for row in per_epoch[0].values()) > 0  # it drew from that cache


def test_the_oracle_arm_needs_its_cache(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["compare", str(tiny_data), "--arms", "balanced,oracle",
                                       "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Error: the oracle arm needs --oracle-cache" in result.output
    missing = CliRunner().invoke(main, ["compare", str(tiny_data), "--oracle-cache",
                                        str(tmp_path / "nope"), "--output-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "oracle cache not found" in missing.output


def test_synthetic_on_augmentation_is_compared_with_the_augmented_reference():
    from genaug.evidence import ARMS
    from genaug.evidence._arms import comparisons

    pairs = {(a, r): s for a, r, s in comparisons(
        ["balanced", "balanced_augment", "balanced_synthetic_augment"])}
    assert pairs[("balanced_synthetic_augment", "balanced_augment")] == \
        "synthetic data on top of standard augmentation"
    # balanced_augment is balanced sampling plus augmentation: what it adds, not an alternative
    assert pairs[("balanced_augment", "balanced")] == "standard augmentation (flip, translation)"
    assert pairs[("balanced_synthetic_augment", "balanced")] == (
        "standard augmentation (flip, translation) with synthetic data on top of standard "
        "augmentation")
    assert ARMS["balanced_synthetic_augment"].overrides["augment"] == ("flip", "translation")


def test_a_class_that_lost_more_than_5_points_of_recall_is_flagged():
    runs = []
    for seed in (0, 1, 2):
        reference, arm = fake_metrics(0.5), fake_metrics(0.6)
        arm["per_class"]["a"]["recall"] = 0.9 - 0.08  # lost 8 points at every seed
        arm["per_class"]["b"]["recall"] = 0.9 - 0.02  # lost 2: not flagged
        arm["per_class"]["b"]["precision"] = 0.6
        runs += [{"arm": "balanced", "seed": seed, "status": "ok", "output_dir": "x",
                  "metrics": reference},
                 {"arm": "class_weights", "seed": seed, "status": "ok", "output_dir": "y",
                  "metrics": arm}]
    result = summarize(runs, arms=["balanced", "class_weights"], seeds=[0, 1, 2])
    (comparison,) = result["comparisons"]
    assert comparison["harmed_classes"] == ["a"]
    assert comparison["per_class"]["a"]["recall"] == pytest.approx(-0.08)
    assert comparison["per_class"]["b"]["precision"] == pytest.approx(0.1)
    assert comparison["per_class"]["d"]["recall"] == pytest.approx(0.1)
    assert "HARM: class_weights lost more than 5 points of recall against balanced on a -8.0" \
        in compare_markdown(result)


def test_variation_arms_train_on_the_variation_cache(tiny_data, tmp_path):
    from _evidence_helpers import make_variation_cache

    variations = make_variation_cache(tmp_path / "variations", {"dog": 10, "fox": 6})
    out = tmp_path / "outputs"
    result = CliRunner().invoke(main, [
        "compare", str(tiny_data), "--arms", "balanced,balanced_variation,"
        "balanced_variation_augment", "--seeds", "0", "--epochs", "1", "--image-size", "16",
        "--model-width", "8", "--variation-cache", str(variations),
        "--output-dir", str(out), "--model-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert "balanced_variation vs balanced:" in result.output
    assert "balanced_variation_augment vs balanced:" in result.output
    data = json.loads((out / "compare.json").read_text())
    assert data["setup"]["variation_cache"] == str(variations)
    assert data["setup"]["synthetic_cache"] is None
    assert data["setup"]["arm_definitions"]["balanced_variation"]["cache"] == "variation"
    runs = {r["arm"]: r for r in data["runs"]}
    assert all(r["status"] == "ok" for r in runs.values())
    for arm in ("balanced_variation", "balanced_variation_augment"):
        metrics = runs[arm]["metrics"]
        assert runs[arm]["config"]["synthetic_cache"] == str(variations)
        per_epoch = metrics["composition"]["per_epoch"]
        assert sum(row["synthetic"] for row in per_epoch[0].values()) > 0
        # variations of validation and test images never reach training
        assert metrics["synthetic"]["excluded_for_leakage"] > 0
    assert runs["balanced_variation_augment"]["config"]["augment"] == ["flip", "translation"]
    assert runs["balanced"]["config"]["synthetic_cache"] is None
    assert f"Variation cache (variations of real training images): `{variations}`" in \
        (out / "compare.md").read_text()


def test_variation_arms_need_their_cache(tiny_data, tiny_cache, tmp_path):
    from genaug.evidence._arms import comparisons

    runner = CliRunner()
    alone = runner.invoke(main, ["compare", str(tiny_data), "--arms", "balanced_variation",
                                 "--synthetic-cache", str(tiny_cache),
                                 "--output-dir", str(tmp_path / "o")])
    assert alone.exit_code == 2
    assert "arm balanced_variation needs --variation-cache" in alone.output
    assert "--synthetic-cache is unused: no arm trains on synthetic data" in alone.output
    missing = runner.invoke(main, ["compare", str(tiny_data), "--variation-cache",
                                   str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "variation cache not found" in missing.output
    assert not (tmp_path / "o").exists()
    pairs = {(a, r): s for a, r, s in comparisons(
        ["balanced", "balanced_augment", "balanced_variation_augment"])}
    assert pairs[("balanced_variation_augment", "balanced_augment")] == \
        "variations of real images on top of standard augmentation"
