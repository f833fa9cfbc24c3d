"""The synthetic recipe: how synthetic images enter training, in one frozen, validated object.

Every setting of the synthetic mixing is one field of :class:`SyntheticRecipe`. A field's
metadata (:class:`RecipeOption`) says how it is set everywhere else: its name in the loaders'
flat keyword arguments and in messages, and its command-line flags with their help. The
loaders, ``genaug train`` / ``genaug compare`` and the training application read the fields
from there, so a new setting is one field here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields

from genaug.exceptions import ConfigError
from genaug.sampling._allocation import check_cap
from genaug.sampling._fill import check_fill_to
from genaug.sampling._pool import check_pool_cap
from genaug.sampling._schedule import RampSchedule, check_schedule

#: The default largest synthetic share of a class's draws in an epoch.
DEFAULT_CAP = 0.6


@dataclass(frozen=True)
class RecipeFlag:
    """One command-line flag of a recipe field (``genaug train`` and ``genaug compare``).

    ``kind`` is the value it takes: ``float`` or ``int`` (within ``low`` .. ``high``, each
    bound excluded where ``low_open`` / ``high_open``), ``bool`` (an on/off flag), ``tuple``
    (two floats in ``low`` .. ``high``), or ``str``: text the field's own check turns into its
    value.
    """

    name: str
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False


@dataclass(frozen=True)
class RecipeOption:
    """How a :class:`SyntheticRecipe` field is set outside the recipe.

    Attributes
    ----------
    keyword : str
        Its name in the loaders' keyword arguments and in messages (``synthetic_cap``); the
        command line maps it to the field's first flag.
    flags : tuple of RecipeFlag
        Its command-line flags; with more than one, at most one may be given.
    check : callable
        ``check(value) -> value``: validates and normalises a value, raising a one-line
        :class:`~genaug.exceptions.ConfigError` that names ``keyword``.
    loader : bool, default True
        Whether the loaders take it as the keyword argument ``keyword``; the schedule's
        fields are resolved against the run's length instead (:meth:`SyntheticRecipe.schedule`).
    needs_source : bool, default True
        Whether setting it means nothing without synthetic images (``genaug train`` then
        refuses it without ``--synthetic-cache`` or ``--live-generator``).
    """

    keyword: str
    flags: tuple[RecipeFlag, ...]
    check: Callable
    loader: bool = True
    needs_source: bool = True


def check_ratio(ratio):
    """Validate ``synthetic_ratio``: None, a float in [0, 1] or a ``(low, high)`` range."""
    if ratio is None:
        return None
    if isinstance(ratio, (tuple, list)):
        if len(ratio) != 2:
            raise ConfigError(f"a synthetic ratio range is (low, high), got {ratio!r}")
        low, high = float(ratio[0]), float(ratio[1])
        if not 0.0 <= low <= high <= 1.0:
            raise ConfigError(f"synthetic ratio range must satisfy 0 <= low <= high <= 1, "
                              f"got {low}, {high}")
        return (low, high)
    value = float(ratio)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"synthetic_ratio must be in [0, 1], got {value}")
    return value


def check_classes(classes):
    """Validate ``synthetic_classes``: None, class names, or one string ``"a,b,c"``."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = [name.strip() for name in classes.split(",") if name.strip()]
        if not classes:
            raise ConfigError("synthetic_classes: expected a comma-separated list of class "
                              "names")
    return tuple(str(name) for name in classes)


def check_weight(weight) -> float:
    """Validate ``synthetic_weight``: a float >= 0."""
    if float(weight) < 0:
        raise ConfigError(f"synthetic_weight must be >= 0, got {weight}")
    return float(weight)


def check_label_smoothing(eps) -> float:
    """Validate ``synthetic_label_smoothing``: a float in [0, 1)."""
    if not 0.0 <= float(eps) < 1.0:
        raise ConfigError(f"synthetic_label_smoothing must be in [0, 1), got {eps}")
    return float(eps)


def check_cooldown(cooldown):
    """Validate ``cooldown_epochs``: a number of epochs >= 0 or a share of them ``"P%"``
    (kept as text, resolved by :meth:`SyntheticRecipe.cooldown_for`)."""
    text = str(cooldown).strip()
    if text.endswith("%"):
        cooldown_share(text)
        return text
    try:
        epochs = int(text)
    except ValueError:
        raise ConfigError(f"cooldown_epochs must be a number of epochs or a share such as "
                          f"'20%', got {cooldown!r}") from None
    return check_schedule(cooldown_epochs=epochs)[2]


def cooldown_share(text: str) -> float:
    """``"P%"`` as a share in [0, 1]."""
    try:
        share = float(text.strip()[:-1]) / 100.0
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"cooldown_epochs must be a number of epochs or a share such as "
                          f"'20%', got {text!r}")
    return share


def _option(keyword: str, *flags: RecipeFlag, check: Callable, loader: bool = True,
            needs_source: bool = True) -> dict:
    return {"option": RecipeOption(keyword, flags, check, loader=loader,
                                   needs_source=needs_source)}


@dataclass(frozen=True, kw_only=True)
class SyntheticRecipe:
    """How synthetic images enter training, validated once.

    The loaders take these settings as flat keyword arguments (``synthetic_ratio=0.3``,
    Keras style) or as ``synthetic=SyntheticRecipe(...)``; ``genaug train`` and
    ``genaug compare`` as the flags in each field's :class:`RecipeOption`. Invalid values
    raise a one-line :class:`~genaug.exceptions.ConfigError` naming the setting.

    Parameters
    ----------
    ratio : None, float in [0, 1] or (low, high)
        Share of each batch's eligible slots that becomes synthetic; with a range every batch
        draws its own share. None fills each class's repeated draws instead, up to ``cap``.
    ramp_fraction : float in [0, 1], default 0.25
        Share of a run's epochs over which the synthetic share rises from 0 (after the
        warm-up) to its full value (see :class:`~genaug.sampling.RampSchedule`).
    warmup_epochs : int >= 0, default 0
        First epochs trained on real images only; ``genaug train`` selects or allocates the
        synthetic images with the run's own model after them.
    cap : float in [0, 1] or dict, default 0.6
        At most this share of a class's draws in an epoch is synthetic. A dict gives classes
        their own share (``{"shirt": 0.9}``; classes it does not name keep
        :data:`DEFAULT_CAP`), as ``genaug train --synthetic-allocation confusion`` does after
        its warm-up (:func:`~genaug.sampling.allocate_by_confusion`).
    pool_cap : float in (0, 1) or None
        At most this share of a class's training images, real + distinct synthetic, is
        synthetic over the whole run: the class's pool is limited, by a seeded choice, to
        ``floor(cap / (1 - cap) * n_real)`` images. Classes without real images are exempt.
    classes : sequence of str or None
        Classes that may receive synthetic images; default: the minority classes.
    weight : float >= 0, default 1.0
        Sample weight of a synthetic slot relative to a real one.
    mixup : bool, default False
        Blend each synthetic image with a real image of its class.
    cooldown_epochs : int >= 0 or "P%", default 0
        The last epochs of a run, trained on real images only; ``"20%"`` is a share of the
        run's epochs (:meth:`cooldown_for`).
    fill_to : int, "mean", "median" or None
        Fill threshold ``N_t``: only classes with fewer real training images receive synthetic
        ones, each in at most ``(N_t - n) / N_t`` of its draws; ``"mean"`` / ``"median"``:
        the mean / median real images per class (:func:`~genaug.sampling.resolve_fill_to`).
        With ``cap`` the stricter share wins.
    label_smoothing : float in [0, 1), default 0
        Synthetic slots get soft targets (``1 - eps`` on their class, ``eps`` spread evenly
        over the others); real slots stay hard. Above 0 the loaders yield one-hot float
        targets: train with ``categorical_crossentropy``.

    Examples
    --------
    >>> recipe = SyntheticRecipe(ratio=(0.2, 0.5), cooldown_epochs="20%")
    >>> recipe.schedule(epochs=10).factors()[-3:]
    [1.0, 0.0, 0.0]
    """

    ratio: float | tuple[float, float] | None = field(default=None, metadata=_option(
        "synthetic_ratio",
        RecipeFlag("--synthetic-ratio", "Share of each eligible batch slot set drawn from "
                   "synthetic images.", low=0, high=1),
        RecipeFlag("--synthetic-ratio-range", "LO HI: each batch draws its own ratio.",
                   kind=tuple, low=0, high=1),
        check=check_ratio))
    ramp_fraction: float = field(default=0.25, metadata=_option(
        "ramp_fraction",
        RecipeFlag("--ramp-fraction", "Share of the epochs over which the synthetic share "
                   "rises linearly to its full value after the warm-up (0: at once).",
                   low=0, high=1),
        check=lambda value: check_schedule(ramp_fraction=value)[1], loader=False))
    warmup_epochs: int = field(default=0, metadata=_option(
        "warmup_epochs",
        RecipeFlag("--warmup-epochs", "First N epochs trained on real images only (a "
                   "selection or allocation by the run's own model follows them).",
                   kind=int, low=0),
        # It also times the selection and allocation, which need their own source.
        check=lambda value: check_schedule(warmup_epochs=value)[0], loader=False,
        needs_source=False))
    cap: float | Mapping[str, float] = field(default=DEFAULT_CAP, metadata=_option(
        "synthetic_cap",
        RecipeFlag("--synthetic-cap", "Largest share of a class's draws in each epoch that are "
                   "synthetic (over a run, a class may train on more distinct synthetic "
                   "images).", low=0, high=1),
        check=check_cap))
    pool_cap: float | None = field(default=None, metadata=_option(
        "synthetic_pool_cap",
        RecipeFlag("--synthetic-pool-cap", "Largest share of a class's training images (real "
                   "+ distinct synthetic images used over the run) that are synthetic; "
                   "default: no cap.", low=0, high=1, low_open=True, high_open=True),
        check=check_pool_cap))
    classes: tuple[str, ...] | None = field(default=None, metadata=_option(
        "synthetic_classes",
        RecipeFlag("--synthetic-classes", "Classes that may receive synthetic images "
                   "(default: minority).", kind=str),
        check=check_classes))
    weight: float = field(default=1.0, metadata=_option(
        "synthetic_weight",
        RecipeFlag("--synthetic-weight", "Sample weight of a synthetic image relative to a "
                   "real one.", low=0),
        check=check_weight))
    mixup: bool = field(default=False, metadata=_option(
        "mixup", RecipeFlag("--mixup", "Same-class real/synthetic mixup.", kind=bool),
        check=bool))
    cooldown_epochs: int | str = field(default=0, metadata=_option(
        "cooldown_epochs",
        RecipeFlag("--synthetic-cooldown-epochs", "Last N epochs (or a share such as 20%) "
                   "trained on real images only.", kind=str),
        check=check_cooldown, loader=False))
    fill_to: int | str | None = field(default=None, metadata=_option(
        "synthetic_fill_to",
        RecipeFlag("--synthetic-fill-to", "Fill threshold N (or mean/median of the real counts "
                   "per class): only classes with fewer real images get synthetic ones, each "
                   "in at most (N - n) / N of its draws.", kind=str),
        check=check_fill_to))
    label_smoothing: float = field(default=0.0, metadata=_option(
        "synthetic_label_smoothing",
        RecipeFlag("--synthetic-label-smoothing", "Soft targets for synthetic slots only: "
                   "1-EPS on the class.", low=0, high=1, high_open=True),
        check=check_label_smoothing))

    def __post_init__(self):
        for name, option in self.options().items():
            object.__setattr__(self, name, option.check(getattr(self, name)))

    @classmethod
    def options(cls) -> dict[str, RecipeOption]:
        """Every field's :class:`RecipeOption`, by field name, in field order."""
        return {f.name: f.metadata["option"] for f in fields(cls)}

    @classmethod
    def defaults(cls) -> dict:
        """Every field's default, by field name."""
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def from_keywords(cls, arguments: Mapping, *, synthetic: SyntheticRecipe | None = None
                      ) -> SyntheticRecipe:
        """The recipe of a loader's flat keyword arguments (``synthetic_ratio=...``).

        ``arguments`` holds the keywords (a loader's ``locals()``); those it lacks keep their
        defaults. With ``synthetic``, that recipe, and every flat keyword must be left at its
        default.
        """
        given = {name: arguments[option.keyword] for name, option in cls.options().items()
                 if option.loader and option.keyword in arguments}
        if synthetic is None:
            return cls(**given)
        if not isinstance(synthetic, SyntheticRecipe):
            raise ConfigError(f"synthetic must be a SyntheticRecipe, got "
                              f"{type(synthetic).__name__}")
        defaults = cls.defaults()
        both = [cls.options()[name].keyword for name, value in given.items()
                if value != defaults[name]]
        if both:
            raise ConfigError(f"give synthetic=SyntheticRecipe(...) or {', '.join(both)}, "
                              "not both")
        return synthetic

    def changed(self) -> dict:
        """The fields that differ from their defaults, by field name."""
        defaults = self.defaults()
        return {name: getattr(self, name) for name in defaults
                if getattr(self, name) != defaults[name]}

    def needing_source(self) -> list[str]:
        """The settings changed from their defaults that mean nothing without synthetic
        images, by keyword."""
        options = self.options()
        return [options[name].keyword for name in self.changed() if options[name].needs_source]

    def cooldown_for(self, epochs: int) -> int:
        """``cooldown_epochs`` in epochs of a run of ``epochs``. A share ``"P%"`` is
        ``round(P % of epochs)``, at least 1, but never so many that no epoch after the
        warm-up is left to train with synthetic images (then fewer, down to 0)."""
        if not isinstance(self.cooldown_epochs, str):
            return self.cooldown_epochs
        share = cooldown_share(self.cooldown_epochs)
        room = max(int(epochs) - self.warmup_epochs - 1, 0)
        return min(max(1, round(share * int(epochs))), room) if share > 0 else 0

    def schedule(self, *, epochs: int) -> RampSchedule:
        """The :class:`~genaug.sampling.RampSchedule` of a run of ``epochs`` epochs (the
        loaders' ``schedule`` argument)."""
        return RampSchedule(epochs=epochs, warmup_epochs=self.warmup_epochs,
                            ramp_fraction=self.ramp_fraction,
                            cooldown_epochs=self.cooldown_for(epochs))
