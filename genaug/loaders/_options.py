"""The sampling and mixing options of a loader, validated once, in one frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from genaug.exceptions import ConfigError
from genaug.sampling import (
    DEFAULT_CAP,
    Balance,
    check_cap,
    check_fill_to,
    check_pool_cap,
    check_ratio,
)


@dataclass(frozen=True)
class SamplingOptions:
    """What every epoch holds: balancing, class weights and synthetic mixing.

    Both loaders take these options as flat keyword arguments (Keras style) and convert them
    here at once; :func:`~genaug.loaders.build_sampler` turns them into an
    :class:`~genaug.loaders.EpochSampler`. Invalid values raise a one-line
    :class:`~genaug.exceptions.ConfigError` naming the parameter.

    Parameters
    ----------
    balance : Balance or {"none", "oversample", "balanced_batches"}, default "oversample"
    batch_size : int or None, default 32
        None: single images (the ``tf.data`` loader only).
    epoch_size : int, "max" or None
        Slots per epoch in the balanced modes; default classes x largest class.
    shuffle : bool, default True
    seed : int or None
        Same seed, same epochs; None draws one.
    class_weight : dict, "balanced" or None
        Folded into the sample weights; ``"balanced"`` weighs the distribution the loader
        delivers, so balanced sampling is not corrected twice.
    sample_weights : bool or None
        Return sample weights; None: when class weights or a synthetic weight apply.
    synthetic_ratio : None, float in [0, 1] or (low, high)
        Share of each batch's eligible slots that becomes synthetic; None fills each class's
        repeated draws instead, up to ``synthetic_cap``.
    synthetic_cap : float in [0, 1] or dict, default 0.6
        At most this share of a class's draws in an epoch is synthetic. A dict gives classes
        their own share (``{"shirt": 0.9}``; classes it does not name keep 0.6), as
        ``genaug train --synthetic-allocation confusion`` does after its warm-up
        (:func:`~genaug.sampling.allocate_by_confusion`).
    synthetic_pool_cap : float in (0, 1) or None
        At most this share of a class's training images, real + distinct synthetic, is
        synthetic over the whole run: the class's pool is limited, by a seeded choice, to
        ``floor(cap / (1 - cap) * n_real)`` images. Classes without real images are exempt.
    synthetic_classes : sequence of str or None
        Classes that may receive synthetic images; default: the minority classes.
    synthetic_fill_to : int, "mean", "median" or None
        Fill threshold ``N_t``: only classes with fewer real training images receive synthetic
        ones, each in at most ``(N_t - n) / N_t`` of its draws (its share were it filled to
        ``N_t`` images); ``"mean"`` / ``"median"``: the mean / median real images per class
        (:func:`~genaug.sampling.resolve_fill_to`). With ``synthetic_cap`` the stricter share
        wins.
    synthetic_label_smoothing : float in [0, 1), default 0
        Synthetic slots get soft targets (``1 - eps`` on their class, ``eps`` spread evenly
        over the others); real slots stay hard. Above 0, every loader built from these options
        (validation too) yields one-hot float targets: train with ``categorical_crossentropy``.
    synthetic_weight : float >= 0, default 1.0
        Sample weight of a synthetic slot relative to a real one.
    mixup : bool, default False
        Blend each synthetic image with a real image of its class.
    schedule : RampSchedule or None
        Multiplies the synthetic share per epoch.
    exclude_source_ids : iterable of str
        Held-out real image ids; synthetic images derived from them are left out.
    synthetic_ids : iterable of str or None
        Ids of the synthetic images that may be drawn (e.g. those a feature-space selection
        kept, :func:`genaug.sampling.select_by_feature_distance`); None: all of them.
    """

    balance: Balance = Balance.OVERSAMPLE
    batch_size: int | None = 32
    epoch_size: int | str | None = None
    shuffle: bool = True
    seed: int | None = None
    class_weight: Mapping | str | None = None
    sample_weights: bool | None = None
    synthetic_ratio: float | tuple[float, float] | None = None
    synthetic_cap: float | Mapping[str, float] = DEFAULT_CAP
    synthetic_pool_cap: float | None = None
    synthetic_classes: tuple[str, ...] | None = None
    synthetic_weight: float = 1.0
    synthetic_fill_to: int | str | None = None
    synthetic_label_smoothing: float = 0.0
    mixup: bool = False
    schedule: object = None
    exclude_source_ids: frozenset[str] = field(default_factory=frozenset)
    synthetic_ids: frozenset[str] | None = None

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        set_("balance", Balance.of(self.balance))
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or int(self.batch_size) < 1):
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.epoch_size not in (None, "max") and (
                isinstance(self.epoch_size, bool) or not isinstance(self.epoch_size, int)
                or self.epoch_size < 1):
            raise ConfigError(f"epoch_size must be 'max' or a positive integer, "
                              f"got {self.epoch_size!r}")
        if self.seed is not None and (isinstance(self.seed, (bool, float))
                                      or int(self.seed) != self.seed or self.seed < 0):
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.class_weight, str) and self.class_weight != "balanced":
            raise ConfigError(
                f"class_weight must be a dict or 'balanced', got {self.class_weight!r}")
        if self.class_weight is not None and not isinstance(self.class_weight, (str, Mapping)):
            raise ConfigError(f"class_weight must be a dict or 'balanced', "
                              f"got {type(self.class_weight).__name__}")
        set_("synthetic_ratio", check_ratio(self.synthetic_ratio))
        set_("synthetic_cap", check_cap(self.synthetic_cap))
        set_("synthetic_pool_cap", check_pool_cap(self.synthetic_pool_cap))
        if self.synthetic_classes is not None:
            classes = self.synthetic_classes
            if isinstance(classes, str):
                classes = [c.strip() for c in classes.split(",") if c.strip()]
            set_("synthetic_classes", tuple(str(c) for c in classes))
        if float(self.synthetic_weight) < 0:
            raise ConfigError(f"synthetic_weight must be >= 0, got {self.synthetic_weight}")
        set_("synthetic_fill_to", check_fill_to(self.synthetic_fill_to))
        if not 0.0 <= float(self.synthetic_label_smoothing) < 1.0:
            raise ConfigError(f"synthetic_label_smoothing must be in [0, 1), "
                              f"got {self.synthetic_label_smoothing}")
        if self.schedule is not None and not callable(getattr(self.schedule, "factor", None)):
            raise ConfigError("schedule must have a factor(epoch) method, like RampSchedule")
        set_("exclude_source_ids", frozenset(str(s) for s in self.exclude_source_ids))
        if self.synthetic_ids is not None:
            if isinstance(self.synthetic_ids, str):
                raise ConfigError("synthetic_ids must be a collection of ids, not one string")
            set_("synthetic_ids", frozenset(str(s) for s in self.synthetic_ids))

    @classmethod
    def from_arguments(cls, arguments: Mapping) -> SamplingOptions:
        """The options among a loader's keyword arguments (``locals()`` of a loader function
        whose parameters carry the option names)."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls) if f.name in arguments})

    def evaluation(self, *, shuffle: bool | None = None) -> SamplingOptions:
        """The options of a validation or test loader: every image once, no class or sample
        weights (``shuffle`` as given, else as here). A loader built from them gets no
        synthetic source."""
        return replace(self, balance=Balance.NONE, epoch_size=None, class_weight=None,
                       sample_weights=None, shuffle=self.shuffle if shuffle is None else shuffle)
