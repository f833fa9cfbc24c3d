"""The arms of an ablation: one training recipe each, everything else held equal.

Arms live in a registry (:data:`ARMS`, extended with :func:`register_arm`), so a recipe added
later is one registration, and ``genaug compare --arms`` runs it by name.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from genaug.exceptions import ConfigError
from genaug.sampling import SyntheticRecipe

#: The arm every other arm is compared with, and the one synthetic arms build on.
PLAIN = "plain"
BALANCED = "balanced"
_DERIVED = "<derived>"  # Arm.reference not given: derived from needs_cache
#: The caches an arm may train on (``Arm.cache``), each a ``genaug compare`` option
#: ``--<kind>-cache``.
CACHE_KINDS = ("synthetic", "variation")


@dataclass(frozen=True)
class Arm:
    """One training recipe of ``genaug compare``.

    Attributes
    ----------
    name : str
        Identifier used on the command line and in file names.
    subject : str
        What the arm adds to its ``reference`` arm, in words, for verdicts ("synthetic data"
        in "synthetic data helped (balanced accuracy +0.031, ...)").
    overrides : dict
        Fields of the training run's options (``TrainConfig``) other than its synthetic
        recipe that this arm sets; all other fields are shared by every arm.
        ``synthetic_cache`` here gives the arm its own cache instead of the comparison's.
    recipe : SyntheticRecipe or None
        The arm's change of the comparison's synthetic recipe, stated as a recipe: the
        fields where it differs from ``SyntheticRecipe()`` replace the comparison's; the
        others stay as the comparison sets them. None: the comparison's recipe.
    pins_recipe : bool, default False
        Train on ``recipe`` exactly, whatever the comparison's recipe says (an arm that
        keeps a recipe as it was).
    needs_cache : bool
        Whether the arm trains on a cache of generated images.
    cache : {"synthetic", "variation"}, default "synthetic"
        Which of the comparison's caches it trains on: ``--synthetic-cache`` (images sampled
        from noise) or ``--variation-cache`` (variations of real training images, made by
        ``genaug generate`` from a plan with ``--variation-strength``).
    reference : str or None
        The arm it is a change of: its paired differences are computed against it (and, when
        that is not ``plain``, against ``plain`` too). Default ``balanced`` for an arm that
        needs a cache, else ``plain``; ``plain`` itself has none.
    """

    name: str
    subject: str
    overrides: dict = field(default_factory=dict)
    recipe: SyntheticRecipe | None = None
    pins_recipe: bool = False
    needs_cache: bool = False
    reference: str | None = _DERIVED
    cache: str = "synthetic"

    def __post_init__(self):
        if self.cache not in CACHE_KINDS:
            raise ConfigError(f"arm {self.name}: cache must be one of {', '.join(CACHE_KINDS)}, "
                              f"got {self.cache!r}")
        if self.reference == _DERIVED:
            default = None if self.name == PLAIN else BALANCED if self.needs_cache else PLAIN
            object.__setattr__(self, "reference", default)
        if not self.name or "," in self.name or "/" in self.name:
            raise ConfigError(f"an arm name must be non-empty without ',' or '/': "
                              f"{self.name!r}")
        if self.reference == self.name:
            raise ConfigError(f"arm {self.name} cannot be its own reference")
        if self.recipe is not None and not self.needs_cache:
            raise ConfigError(f"arm {self.name}: a synthetic recipe needs needs_cache=True")
        if self.pins_recipe and self.recipe is None:
            raise ConfigError(f"arm {self.name}: pins_recipe needs a recipe")

    def recipe_for(self, shared: SyntheticRecipe) -> SyntheticRecipe:
        """The arm's synthetic recipe in a comparison whose recipe is ``shared``."""
        if self.recipe is None:
            return shared
        if self.pins_recipe:
            return self.recipe
        return replace(shared, **self.recipe.changed())

    def describe(self) -> dict:
        """The arm's settings, as ``compare.json`` records them."""
        return {"overrides": self.overrides, "subject": self.subject,
                "reference": self.reference,
                "recipe": None if self.recipe is None else (
                    asdict(self.recipe) if self.pins_recipe else self.recipe.changed()),
                "pins_recipe": self.pins_recipe, "synthetic_cache": self.needs_cache,
                "cache": self.cache if self.needs_cache else None}


#: Registered arms by name, in registration order (the order of the help text).
ARMS: dict[str, Arm] = {}


def register_arm(arm: Arm, *, replace_existing: bool = False) -> Arm:
    """Add ``arm`` to :data:`ARMS` so that ``run_compare`` and ``genaug compare --arms``
    accept its name; its reference must already be registered."""
    if arm.name in ARMS and not replace_existing:
        raise ConfigError(f"arm {arm.name} is already registered")
    if arm.reference is not None and arm.reference not in ARMS:
        raise ConfigError(f"arm {arm.name}: unknown reference arm {arm.reference}")
    ARMS[arm.name] = arm
    return arm


#: The options of balanced sampling without class weights, which most arms build on.
BALANCED_SAMPLING = {"balanced": True, "class_weights": False}

#: Warm-up of the arms that adapt the recipe with the run's own model (selection, allocation):
#: it selects or allocates after these real-only epochs.
ADAPT_WARMUP_EPOCHS = 2

for _arm in (
    Arm(PLAIN, "plain training",
        {"balanced": False, "class_weights": False, "balanced_batches": False}),
    Arm("class_weights", "class weights",
        {"balanced": False, "class_weights": True, "balanced_batches": False}),
    Arm(BALANCED, "balanced sampling", BALANCED_SAMPLING),
    Arm("balanced_synthetic", "synthetic data", BALANCED_SAMPLING, needs_cache=True),
    # DiffuLT's feature-space selection of the cache (docs/synthetic.md); without
    # --select-model the run's own model selects after --warmup-epochs (at least 1).
    Arm("balanced_synthetic_select", "feature-distance selection",
        {**BALANCED_SAMPLING, "synthetic_select": "feature-distance"},
        recipe=SyntheticRecipe(warmup_epochs=ADAPT_WARMUP_EPOCHS),
        needs_cache=True, reference="balanced_synthetic"),
):
    register_arm(_arm)

#: Name of the arm :func:`oracle_arm` makes.
ORACLE = "oracle"


def oracle_arm(cache) -> Arm:
    """The "perfect generator" arm: ``balanced_synthetic``'s recipe on ``cache``, a cache of
    real images held out from training (``genaug cache import``), so that it bounds what any
    generator could add with that recipe. ``genaug compare --oracle-cache C`` registers it."""
    return Arm(ORACLE, "held-out real images in place of synthetic ones",
               {**BALANCED_SAMPLING, "synthetic_cache": str(cache)},
               needs_cache=True)


# The recipe's levers, one arm each, all changes of ``balanced_synthetic`` (reference balanced).
#: The synthetic recipe's defaults as they were when the levers arrived: the
#: ``balanced_synthetic_legacy`` arm pins them, so it stays this recipe when defaults change.
LEGACY_SYNTHETIC_RECIPE = SyntheticRecipe(ratio=None, ramp_fraction=0.25, warmup_epochs=0,
                                          cap=0.6, pool_cap=None, classes=None, weight=1.0,
                                          mixup=False, cooldown_epochs=0, fill_to=None,
                                          label_smoothing=0.0)
#: What the legacy recipe leaves out of the run's other options: no selection or allocation.
LEGACY_ADAPTATION = {"synthetic_select": None, "select_model": None,
                     "synthetic_allocation": None}
for _arm in (
    Arm("balanced_synthetic_cooldown", "synthetic data with a real-only cool-down",
        BALANCED_SAMPLING, recipe=SyntheticRecipe(cooldown_epochs="20%"), needs_cache=True),
    Arm("balanced_synthetic_fill", "synthetic data filling classes below the mean count",
        BALANCED_SAMPLING, recipe=SyntheticRecipe(fill_to="mean"), needs_cache=True),
    Arm("balanced_synthetic_weight03", "synthetic data weighted 0.3",
        BALANCED_SAMPLING, recipe=SyntheticRecipe(weight=0.3), needs_cache=True),
    Arm("balanced_synthetic_confusion", "synthetic images allocated by validation confusion",
        {**BALANCED_SAMPLING, "synthetic_allocation": "confusion"},
        recipe=SyntheticRecipe(warmup_epochs=ADAPT_WARMUP_EPOCHS), needs_cache=True),
    Arm("balanced_synthetic_smooth", "synthetic data with label smoothing 0.1",
        BALANCED_SAMPLING, recipe=SyntheticRecipe(label_smoothing=0.1), needs_cache=True),
    Arm("balanced_synthetic_mixup", "synthetic images blended with real ones of their class",
        BALANCED_SAMPLING, recipe=SyntheticRecipe(mixup=True), needs_cache=True),
    Arm("balanced_synthetic_legacy", "synthetic data (the first default recipe)",
        {**BALANCED_SAMPLING, **LEGACY_ADAPTATION}, recipe=LEGACY_SYNTHETIC_RECIPE,
        pins_recipe=True, needs_cache=True),
):
    register_arm(_arm)

#: The standard augmentation of the stronger baseline: synthetic images must beat it, not
#: only balanced sampling.
STANDARD_AUGMENT = ("flip", "translation")
for _arm in (
    # It is balanced sampling plus augmentation: against plain, its subject is both.
    Arm("balanced_augment", "standard augmentation (flip, translation)",
        {**BALANCED_SAMPLING, "augment": STANDARD_AUGMENT}, reference=BALANCED),
    Arm("balanced_synthetic_augment", "synthetic data on top of standard augmentation",
        {**BALANCED_SAMPLING, "augment": STANDARD_AUGMENT}, needs_cache=True,
        reference="balanced_augment"),
    # Variations of real training images (partial noising and denoising toward the class)
    # in the place of images sampled from noise: the synthetic recipe on --variation-cache.
    Arm("balanced_variation", "variations of real images", BALANCED_SAMPLING,
        needs_cache=True, cache="variation"),
    Arm("balanced_variation_augment", "variations of real images on top of standard "
        "augmentation", {**BALANCED_SAMPLING, "augment": STANDARD_AUGMENT},
        needs_cache=True, reference="balanced_augment", cache="variation"),
):
    register_arm(_arm)


def subject_against(arm: Arm, reference: str) -> str:
    """What ``arm`` adds to ``reference``, following the chain of references:
    ``balanced_synthetic`` against ``plain`` is "balanced sampling with synthetic data"."""
    subjects = []
    current = arm
    while current.name != reference:
        subjects.append(current.subject)
        if current.reference is None or current.reference not in ARMS:
            raise ConfigError(f"arm {arm.name} does not build on {reference}")
        current = ARMS[current.reference]
    return " with ".join(reversed(subjects))


def _builds_on(arm: Arm, reference: str) -> bool:
    while arm.reference is not None:
        if arm.reference == reference:
            return True
        arm = ARMS[arm.reference]
    return False


def comparisons(arm_names) -> list[tuple[str, str, str]]:
    """The paired comparisons among ``arm_names``: ``(arm, reference, subject)``.

    Each arm is compared with ``plain`` and with ``balanced`` (those that are run): with what
    it builds on, the subject is what it adds ("synthetic data" against ``balanced``); an arm
    that does not build on ``balanced`` is compared with it as an alternative ("class weights
    instead of balanced sampling"). ``plain`` and ``balanced`` are not compared with
    themselves, and ``plain`` not with ``balanced`` (that is ``balanced`` against ``plain``).
    """
    out = []
    for name in arm_names:
        arm = ARMS[name]
        # An arm whose reference is neither plain nor balanced (synthetic on top of
        # augmentation) is also compared with that reference when it is run.
        if arm.reference not in (None, PLAIN, BALANCED) and arm.reference in arm_names:
            out.append((name, arm.reference, arm.subject))
        for reference in (PLAIN, BALANCED):
            if reference not in arm_names or name in (PLAIN, reference):
                continue
            if _builds_on(arm, reference):
                out.append((name, reference, subject_against(arm, reference)))
            elif _builds_on(arm, PLAIN) and _builds_on(ARMS[reference], PLAIN):
                out.append((name, reference, f"{subject_against(arm, PLAIN)} instead of "
                                             f"{subject_against(ARMS[reference], PLAIN)}"))
    return out


def parse_arms(names) -> list[Arm]:
    """Arms from names (a comma-separated string or a sequence), in the given order."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names or ())
    if not names:
        raise ConfigError(f"no arms given; choose from {', '.join(ARMS)}")
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"arm(s) listed twice: {', '.join(repeated)}")
    return [ARMS[n] for n in names]


def parse_seeds(seeds) -> list[int]:
    """Seeds from ``"0,1,2"`` or a sequence of ints; at least one, no repeats."""
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"seeds must be comma-separated integers, got {seeds!r}") from None
    seeds = [int(s) for s in (seeds or ())]
    if not seeds:
        raise ConfigError("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("a seed is listed twice")
    return seeds


def arm_config(base, arm: Arm, *, seed: int, output_dir, synthetic_cache=None,
               variation_cache=None):
    """The training options of one (arm, seed) run (trained on ``synthetic_cache`` or
    ``variation_cache``, as :attr:`Arm.cache` says, when it needs a cache).

    Only the arm's own fields, the seed, and where files go differ from ``base`` (a
    dataclass of options, ``TrainConfig`` for the CLI): its ``synthetic`` field holds the
    comparison's :class:`~genaug.sampling.SyntheticRecipe` (the arm's is
    :meth:`Arm.recipe_for` it), and the fields whose metadata says ``synthetic_only`` go back
    to their defaults for an arm without a cache. The held-out test set depends on
    ``base.test_dir`` or, without one, on the seed alone (the training run splits the real
    images per class with that seed before any balancing), so at each seed all arms are
    evaluated on the same real test images.
    """
    # An arm may name its own cache (an oracle arm trains on real held-out images).
    given = variation_cache if arm.cache == "variation" else synthetic_cache
    cache = arm.overrides.get("synthetic_cache", given) if arm.needs_cache else None
    if arm.needs_cache and cache is None:
        raise ConfigError(f"arm {arm.name} needs --{arm.cache}-cache")
    run_dir = Path(output_dir) / "compare" / arm.name / f"seed{seed}"
    names = {f.name for f in fields(base)}
    unknown = sorted(set(arm.overrides) - names)
    if unknown:
        raise ConfigError(f"arm {arm.name} sets unknown option(s): {', '.join(unknown)}")
    if arm.needs_cache:
        synthetic = {"synthetic": arm.recipe_for(base.synthetic)}
    else:
        # Synthetic-mixing options only mean something with a cache; arms without one get the
        # defaults so that they are not rejected (or silently changed) by those options.
        synthetic = {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                     for f in fields(base) if f.metadata.get("synthetic_only")}
    return replace(base, **{
        **synthetic,
        **arm.overrides,
        "seed": seed,
        "synthetic_cache": None if cache is None else str(cache),
        "output_dir": str(run_dir),
        "model_name": f"compare_{arm.name}_seed{seed}",
    })
