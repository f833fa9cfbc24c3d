"""The arms of an ablation: one training recipe each, everything else held equal."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

from genaug.exceptions import ConfigError


@dataclass(frozen=True)
class Arm:
    """One training recipe of ``genaug compare``.

    Attributes
    ----------
    name : str
        Identifier used on the command line and in file names.
    subject : str
        What the arm adds, in words, for verdicts ("balanced sampling").
    overrides : dict
        ``TrainConfig`` fields this arm sets; all other fields are shared by every arm.
    needs_cache : bool
        Whether the arm trains on a synthetic cache.
    """

    name: str
    subject: str
    overrides: dict
    needs_cache: bool = False


ARMS = {
    "plain": Arm("plain", "plain training",
                 {"balanced": False, "class_weights": False, "balanced_batches": False}),
    "class_weights": Arm("class_weights", "class weights",
                         {"balanced": False, "class_weights": True, "balanced_batches": False}),
    "balanced": Arm("balanced", "balanced sampling",
                    {"balanced": True, "class_weights": False}),
    "balanced_synthetic": Arm("balanced_synthetic", "balanced sampling with synthetic data",
                              {"balanced": True, "class_weights": False}, needs_cache=True),
}

#: ``TrainConfig`` fields that only apply when training with a synthetic cache.
SYNTHETIC_FIELDS = ("synthetic_ratio", "synthetic_ratio_range", "ramp_fraction", "warmup_epochs",
                    "synthetic_cap", "synthetic_classes", "synthetic_weight", "mixup",
                    "live_generator", "live_lora")

#: Comparisons made when both arms are present: (arm, reference, subject of the verdict).
COMPARISONS = (
    ("class_weights", "plain", "class weights"),
    ("balanced", "plain", "balanced sampling"),
    ("balanced_synthetic", "plain", "balanced sampling with synthetic data"),
    ("balanced_synthetic", "balanced", "synthetic data"),
)


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


def arm_config(base, arm: Arm, *, seed: int, output_dir, synthetic_cache=None):
    """The ``TrainConfig`` of one (arm, seed) run.

    Only the arm's own fields, the seed, and where files go differ from ``base``. The held-out
    test set depends on ``base.test_dir`` or, without one, on the seed alone (``run_training``
    splits the real images per class with that seed before any balancing), so at each seed all
    arms are evaluated on the same real test images.
    """
    if arm.needs_cache and synthetic_cache is None:
        raise ConfigError(f"arm {arm.name} needs --synthetic-cache")
    run_dir = Path(output_dir) / "compare" / arm.name / f"seed{seed}"
    reset = {}
    if not arm.needs_cache:
        # Synthetic-mixing options only mean something with a cache; arms without one get the
        # defaults so that they are not rejected (or silently changed) by those options.
        reset = {f.name: f.default for f in fields(base)
                 if f.name in SYNTHETIC_FIELDS and f.default is not MISSING}
    return replace(
        base,
        **reset,
        **arm.overrides,
        seed=seed,
        synthetic_cache=str(synthetic_cache) if arm.needs_cache else None,
        output_dir=str(run_dir),
        model_name=f"compare_{arm.name}_seed{seed}",
    )
