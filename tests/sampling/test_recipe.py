"""The synthetic recipe: validated once, and a new setting is one field (the command line,
the loaders, ``TrainConfig`` and the compare arms pick every field up from the recipe)."""

from __future__ import annotations

import inspect
from dataclasses import FrozenInstanceError, dataclass, field, fields

import click
import pytest
from click.testing import CliRunner

from genaug.exceptions import ConfigError
from genaug.sampling import DEFAULT_CAP, RampSchedule, RecipeFlag, SyntheticRecipe

#: A value other than the default for every field: a new field needs one here.
CHANGED = {"ratio": 0.3, "ramp_fraction": 0.5, "warmup_epochs": 1, "cap": 0.4,
           "pool_cap": 0.5, "classes": ("dog",), "weight": 0.5, "mixup": True,
           "cooldown_epochs": "20%", "fill_to": 10, "label_smoothing": 0.1}


def test_every_field_has_a_changed_value_here():
    assert set(CHANGED) == {f.name for f in fields(SyntheticRecipe)}


def test_values_are_normalised_once_and_frozen():
    recipe = SyntheticRecipe(ratio=[0.1, 0.3], classes="dog, snake", cooldown_epochs="3",
                             fill_to="10", cap={"dog": 1})
    assert recipe.ratio == (0.1, 0.3) and recipe.classes == ("dog", "snake")
    assert recipe.cooldown_epochs == 3 and recipe.fill_to == 10 and recipe.cap == {"dog": 1.0}
    assert SyntheticRecipe().cap == DEFAULT_CAP
    with pytest.raises(FrozenInstanceError):
        recipe.ratio = 0.5


@pytest.mark.parametrize("settings, message", [
    ({"ratio": 1.5}, r"synthetic_ratio must be in \[0, 1\]"),
    ({"ratio": (0.5, 0.2)}, "low <= high"),
    ({"ratio": (0.1, 0.2, 0.3)}, r"range is \(low, high\)"),
    ({"cap": 1.2}, r"synthetic_cap must be in \[0, 1\]"),
    ({"cap": {"dog": 1.5}}, r"synthetic_cap must be in \[0, 1\]"),
    ({"pool_cap": 1.0}, r"synthetic_pool_cap must be in \(0, 1\)"),
    ({"classes": " , "}, "synthetic_classes: expected a comma-separated list"),
    ({"weight": -1}, "synthetic_weight must be >= 0"),
    ({"label_smoothing": 1.0}, r"synthetic_label_smoothing must be in \[0, 1\)"),
    ({"ramp_fraction": 1.5}, r"ramp_fraction must be in \[0, 1\]"),
    ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
    ({"cooldown_epochs": -1}, "cooldown_epochs must be >= 0"),
    ({"cooldown_epochs": "150%"}, "cooldown_epochs must be a number of epochs or a share"),
    ({"cooldown_epochs": "x"}, "cooldown_epochs must be a number of epochs or a share"),
    ({"fill_to": 0}, "synthetic_fill_to must be a positive integer, 'mean' or 'median'"),
    ({"fill_to": "most"}, "synthetic_fill_to must be a positive integer, 'mean' or 'median'"),
])
def test_bad_values_name_their_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticRecipe(**settings)


def test_cooldown_share_resolves_against_the_epochs():
    def cooldown(value, epochs, warmup=0):
        return SyntheticRecipe(cooldown_epochs=value, warmup_epochs=warmup).cooldown_for(epochs)

    assert cooldown("20%", 10) == 2 and cooldown("20%", 3) == 1
    # Never more than leaves one epoch after the warm-up with synthetic images.
    assert cooldown("20%", 1) == 0 and cooldown("50%", 4, warmup=2) == 1
    assert cooldown("0%", 10) == 0 and cooldown(3, 10) == 3


def test_the_schedule_of_a_run():
    schedule = SyntheticRecipe(warmup_epochs=1, ramp_fraction=0.2,
                               cooldown_epochs="30%").schedule(epochs=10)
    assert isinstance(schedule, RampSchedule)
    assert (schedule.epochs, schedule.warmup_epochs, schedule.ramp_fraction,
            schedule.cooldown_epochs) == (10, 1, 0.2, 3)
    with pytest.raises(ConfigError, match=r"`warmup_epochs` \+ `cooldown_epochs` must be less "
                                          r"than `epochs`, got 1 \+ 2 >= 3"):
        SyntheticRecipe(warmup_epochs=1, cooldown_epochs=2).schedule(epochs=3)


def test_flat_keywords_or_one_recipe():
    recipe = SyntheticRecipe.from_keywords({"synthetic_ratio": 0.3, "mixup": True, "seed": 4})
    assert recipe == SyntheticRecipe(ratio=0.3, mixup=True)
    given = SyntheticRecipe(weight=0.5)
    assert SyntheticRecipe.from_keywords({"synthetic_cap": DEFAULT_CAP}, synthetic=given) is given
    with pytest.raises(ConfigError, match="give synthetic=SyntheticRecipe.* or synthetic_cap, "
                                          "not both"):
        SyntheticRecipe.from_keywords({"synthetic_cap": 0.9}, synthetic=given)
    with pytest.raises(ConfigError, match="synthetic must be a SyntheticRecipe, got dict"):
        SyntheticRecipe.from_keywords({}, synthetic={"ratio": 0.3})


def test_settings_that_need_synthetic_images():
    assert SyntheticRecipe().needing_source() == []
    assert SyntheticRecipe(warmup_epochs=2).needing_source() == []  # it also times selection
    assert SyntheticRecipe(ratio=0.3, fill_to="mean").needing_source() == [
        "synthetic_ratio", "synthetic_fill_to"]


# --- a new setting is one field -------------------------------------------------------------


def _loaders():
    import genaug

    return genaug.BalancedBatchGenerator.__init__, genaug.image_dataset_from_directory


@pytest.mark.parametrize("loader", _loaders(), ids=["pydataset", "tfdata"])
def test_every_loader_setting_is_a_keyword_of_both_loaders_with_its_default(loader):
    parameters = inspect.signature(loader).parameters
    defaults = SyntheticRecipe.defaults()
    for name, option in SyntheticRecipe.options().items():
        if option.loader:
            assert parameters[option.keyword].default == defaults[name], option.keyword
    assert parameters["synthetic"].default is None


def _train_and_compare():
    from genaug.cli import main

    return [main.get_command(None, name) for name in ("train", "compare")]


@pytest.mark.parametrize("command", _train_and_compare(), ids=["train", "compare"])
def test_every_flag_of_every_field_is_an_option_of_train_and_compare(command):
    options = {opt: param for param in command.params for opt in param.opts}
    defaults = SyntheticRecipe.defaults()
    for name, option in SyntheticRecipe.options().items():
        assert option.flags, name
        for position, flag in enumerate(option.flags):
            param = options[flag.name]
            assert param.help == flag.help
            if position == 0:  # library messages name the keyword: the CLI prints the flag
                assert param.name == option.keyword
                if flag.kind is not bool:
                    assert param.default == defaults[name], flag.name


def test_an_added_field_becomes_an_option_and_reaches_the_recipe(monkeypatch):
    """The generated options and their reading back know no field by name."""
    import genaug.sampling
    from genaug.cli._options import recipe_from_options, recipe_options
    from genaug.sampling import RecipeOption

    def check_temperature(value):
        if float(value) <= 0:
            raise ConfigError(f"synthetic_temperature must be > 0, got {value}")
        return float(value)

    @dataclass(frozen=True, kw_only=True)
    class Extended(SyntheticRecipe):
        temperature: float = field(default=1.0, metadata={"option": RecipeOption(
            "synthetic_temperature",
            (RecipeFlag("--synthetic-temperature", "How hot.", low=0, low_open=True),),
            check_temperature)})

    monkeypatch.setattr(genaug.sampling, "SyntheticRecipe", Extended)
    seen = {}

    @click.command()
    @recipe_options
    def command(**options):
        seen["recipe"] = recipe_from_options(options)
        seen["rest"] = options

    result = CliRunner().invoke(command, ["--synthetic-temperature", "2.5", "--mixup"])
    assert result.exit_code == 0, result.output
    assert seen["recipe"] == Extended(temperature=2.5, mixup=True) and seen["rest"] == {}
    assert "--synthetic-temperature" in CliRunner().invoke(command, ["--help"]).output
    bad = CliRunner().invoke(command, ["--synthetic-temperature", "0"])
    assert bad.exit_code == 2 and "Invalid value for '--synthetic-temperature'" in bad.output


def test_train_config_and_arms_carry_the_recipe_whole(tmp_path):
    from genaug.evidence import Arm
    from genaug.evidence._arms import arm_config
    from training.pipeline import TrainConfig

    keywords = {option.keyword for option in SyntheticRecipe.options().values()}
    assert not keywords & {f.name for f in fields(TrainConfig)}  # no flat copies
    assert TrainConfig().synthetic == SyntheticRecipe()
    base = TrainConfig(synthetic=SyntheticRecipe(weight=0.7))
    every = Arm("every_setting", "every setting changed", recipe=SyntheticRecipe(**CHANGED),
                needs_cache=True)
    config = arm_config(base, every, seed=0, output_dir=tmp_path, synthetic_cache="c")
    assert config.synthetic == SyntheticRecipe(**CHANGED)
    one = Arm("one_setting", "one setting changed", recipe=SyntheticRecipe(mixup=True),
              needs_cache=True)
    config = arm_config(base, one, seed=0, output_dir=tmp_path, synthetic_cache="c")
    assert config.synthetic == SyntheticRecipe(weight=0.7, mixup=True)
    assert one.describe()["recipe"] == {"mixup": True}
    with pytest.raises(ConfigError, match="a synthetic recipe needs needs_cache=True"):
        Arm("no_cache", "x", recipe=SyntheticRecipe(mixup=True))


def test_two_flags_of_one_setting_are_one_error(tmp_path):
    from genaug.cli import main

    result = CliRunner().invoke(main, ["train", "--synthetic-ratio", "0.3",
                                       "--synthetic-ratio-range", "0.1", "0.2",
                                       "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Error: give --synthetic-ratio or --synthetic-ratio-range, not both" in result.output
