import json

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.generation import GenerationConfig, GenerationPlan, make_plan
from genaug.generation._plan import balance_check
from genaug.sampling import largest_remainder

CONFIG = {
    "negative_prompt": "blurry, watermark",
    "prompts": ["a photo of a {class_text}, {lighting} light"],
    "variations": ["", ", close-up"],
    "attributes": {"lighting": {"day": 25, "dusk": 25, "night": 25, "studio": 25}},
    "classes": {
        "ring": {
            "prompts": ["a {burn_level} {class}, {lighting} light"],
            "attributes": {"burn_level": {"light": 40, "medium": 35, "dark": 25}},
        }
    },
}


def test_largest_remainder_is_exact_and_close_to_proportional():
    assert largest_remainder([40, 35, 25], 7) == [3, 2, 2]
    assert largest_remainder([40, 35, 25], 100) == [40, 35, 25]
    assert largest_remainder([1, 1, 1], 2) == [1, 1, 0]  # ties go to the earlier value
    rng = np.random.default_rng(0)
    for _ in range(200):
        weights = rng.uniform(0.01, 5, size=rng.integers(1, 7))
        total = int(rng.integers(0, 500))
        quotas = largest_remainder(weights, total)
        exact = weights / weights.sum() * total
        assert sum(quotas) == total
        assert all(np.floor(e) <= q <= np.ceil(e) for e, q in zip(exact, quotas))
    with pytest.raises(ConfigError, match="positive"):
        largest_remainder([1, 0], 3)


def test_plan_counts_quotas_and_balance(shapes_dir):
    plan = make_plan(shapes_dir, target_per_class=13, min_threshold=10, config=CONFIG)
    assert plan.class_names == ("bar", "disc", "ring")
    assert {c: (e["current"], e["generate"], e["final"]) for c, e in plan.classes.items()} == {
        "bar": (6, 7, 13), "disc": (12, 1, 13), "ring": (3, 10, 13)}
    ring = plan.classes["ring"]["attributes"]
    assert ring["burn_level"]["quotas"] == {"light": 4, "medium": 4, "dark": 2}
    assert sum(ring["lighting"]["quotas"].values()) == 10
    for entry in plan.classes.values():
        for spec in entry["attributes"].values():
            assert sum(spec["quotas"].values()) == entry["generate"]
    assert plan.balance["ok"] and plan.total_to_generate == 18
    # the expanded items follow the quotas exactly, with distinct seeds and filled prompts
    items = plan.items("ring")
    assert [it.record_id for it in items[:2]] == ["ring-000000", "ring-000001"]
    counted = {v: sum(it.attributes["burn_level"] == v for it in items)
               for v in ("light", "medium", "dark")}
    assert counted == {"light": 4, "medium": 4, "dark": 2}
    assert len({it.seed for it in items}) == len(items)
    assert items[0].prompt.startswith(f"a {items[0].attributes['burn_level']} ring, ")
    assert items[1].prompt.endswith(", close-up")
    assert items[0].negative_prompt == "blurry, watermark"
    assert len({it.seed_for(a) for it in items for a in range(4)}) == 4 * len(items)


def test_plan_is_deterministic_and_round_trips(shapes_dir, tmp_path):
    first = make_plan(shapes_dir, target_per_class=20, config=CONFIG, seed=3)
    second = make_plan(shapes_dir, target_per_class=20, config=CONFIG, seed=3)
    assert first.to_json() == second.to_json()
    path = first.save(tmp_path / "plan.json")
    loaded = GenerationPlan.load(path)
    assert loaded.to_json() == first.to_json()
    assert [it.prompt for it in loaded.items("bar")] == [it.prompt for it in first.items("bar")]
    assert make_plan(shapes_dir, target_per_class=20, config=CONFIG, seed=4).items(
        "bar")[0].seed != first.items("bar")[0].seed


def test_balance_check_reports_classes_below_the_minimum_or_80_percent(shapes_dir):
    plan = make_plan(shapes_dir, target_per_class=8, min_threshold=5)
    assert not plan.balance["ok"]  # disc keeps its 12; bar and ring reach 8 = 67 %
    assert any("67% of the largest" in p for p in plan.balance["problems"])
    check = balance_check({"a": 100, "b": 80, "c": 79}, 50)
    assert [p.split(":")[0] for p in check["problems"]] == ["c"]
    assert not balance_check({"a": 100, "b": 90}, 95)["ok"]


def test_new_classes_without_images_and_default_prompts(shapes_dir):
    with pytest.warns(UserWarning, match="not in class_names are ignored: bar"):
        plan = make_plan(shapes_dir, target_per_class=5,
                         class_names=["disc", "ring", "new_shape"],
                         config={"attributes": {"lighting": ["day", "night"]}})
    assert plan.classes["new_shape"]["current"] == 0
    assert plan.classes["new_shape"]["generate"] == 5
    assert plan.items("new_shape")[0].prompt in ("a photo of a new shape, day lighting",
                                                 "a photo of a new shape, night lighting")


def test_yaml_and_json_configs_load_the_same(tmp_path):
    yaml = pytest.importorskip("yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    assert (GenerationConfig.load(tmp_path / "c.yaml").to_dict()
            == GenerationConfig.load(tmp_path / "c.json").to_dict())


@pytest.mark.parametrize("config, message", [
    ({"prompt": "x"}, "unknown key"),
    ({"attributes": {"light": {"day": -1}}}, "must be positive"),
    ({"attributes": {"light": {"day": "lots"}}}, "must be a number"),
    ({"attributes": {"bad name": ["a"]}}, "plain identifier"),
    ({"prompts": ["a {colour} {class}"]}, r"unknown placeholder\(s\) \{colour\}"),
    ({"classes": {"ring": {"prompt": "x"}}}, "classes.ring has unknown key"),
    ({"classes": {"cube": {}}}, "not in the dataset: cube"),
])
def test_bad_configs_are_one_line_errors(shapes_dir, config, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(shapes_dir, target_per_class=5, config=config)


def test_bad_options_and_files(shapes_dir, tmp_path):
    with pytest.raises(ConfigError, match="cannot exceed"):
        make_plan(shapes_dir, target_per_class=5, min_threshold=6)
    with pytest.raises(ConfigError, match="config file not found"):
        make_plan(shapes_dir, target_per_class=5, config=tmp_path / "missing.yaml")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot parse"):
        make_plan(shapes_dir, target_per_class=5, config=tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="plan not found"):
        GenerationPlan.load(tmp_path / "nope.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ConfigError, match="not a genaug plan"):
        GenerationPlan.load(tmp_path / "other.json")
