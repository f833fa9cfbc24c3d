"""The sampling and mixing options of a loader, validated once, in one frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from genaug.exceptions import ConfigError
from genaug.sampling import Balance, SyntheticRecipe


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
    synthetic : SyntheticRecipe, default SyntheticRecipe()
        How synthetic images are mixed in: ratio, caps, classes, weight, fill threshold, label
        smoothing, mixup. The loaders build it from their flat keywords (``synthetic_ratio``,
        ``synthetic_cap``, ... :meth:`~genaug.sampling.SyntheticRecipe.from_keywords`). Its
        schedule settings describe a run; ``schedule`` is what a loader applies.
    schedule : RampSchedule or None
        Multiplies the synthetic share per epoch (``synthetic.schedule(epochs=N)`` for a run
        of ``N`` epochs).
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
    synthetic: SyntheticRecipe = field(default_factory=SyntheticRecipe)
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
        if not isinstance(self.synthetic, SyntheticRecipe):
            raise ConfigError(f"synthetic must be a SyntheticRecipe, got "
                              f"{type(self.synthetic).__name__}")
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
        whose parameters carry the option names): the recipe from ``synthetic`` or from the
        flat ``synthetic_*`` keywords, given one way only."""
        options = {f.name: arguments[f.name] for f in fields(cls) if f.name in arguments}
        options["synthetic"] = SyntheticRecipe.from_keywords(
            arguments, synthetic=arguments.get("synthetic"))
        return cls(**options)

    def evaluation(self, *, shuffle: bool | None = None) -> SamplingOptions:
        """The options of a validation or test loader: every image once, no class or sample
        weights (``shuffle`` as given, else as here). A loader built from them gets no
        synthetic source."""
        return replace(self, balance=Balance.NONE, epoch_size=None, class_weight=None,
                       sample_weights=None, shuffle=self.shuffle if shuffle is None else shuffle)
