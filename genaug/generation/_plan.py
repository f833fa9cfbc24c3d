"""The generation plan: how many images each class needs, with prompts and attribute quotas.

Not to be confused with :class:`genaug.sampling.BalancePlan`, which decides what each
training epoch draws.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genaug.exceptions import ConfigError
from genaug.generation._utils import canonical_sha256, derive_seed
from genaug.sampling import largest_remainder

PLAN_FORMAT = "genaug-plan/1"
BALANCE_RATIO = 0.8
DEFAULT_TEMPLATE = "a photo of a {class_text}"
CONFIG_KEYS = ("negative_prompt", "prompts", "variations", "attributes", "classes")
CLASS_KEYS = ("negative_prompt", "prompts", "variations", "attributes")


# ----------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class GenerationConfig:
    """Prompt templates, variation suffixes, a negative prompt and attribute distributions.

    Read from JSON or YAML with :meth:`load`. Layout (every key optional)::

        negative_prompt: "blurry, low quality, watermark"
        prompts: ["a photo of a {class_text}, {lighting} lighting"]   # default templates
        variations: ["", ", close-up", ", seen from above"]           # suffixes, cycled
        attributes:                    # name -> {value: weight} (or a list: equal weights)
          lighting: {daylight: 25, overcast: 25, indoor: 25, night: 25}
        classes:                       # per-class overrides (attributes are merged)
          toast:
            prompts: ["a photo of {burn_level} toast, {lighting} lighting"]
            attributes:
              burn_level: {light: 40, medium: 35, dark: 25}

    Templates may use ``{class}`` (the class name), ``{class_text}`` (the name with ``_`` and
    ``-`` as spaces) and ``{<attribute>}`` for every attribute of the class.
    """

    negative_prompt: str | None = None
    prompts: tuple[str, ...] = ()
    variations: tuple[str, ...] = ("",)
    attributes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    classes: Mapping[str, Mapping] = field(default_factory=dict)

    @classmethod
    def load(cls, path) -> GenerationConfig:
        """Read a ``.json``, ``.yaml`` or ``.yml`` file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as error:  # json and yaml raise different types
            raise ConfigError(f"cannot parse {path}: {error}".splitlines()[0]) from None
        return cls.from_dict(data or {}, source=str(path))

    @classmethod
    def from_dict(cls, data, *, source: str = "config") -> GenerationConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: the top level must be a mapping")
        unknown = sorted(set(data) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                              f"expected {', '.join(CONFIG_KEYS)}")
        classes = data.get("classes") or {}
        if not isinstance(classes, Mapping):
            raise ConfigError(f"{source}: 'classes' must map class names to settings")
        parsed_classes = {}
        for name, settings in classes.items():
            settings = settings or {}
            if not isinstance(settings, Mapping):
                raise ConfigError(f"{source}: classes.{name} must be a mapping")
            bad = sorted(set(settings) - set(CLASS_KEYS))
            if bad:
                raise ConfigError(f"{source}: classes.{name} has unknown key(s) "
                                  f"{', '.join(bad)}; expected {', '.join(CLASS_KEYS)}")
            where = f"{source}: classes.{name}"
            entry = {}
            if "negative_prompt" in settings:
                entry["negative_prompt"] = _text(settings["negative_prompt"], where)
            if "prompts" in settings:
                entry["prompts"] = _texts(settings["prompts"], f"{where}.prompts")
            if "variations" in settings:
                entry["variations"] = _texts(settings["variations"], f"{where}.variations")
            if "attributes" in settings:
                entry["attributes"] = _attributes(settings["attributes"],
                                                  f"{where}.attributes")
            parsed_classes[str(name)] = entry
        negative = data.get("negative_prompt")
        return cls(
            negative_prompt=None if negative is None else _text(negative, source),
            prompts=_texts(data.get("prompts", ()), f"{source}: prompts"),
            variations=_texts(data.get("variations", ("",)), f"{source}: variations") or ("",),
            attributes=_attributes(data.get("attributes") or {}, f"{source}: attributes"),
            classes=parsed_classes,
        )

    @classmethod
    def coerce(cls, config) -> GenerationConfig:
        """``config`` as a :class:`GenerationConfig`: one already, a mapping, a file path, or
        None (the defaults)."""
        if isinstance(config, GenerationConfig):
            return config
        if isinstance(config, Mapping):
            return cls.from_dict(config)
        return cls() if config is None else cls.load(config)

    def to_dict(self) -> dict:
        return {
            "negative_prompt": self.negative_prompt,
            "prompts": list(self.prompts),
            "variations": list(self.variations),
            "attributes": {k: dict(v) for k, v in self.attributes.items()},
            "classes": {k: {kk: (list(vv) if isinstance(vv, tuple) else vv)
                            for kk, vv in v.items()} for k, v in self.classes.items()},
        }

    def for_class(self, class_name: str) -> dict:
        """The resolved settings of one class: prompts, variations, negative prompt, attributes."""
        own = self.classes.get(class_name, {})
        attributes = {k: dict(v) for k, v in self.attributes.items()}
        attributes.update({k: dict(v) for k, v in own.get("attributes", {}).items()})
        prompts = tuple(own.get("prompts") or self.prompts)
        if not prompts:
            suffix = "".join(f", {{{name}}} {name.replace('_', ' ')}" for name in attributes)
            prompts = (DEFAULT_TEMPLATE + suffix,)
        settings = {
            "prompts": list(prompts),
            "variations": list(own.get("variations") or self.variations or ("",)),
            "negative_prompt": own.get("negative_prompt", self.negative_prompt),
            "attributes": attributes,
        }
        _check_templates(class_name, settings)
        return settings


def _text(value, where) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {type(value).__name__}")
    return value


def _texts(value, where) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of text")
    return tuple(value)


def _attributes(value, where) -> dict[str, dict[str, float]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of attribute -> {{value: weight}}")
    out = {}
    for name, dist in value.items():
        name = str(name)
        if not name.isidentifier():
            raise ConfigError(f"{where}: attribute name {name!r} must be a plain identifier "
                              "(letters, digits, underscores) to be usable in templates")
        if isinstance(dist, Sequence) and not isinstance(dist, str):
            dist = {str(v): 1.0 for v in dist}
        if not isinstance(dist, Mapping) or not dist:
            raise ConfigError(f"{where}.{name}: expected {{value: weight}} or a list of values")
        weights = {}
        for option, weight in dist.items():
            try:
                weight = float(weight)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}.{name}.{option}: weight must be a number, "
                                  f"got {weight!r}") from None
            if not math.isfinite(weight) or weight <= 0:
                raise ConfigError(f"{where}.{name}.{option}: weight must be positive, "
                                  f"got {weight}")
            weights[str(option)] = weight
        out[name] = weights
    return out


def _check_templates(class_name, settings) -> None:
    allowed = {"class", "class_text", *settings["attributes"]}
    for text in [*settings["prompts"], *settings["variations"]]:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as error:
            raise ConfigError(f"class {class_name}: bad template {text!r}: {error}") from None
        unknown = sorted(f for f in fields if f not in allowed)
        if unknown:
            raise ConfigError(
                f"class {class_name}: template {text!r} uses unknown placeholder(s) "
                f"{', '.join('{' + u + '}' for u in unknown)}; available: "
                f"{', '.join('{' + a + '}' for a in sorted(allowed))}"
            )


# ------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PlanItem:
    """One image the plan asks for."""

    class_name: str
    index: int
    record_id: str
    seed: int
    prompt: str
    negative_prompt: str | None
    attributes: dict
    plan_seed: int
    #: the training image this one is a variation of (None: sampled from noise)
    source_id: str | None = None
    #: how much noise the variation adds to its source (1.0 would ignore it)
    strength: float | None = None

    def seed_for(self, attempt: int) -> int:
        """Seed of attempt ``attempt`` (0 is the first): new and deterministic for each retry."""
        if attempt == 0:
            return self.seed
        return derive_seed(self.plan_seed, self.class_name, self.index, attempt)


@dataclass
class GenerationPlan:
    """How many images each class needs, with prompt settings and exact attribute quotas.

    Build one with :func:`make_plan`; save and reload it with :meth:`save` / :meth:`load`.
    The plan is a pure function of the data, the options and the config: the same inputs give
    the same ``plan.json``, and :meth:`items` expands it into the same images every time.
    """

    data: str | None
    class_names: tuple[str, ...]
    target_per_class: int
    min_threshold: int
    seed: int
    classes: dict
    balance: dict
    config: dict
    prompt_set_sha256: str
    #: Variations of real images (``strength``, ``fraction``, and the ``split`` their sources
    #: were drawn from), or None; each class entry then lists its ``source_ids``.
    variation: dict | None = None

    @property
    def total_to_generate(self) -> int:
        return sum(entry["generate"] for entry in self.classes.values())

    def to_dict(self) -> dict:
        # A plan without variations keeps the layout (and hash) it always had.
        variation = {} if self.variation is None else {"variation": self.variation}
        return {
            "format": PLAN_FORMAT,
            "data": self.data,
            "class_names": list(self.class_names),
            "target_per_class": self.target_per_class,
            "min_threshold": self.min_threshold,
            "seed": self.seed,
            "total_to_generate": self.total_to_generate,
            "classes": self.classes,
            "balance": self.balance,
            "prompt_set_sha256": self.prompt_set_sha256,
            "config": self.config,
            **variation,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @property
    def sha256(self) -> str:
        return canonical_sha256(self.to_dict())

    def save(self, path) -> Path:
        from genaug.io import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(path, self.to_json().encode("utf-8"))
        return path

    @classmethod
    def load(cls, path) -> GenerationPlan:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"plan not found: {path} (create one with `genaug plan`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ConfigError(f"{path} is not a valid plan: {error}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data, *, source="plan") -> GenerationPlan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ConfigError(f"{source} is not a genaug plan (format {PLAN_FORMAT!r} expected)")
        try:
            plan = cls(
                data=data.get("data"),
                class_names=tuple(data["class_names"]),
                target_per_class=int(data["target_per_class"]),
                min_threshold=int(data["min_threshold"]),
                seed=int(data["seed"]),
                classes=dict(data["classes"]),
                balance=dict(data["balance"]),
                config=dict(data.get("config") or {}),
                prompt_set_sha256=str(data["prompt_set_sha256"]),
                variation=data.get("variation"),
            )
            for name, entry in plan.classes.items():
                if name not in plan.class_names:
                    raise ValueError(f"class {name!r} not in class_names")
                for key in ("current", "generate", "prompts", "variations", "attributes"):
                    entry[key]  # noqa: B018 - presence check
                if plan.variation is not None:
                    entry["source_ids"]  # noqa: B018 - presence check
            if plan.variation is not None:
                float(plan.variation["strength"]), float(plan.variation["fraction"])
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{source} is not a valid plan: missing or bad {error}") from None
        return plan

    def items(self, class_name: str) -> list[PlanItem]:
        """The images planned for ``class_name``, in order, each with its seed and prompt."""
        if class_name not in self.classes:
            raise ConfigError(f"class {class_name!r} is not in the plan")
        entry = self.classes[class_name]
        n = int(entry["generate"])
        if n == 0:
            return []
        columns = {}
        for name, spec in entry["attributes"].items():
            values = [v for v, q in spec["quotas"].items() for _ in range(int(q))]
            rng = np.random.default_rng(derive_seed(self.seed, class_name, "attribute", name))
            columns[name] = [values[i] for i in rng.permutation(len(values))]
        prompts, variations = entry["prompts"], entry["variations"]
        text = class_name.replace("_", " ").replace("-", " ")
        sources = entry.get("source_ids") or []
        fraction = float(self.variation["fraction"]) if self.variation and sources else 0.0
        items, made_from_sources = [], 0
        for index in range(n):
            source_id = strength = None
            if fraction and is_variation(index, fraction):
                # each training image in turn, in the plan's seeded order
                source_id = sources[made_from_sources % len(sources)]
                strength = float(self.variation["strength"])
                made_from_sources += 1
            attributes = {name: column[index] for name, column in columns.items()}
            template = prompts[index % len(prompts)]
            suffix = variations[(index // len(prompts)) % len(variations)]
            prompt = (template + suffix).format(**{"class": class_name, "class_text": text},
                                                **attributes)
            items.append(PlanItem(
                class_name=class_name,
                index=index,
                record_id=f"{class_name}-{index:06d}",
                seed=derive_seed(self.seed, class_name, index, 0),
                prompt=prompt,
                negative_prompt=entry.get("negative_prompt"),
                attributes=attributes,
                plan_seed=self.seed,
                source_id=source_id,
                strength=strength,
            ))
        return items

    def summary_lines(self) -> list[str]:
        """A small table for the terminal."""
        width = max([len("class"), *(len(c) for c in self.classes)])
        lines = [f"{'class':<{width}}  {'current':>8}  {'target':>7}  {'generate':>8}  "
                 f"{'final':>7}"]
        for name, entry in self.classes.items():
            lines.append(f"{name:<{width}}  {entry['current']:>8}  {entry['target']:>7}  "
                         f"{entry['generate']:>8}  {entry['final']:>7}")
        lines.append(f"total images to generate: {self.total_to_generate}")
        if self.variation is not None:
            made = sum(item.source_id is not None for name in self.class_names
                       for item in self.items(name))
            lines.append(f"variations of training images: {made} (strength "
                         f"{self.variation['strength']}; sources from "
                         f"{self.variation['split']['source']})")
        balance = self.balance
        if balance["ok"]:
            lines.append(f"balance check: OK (every class >= {balance['min_required']} and >= "
                         f"{int(BALANCE_RATIO * 100)}% of the largest, {balance['largest']})")
        else:
            lines.append("balance check: FAILED")
            lines.extend(f"  - {p}" for p in balance["problems"])
        return lines


def make_plan(
    data,
    *,
    target_per_class: int,
    min_threshold: int | None = None,
    class_names: Sequence[str] | None = None,
    config: GenerationConfig | Mapping | str | Path | None = None,
    seed: int = 0,
    variation_strength: float | None = None,
    variation_fraction: float = 1.0,
    val_split: float = 0.1,
    test_split: float = 0.2,
    split_seed: int = 0,
) -> GenerationPlan:
    """Plan how many synthetic images each class needs to reach ``target_per_class``.

    Parameters
    ----------
    data : path-like or DatasetIndex
        The real images (a class-folder directory or a CSV manifest).
    target_per_class : int
        Number of images (real + synthetic) every class should reach. Classes that already
        have more keep what they have and get nothing generated.
    min_threshold : int, optional
        The smallest acceptable final count of a class (defaults to ``target_per_class``).
    class_names : sequence of str, optional
        Classes in order; may name classes with no real image yet.
    config : GenerationConfig, mapping or path, optional
        Prompt templates, variation suffixes, a negative prompt and attribute distributions.
    seed : int, default 0
        Base of every per-image seed and of the attribute assignment.
    variation_strength : float in (0, 1], optional
        Make images as variations of the class's real training images: each is noised to
        ``strength * T`` and denoised toward its class (SDEdit, as img2img does; 0.3-0.7
        keeps them near the data). Each planned image records its ``source_id``. None:
        every image is sampled from noise.
    variation_fraction : float in (0, 1], default 1.0
        Share of each class's planned images made as variations (the rest from noise).
    val_split, test_split, split_seed : default 0.1, 0.2, 0
        The split of ``genaug train`` (its ``--val-split``, ``--test-split`` and ``--seed``):
        sources are drawn from its training images only (a manifest's ``split`` column is
        obeyed; ``test_split=0`` when the test images live elsewhere). Training with another
        split still never sees a variation of one of its held-out images: those are left
        out by their ``source_id``.

    Returns
    -------
    GenerationPlan
        Per class: current count, target, images to generate, final count, attribute quotas
        (exact integers that add up, by largest-remainder rounding) and prompt settings; plus
        the balance check (every class at least ``min_threshold`` and at least 80 % of the
        largest).
    """
    # 1. Check the targets, index the real images and read the prompt settings.
    target_per_class, min_threshold = _check_targets(target_per_class, min_threshold)
    index, source = _real_index(data, class_names)
    cfg = GenerationConfig.coerce(config)
    unknown = sorted(set(cfg.classes) - set(index.class_names))
    if unknown:
        raise ConfigError(f"config names class(es) not in the dataset: {', '.join(unknown)} "
                          f"(classes: {', '.join(index.class_names)}; use `class_names` to add "
                          "classes with no real image yet)")
    # 2. Per class: how many images to generate, with its prompts and attribute quotas.
    settings = {name: cfg.for_class(name) for name in index.class_names}
    classes = {name: _class_entry(settings[name], current=int(current), target=target_per_class)
               for name, current in zip(index.class_names, index.counts())}
    variation = None
    if variation_strength is not None:
        variation = _variation_sources(index, classes, strength=variation_strength,
                                       fraction=variation_fraction, val_split=val_split,
                                       test_split=test_split, split_seed=split_seed, seed=seed)
    # 3. The plan, with its balance check and the hash of the prompt settings it uses.
    prompt_set = {name: {k: own[k] for k in PROMPT_KEYS} for name, own in settings.items()}
    return GenerationPlan(
        data=source,
        class_names=tuple(index.class_names),
        target_per_class=target_per_class,
        min_threshold=min_threshold,
        seed=int(seed),
        classes=classes,
        balance=balance_check({n: e["final"] for n, e in classes.items()}, min_threshold),
        config=cfg.to_dict(),
        prompt_set_sha256=canonical_sha256(prompt_set),
        variation=variation,
    )


def is_variation(index: int, fraction: float) -> bool:
    """Whether image ``index`` of a class is a variation when ``fraction`` of them are
    (spread evenly: with 0.5, every second image)."""
    return int(np.floor((index + 1) * fraction)) > int(np.floor(index * fraction))


def split_like_train(index, *, val_split: float, test_split: float, seed: int):
    """The split ``genaug train`` makes with ``--val-split``, ``--test-split`` and
    ``--seed`` (0 for a split: none, or the manifest's)."""
    from genaug.data import split_dataset

    return split_dataset(index, validation_split=val_split or None,
                         test_split=test_split or None, seed=seed)


def _variation_sources(index, classes: dict, *, strength: float, fraction: float,
                       val_split: float, test_split: float, split_seed: int,
                       seed: int) -> dict:
    """Give each class entry its ``source_ids`` (the class's training images, in a seeded
    order) and return the plan's ``variation`` settings."""
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"`variation_strength` must be in (0, 1], got {strength}")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"`variation_fraction` must be in (0, 1], got {fraction}")
    if not 0.0 <= val_split < 1.0 or not 0.0 <= test_split < 1.0:
        raise ConfigError(f"`val_split` and `test_split` must be in [0, 1), got {val_split} "
                          f"and {test_split}")
    splits = split_like_train(index, val_split=val_split, test_split=test_split,
                              seed=split_seed)
    train = splits.train
    for label, name in enumerate(train.class_names):
        ids = [rid for rid, y in zip(train.ids, train.labels) if y == label]
        order = np.random.default_rng(derive_seed(seed, name, "sources")).permutation(len(ids))
        classes[name]["source_ids"] = [ids[i] for i in order] if classes[name]["generate"] else []
    return {"strength": float(strength), "fraction": float(fraction),
            "split": {"val_split": val_split, "test_split": test_split, "seed": split_seed,
                      "source": f"the training split (validation: {splits.validation_source}; "
                                f"test: {splits.test_source})"}}


#: The settings of a class that make up its prompt set (hashed into ``prompt_set_sha256``).
PROMPT_KEYS = ("prompts", "variations", "negative_prompt", "attributes")


def _check_targets(target_per_class, min_threshold) -> tuple[int, int]:
    if int(target_per_class) < 1:
        raise ConfigError(f"`target_per_class` must be at least 1, got {target_per_class}")
    target_per_class = int(target_per_class)
    min_threshold = target_per_class if min_threshold is None else int(min_threshold)
    if min_threshold < 0:
        raise ConfigError(f"`min_threshold` must not be negative, got {min_threshold}")
    if min_threshold > target_per_class:
        raise ConfigError(f"`min_threshold` ({min_threshold}) cannot exceed "
                          f"`target_per_class` ({target_per_class}): the plan never generates "
                          "beyond the target")
    return target_per_class, min_threshold


def _real_index(data, class_names):
    """The real images' index and the plan's ``data`` field (the folder, when there is one)."""
    from genaug.data import DatasetIndex

    if isinstance(data, DatasetIndex):
        return data, (None if data.root is None else str(data.root))
    return (DatasetIndex.load(data, class_names=class_names, validate=True),
            str(Path(data).resolve()))


def _class_entry(settings: dict, *, current: int, target: int) -> dict:
    """One class of the plan: counts, prompt settings and exact attribute quotas (by
    largest-remainder rounding, so they add up to the images to generate)."""
    generate = max(0, target - current)
    attribute_plan = {}
    for attr, dist in settings["attributes"].items():
        values, weights = list(dist), [dist[v] for v in dist]
        total = float(sum(weights))
        quotas = largest_remainder(weights, generate) if generate else [0] * len(values)
        attribute_plan[attr] = {
            "distribution": {v: w / total for v, w in zip(values, weights)},
            "quotas": dict(zip(values, quotas)),
        }
    return {"current": current, "target": target, "generate": generate,
            "final": current + generate, "prompts": settings["prompts"],
            "variations": settings["variations"], "negative_prompt": settings["negative_prompt"],
            "attributes": attribute_plan}


def balance_check(final_counts: Mapping[str, int], min_threshold: int,
                  ratio: float = BALANCE_RATIO) -> dict:
    """Every class at least ``min_threshold`` and at least ``ratio`` of the largest class."""
    largest = max(final_counts.values()) if final_counts else 0
    problems, per_class = [], {}
    for name, final in final_counts.items():
        share = final / largest if largest else 1.0
        per_class[name] = {"final": int(final), "share_of_largest": round(share, 4),
                           "meets_minimum": final >= min_threshold,
                           "meets_ratio": final >= ratio * largest}
        if final < min_threshold:
            problems.append(f"{name}: {final} images, below the minimum {min_threshold}")
        if final < ratio * largest:
            problems.append(f"{name}: {final} images is {share:.0%} of the largest class "
                            f"({largest}); at least {ratio:.0%} needed (raise "
                            "`target_per_class`)")
    return {"ok": not problems, "min_required": int(min_threshold), "ratio_required": ratio,
            "largest": int(largest), "problems": problems, "per_class": per_class}
