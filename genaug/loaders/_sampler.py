"""The epoch sampler shared by both loaders: balance plan + synthetic mixing + weights."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from genaug.data import DatasetIndex
from genaug.exceptions import ConfigError
from genaug.loaders._options import SamplingOptions
from genaug.sampling import (
    DEFAULT_CAP,
    SYNTHETIC,
    Balance,
    BalancePlan,
    MixedEpoch,
    SyntheticMixer,
    capped_pool,
    class_caps,
    delivered_class_weights,
    fill_shares,
    resolve_fill_to,
    resolve_seed,
)
from genaug.sources import RealSource, Source, as_cache_source


@dataclass(frozen=True)
class TrainingComposition:
    """What a sampler's epochs draw, per class and epoch (:meth:`EpochSampler.composition`).

    Attributes
    ----------
    class_names : tuple of str
    per_epoch : tuple of dict
        Per epoch, per class: ``real`` (first draws of real images), ``duplicated`` (repeated
        real draws) and ``synthetic`` draws (:meth:`~genaug.sampling.MixedEpoch.draw_counts`).
    classes : dict
        Per class over all the epochs: ``real_images``, ``draws_per_epoch``,
        ``oversampled_draws_per_epoch``, ``real_draws``, ``duplicated_draws``,
        ``synthetic_draws`` and ``synthetic_images_used`` (distinct synthetic images drawn).
    synthetic_only_classes : tuple of str
        Classes with no real training image, trained on synthetic images alone.
    """

    class_names: tuple[str, ...]
    per_epoch: tuple[dict, ...]
    classes: dict
    synthetic_only_classes: tuple[str, ...]

    def synthetic_images_used(self) -> list[int]:
        """Distinct synthetic images drawn per class, in ``class_names`` order."""
        return [self.classes[name]["synthetic_images_used"] for name in self.class_names]

    def synthetic_shares(self) -> dict:
        """Per class, the two synthetic shares of the run, named by what each cap bounds.

        ``synthetic_share_of_draws``: the largest share, over the epochs, of the class's draws
        that were synthetic images; ``synthetic_cap`` bounds it in every epoch.
        ``synthetic_share_of_images``: the distinct synthetic images the class trained on over
        the whole run, as a share of its training images (real + those synthetic);
        ``synthetic_pool_cap`` bounds it. A cap of 0.6 on draws lets a long run reach far more
        than 60 % of distinct images, since each epoch may draw other synthetic images.
        """
        shares = {}
        for name, row in self.classes.items():
            per_epoch = [(epoch[name]["synthetic"], sum(epoch[name].values()))
                         for epoch in self.per_epoch]
            images = row["real_images"] + row["synthetic_images_used"]
            shares[name] = {
                "synthetic_share_of_draws": max((s / t for s, t in per_epoch if t), default=0.0),
                "synthetic_share_of_images": (row["synthetic_images_used"] / images if images
                                              else 0.0),
            }
        return shares

    def to_dict(self) -> dict:
        """``composition`` in ``metrics.json``."""
        return {"classes": self.classes, "per_epoch": list(self.per_epoch),
                "synthetic_only_classes": list(self.synthetic_only_classes)}


class EpochSampler:
    """Decide the content of every batch of every epoch.

    It turns the real images' labels into a :class:`~genaug.sampling.BalancePlan`, lets a
    :class:`~genaug.sampling.SyntheticMixer` swap slots for synthetic images, and attaches
    sample weights. The loaders only decode what it says. ``set_epoch`` moves it (the loaders
    move it at the end of each epoch); the content of an epoch depends only on the seed, the
    epoch number and :meth:`adapt`. :meth:`composition` accounts for a run's epochs.
    :func:`build_sampler` builds one from a loader's data.

    Parameters
    ----------
    real : Source
        The real training images (:class:`~genaug.sources.RealSource`).
    options : SamplingOptions
    synthetic : Source, optional
        Pool of synthetic images (:class:`~genaug.sources.CacheSource`), already guarded
        against leakage; ``options.synthetic_ids`` (a selection), then
        ``options.synthetic.pool_cap`` limit it here.
    live_classes : sequence of str
        Classes a live generator can supply (they count as having synthetic images).

    Attributes
    ----------
    options : SamplingOptions
        The options the epochs follow (after :meth:`adapt`, with its ids and caps).
    requested_options : SamplingOptions
        The options the sampler was built with (what a status reports as asked for).
    offered : Source or None
        The synthetic images offered (``synthetic``), before a selection and the pool cap.
    synthetic_pool : Source or None
        The synthetic images the epochs draw from; ``MixedEpoch.index`` indexes them.
    sample_weights : bool
        Whether the loaders return sample weights (``options.sample_weights``, by default
        when class weights or a synthetic weight other than 1 apply).
    fill_to : int or None
        The fill threshold in images (``options.synthetic.fill_to`` resolved on the real
        counts).
    categorical : bool
        Whether the loaders yield one-hot float targets (:meth:`targets`): with synthetic
        label smoothing.
    """

    def __init__(self, real: Source, options: SamplingOptions, *,
                 synthetic: Source | None = None, live_classes: Sequence[str] = ()):
        self.real = real
        self.requested_options = options
        self.class_names = tuple(real.class_names)
        self.seed = resolve_seed(options.seed)
        self.real_counts = real.counts()
        self.offered = synthetic
        # Classes a live generator supplies (they count as having synthetic images).
        self._live = np.isin(self.class_names, list(live_classes))
        self.epoch = 0
        self._warned_fit_weights = False
        self._configure(options)
        missing = [self.class_names[c] for c in np.flatnonzero(~self.plan.active)]
        if missing and options.balance != Balance.NONE:
            warnings.warn(f"classes with no training image are never sampled: "
                          f"{', '.join(missing)}", stacklevel=3)

    def _configure(self, options: SamplingOptions) -> None:
        """Everything that follows from ``options``: the pool, plan, eligibility, caps, mixer
        and weights (again after :meth:`adapt`)."""
        self.options = options
        recipe = options.synthetic
        k = len(self.class_names)
        synthetic = self.offered
        if synthetic is not None and options.synthetic_ids is not None:
            synthetic = synthetic.subset(np.flatnonzero(
                [i in options.synthetic_ids for i in synthetic.ids]))
        if synthetic is not None and recipe.pool_cap is not None:
            synthetic = synthetic.subset(capped_pool(synthetic.labels, self.real_counts,
                                                     recipe.pool_cap, seed=self.seed))
        self.synthetic_pool = synthetic if synthetic is not None and len(synthetic) else None
        synthetic_counts = (self.synthetic_pool.counts() if self.synthetic_pool is not None
                            else np.zeros(k, dtype=np.int64))
        # A live class counts as supplied; its pool may still be empty.
        synthetic_counts = synthetic_counts + self._live
        allowed = np.ones(k, dtype=bool)
        if recipe.classes is not None:
            unknown = sorted(set(recipe.classes) - set(self.class_names))
            if unknown:
                raise ConfigError(f"synthetic_classes not in the dataset: {', '.join(unknown)}")
            allowed = np.isin(self.class_names, list(recipe.classes))
        only = (self.real_counts == 0) & (synthetic_counts > 0) & allowed
        self.synthetic_only = [self.class_names[c] for c in np.flatnonzero(only)]
        self.plan = BalancePlan(self.real.labels, num_classes=k, mode=options.balance,
                                batch_size=options.batch_size or 1,
                                epoch_size=options.epoch_size, extra_classes=np.flatnonzero(only),
                                shuffle=options.shuffle, seed=self.seed)
        if recipe.classes is None:
            eligible = (self.real_counts < self.plan.targets) | only
        else:
            eligible = allowed
        self.fill_to = resolve_fill_to(recipe.fill_to, self.real_counts)
        self.eligible = eligible & (synthetic_counts > 0) & (
            fill_shares(self.real_counts, self.fill_to) > 0)
        self.caps = class_caps(recipe.cap, self.class_names, default=DEFAULT_CAP)
        self.mixer = None
        if self.synthetic_pool is not None or self._live.any():
            pool = (self.synthetic_pool.labels if self.synthetic_pool is not None
                    else np.zeros(0, int))
            self.mixer = SyntheticMixer(pool, self.real.labels, eligible=self.eligible,
                                        recipe=recipe, caps=self.caps, fill_to=self.fill_to,
                                        schedule=options.schedule, live_classes=self._live,
                                        seed=self.seed)
        self.class_weight = self._class_weight(options.class_weight)
        self.sample_weights = bool(options.sample_weights) if options.sample_weights is not None \
            else self.class_weight is not None or (self.mixer is not None
                                                   and recipe.weight != 1.0)
        self.categorical = recipe.label_smoothing > 0
        self._cached: MixedEpoch | None = None

    def adapt(self, *, synthetic_ids: Iterable[str] | None = None,
              synthetic_cap: float | Mapping[str, float] | None = None) -> None:
        """Draw from now on only the synthetic images ``synthetic_ids`` of :attr:`offered`
        (a selection), with ``synthetic_cap`` (per-class caps, an allocation); None keeps
        the current value. The epoch stays; every epoch from the current one on is what a
        sampler built with these options plans (:class:`~genaug.loaders.AdaptAfterWarmup`).

        Raises
        ------
        ConfigError
            When the loaders could no longer deliver the epochs they were built for: the
            epoch length or the kind of targets and weights would change.
        """
        def layout():
            return (len(self.plan), self.sample_weights, self.categorical,
                    self.mixer is not None and self.mixer.recipe.mixup)

        before, options = layout(), self.options
        adapted = options
        if synthetic_ids is not None:
            adapted = replace(adapted, synthetic_ids=synthetic_ids)
        if synthetic_cap is not None:
            adapted = replace(adapted, synthetic=replace(adapted.synthetic, cap=synthetic_cap))
        self._configure(adapted)
        if layout() != before:
            self._configure(options)
            raise ConfigError("the adapted synthetic pool changes the epochs' length or what "
                              "the batches hold (a class left with no image, or no synthetic "
                              "image at all); the loader cannot switch to it mid-run")

    def _class_weight(self, class_weight) -> np.ndarray | None:
        if class_weight is None:
            return None
        if isinstance(class_weight, str):  # "balanced", checked by SamplingOptions
            present = np.flatnonzero(self.plan.targets > 0)
            sub = delivered_class_weights(self.plan.targets[present],
                                          [self.class_names[c] for c in present])
            weights = np.zeros(len(self.class_names))
            weights[present] = [sub[i] for i in range(len(present))]
            return weights
        weights = np.ones(len(self.class_names))
        for key, value in dict(class_weight).items():
            weights[self.class_names.index(key) if isinstance(key, str) else int(key)] = value
        return weights

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def mixed(self, epoch: int | None = None) -> MixedEpoch:
        """The mixed plan of ``epoch`` (default: the current one); the last one is cached."""
        epoch = self.epoch if epoch is None else int(epoch)
        cached = self._cached
        if cached is None or cached.epoch != epoch:
            plan = self.plan.epoch(epoch)
            cached = self.mixer.mix(plan) if self.mixer is not None else MixedEpoch.real_only(plan)
            if self.class_weight is not None:
                cached = replace(cached, weights=(cached.weights * self.class_weight[
                    cached.labels]).astype(np.float32))
            self._cached = cached
        return cached

    def targets(self, mixed: MixedEpoch, slots) -> np.ndarray:
        """The training targets of ``slots`` of ``mixed``, as both loaders deliver them.

        Integer class indices; with ``synthetic_label_smoothing`` (``eps``) one-hot float32
        rows instead, where a synthetic slot's row is ``1 - eps`` on its class and
        ``eps / (classes - 1)`` on every other class.
        """
        labels = mixed.labels[slots]
        if not self.categorical:
            return labels.astype(np.int64)
        k = len(self.class_names)
        eps = self.options.synthetic.label_smoothing if k > 1 else 0.0
        smooth = (mixed.source[slots] == SYNTHETIC)[:, None]
        hard = np.eye(k, dtype=np.float32)[labels]
        soft = hard * (1.0 - eps) + (1.0 - hard) * (eps / max(k - 1, 1))
        return np.where(smooth, soft, hard).astype(np.float32)

    def fill_summary(self) -> dict:
        """Per class, under the fill threshold: whether it may be filled, and its target."""
        if self.fill_to is None:
            return {}
        shares = fill_shares(self.real_counts, self.fill_to)
        return {name: {"real_images": int(n), "eligible_for_fill": bool(share > 0),
                       "fill_target": self.fill_to if share > 0 else int(n),
                       "synthetic_share_limit": float(min(share, cap))}
                for name, n, share, cap in zip(self.class_names, self.real_counts, shares,
                                               self.caps)}

    def composition(self, epochs: int) -> TrainingComposition:
        """What epochs ``0 .. epochs - 1`` draw, per class and epoch.

        Each epoch is planned again from the seed, as the loaders planned it. After
        :meth:`adapt` the epochs before it are planned with the adapted pool too: an
        adaptation after a warm-up changes synthetic draws only, and the warm-up has none.
        """
        names = self.class_names
        per_epoch, used = [], {name: set() for name in names}
        for epoch in range(epochs):
            mixed = self.mixed(epoch)
            per_epoch.append(mixed.draw_counts(names))
            for c, name in enumerate(names):
                chosen = (mixed.labels == c) & (mixed.source == SYNTHETIC)
                used[name].update(mixed.index[chosen].tolist())
        targets = self.plan.targets
        classes = {}
        for c, name in enumerate(names):
            rows = [epoch_counts[name] for epoch_counts in per_epoch]
            classes[name] = {
                "real_images": int(self.real_counts[c]),
                "draws_per_epoch": int(targets[c]),
                "oversampled_draws_per_epoch": max(int(targets[c] - self.real_counts[c]), 0),
                "real_draws": sum(r["real"] for r in rows),
                "duplicated_draws": sum(r["duplicated"] for r in rows),
                "synthetic_draws": sum(r["synthetic"] for r in rows),
                "synthetic_images_used": len(used[name]),
            }
        return TrainingComposition(names, tuple(per_epoch), classes, tuple(self.synthetic_only))

    def summary(self) -> dict:
        """What the sampler does per epoch, for metrics and status files."""
        mixed = self.mixed()
        return {
            "balance": self.plan.mode.value,
            "epoch_size": self.plan.epoch_size,
            "batches_per_epoch": len(self),
            "targets": dict(zip(self.class_names, self.plan.targets.tolist())),
            "synthetic_classes": [n for n, e in zip(self.class_names, self.eligible) if e],
            "synthetic_only_classes": self.synthetic_only,
            "synthetic_draws_this_epoch": int((mixed.source == SYNTHETIC).sum()),
            "synthetic_caps": dict(zip(self.class_names, self.caps.tolist())),
            "synthetic_fill_to": self.fill_to,
            "synthetic_fill": self.fill_summary(),
            "synthetic_label_smoothing": self.options.synthetic.label_smoothing,
            "synthetic_pool": (dict(zip(self.class_names, self.synthetic_pool.counts().tolist()))
                               if self.synthetic_pool is not None else {}),
            "seed": self.seed,
        }


def build_sampler(data, options: SamplingOptions, *, synthetic_cache=None,
                  held_out_ids: Iterable[str] = (), live_classes: Sequence[str] = ()
                  ) -> EpochSampler:
    """The :class:`EpochSampler` of a loader: its real images, options and synthetic pool.

    This is the one place where a loader's synthetic pool is opened and guarded: every image
    whose ``source_id`` is in ``held_out_ids`` or ``options.exclude_source_ids`` is left out.

    Parameters
    ----------
    data : DatasetIndex or Source
        The real training images (an index, or a :class:`~genaug.sources.RealSource`, e.g.
        of in-memory arrays; :func:`adapt_data` normalises anything a loader accepts).
    options : SamplingOptions
    synthetic_cache : path-like, SyntheticCache or CacheSource, optional
    held_out_ids : iterable of str
        Ids and paths of validation and test images (``DatasetSplits.held_out_ids()``).
    live_classes : sequence of str
        Classes a live generator supplies.
    """
    real = RealSource(data) if isinstance(data, DatasetIndex) else data
    synthetic = as_cache_source(synthetic_cache, class_names=real.class_names,
                                exclude_source_ids=options.exclude_source_ids
                                | frozenset(held_out_ids))
    return EpochSampler(real, options, synthetic=synthetic, live_classes=live_classes)
