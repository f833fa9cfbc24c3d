"""The epoch sampler shared by both loaders: balance plan + synthetic mixing + weights."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import replace

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


class EpochSampler:
    """Decide the content of every batch of every epoch.

    It turns the real images' labels into a :class:`~genaug.sampling.BalancePlan`, lets a
    :class:`~genaug.sampling.SyntheticMixer` swap slots for synthetic images, and attaches
    sample weights. The loaders only decode what it says. ``set_epoch`` moves it (a Keras
    callback or the loader's ``on_epoch_end`` calls it); the content of an epoch depends only
    on the seed and the epoch number. :func:`build_sampler` builds one from a loader's data.

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
        self.options = options
        recipe = options.synthetic
        self.class_names = tuple(real.class_names)
        self.seed = resolve_seed(options.seed)
        k = len(self.class_names)
        self.real_counts = real.counts()
        if synthetic is not None and options.synthetic_ids is not None:
            synthetic = synthetic.subset(np.flatnonzero(
                [i in options.synthetic_ids for i in synthetic.ids]))
        if synthetic is not None and recipe.pool_cap is not None:
            synthetic = synthetic.subset(capped_pool(synthetic.labels, self.real_counts,
                                                     recipe.pool_cap, seed=self.seed))
        self.synthetic = synthetic if synthetic is not None and len(synthetic) else None
        synthetic_counts = (self.synthetic.counts() if self.synthetic is not None
                            else np.zeros(k, dtype=np.int64))
        live = np.isin(self.class_names, list(live_classes))
        # A live class counts as supplied; its pool may still be empty.
        synthetic_counts = synthetic_counts + live
        allowed = np.ones(k, dtype=bool)
        if recipe.classes is not None:
            unknown = sorted(set(recipe.classes) - set(self.class_names))
            if unknown:
                raise ConfigError(f"synthetic_classes not in the dataset: {', '.join(unknown)}")
            allowed = np.isin(self.class_names, list(recipe.classes))
        only = (self.real_counts == 0) & (synthetic_counts > 0) & allowed
        self.synthetic_only = [self.class_names[c] for c in np.flatnonzero(only)]
        self.plan = BalancePlan(real.labels, num_classes=k, mode=options.balance,
                                batch_size=options.batch_size or 1,
                                epoch_size=options.epoch_size, extra_classes=np.flatnonzero(only),
                                shuffle=options.shuffle, seed=self.seed)
        missing = [self.class_names[c] for c in np.flatnonzero(~self.plan.active)]
        if missing and options.balance != Balance.NONE:
            warnings.warn(f"classes with no training image are never sampled: "
                          f"{', '.join(missing)}", stacklevel=3)
        if recipe.classes is None:
            eligible = (self.real_counts < self.plan.targets) | only
        else:
            eligible = allowed
        self.fill_to = resolve_fill_to(recipe.fill_to, self.real_counts)
        self.eligible = eligible & (synthetic_counts > 0) & (
            fill_shares(self.real_counts, self.fill_to) > 0)
        self.caps = class_caps(recipe.cap, self.class_names, default=DEFAULT_CAP)
        self.mixer = None
        if self.synthetic is not None or live.any():
            pool = self.synthetic.labels if self.synthetic is not None else np.zeros(0, int)
            self.mixer = SyntheticMixer(pool, real.labels, eligible=self.eligible,
                                        recipe=recipe, caps=self.caps, fill_to=self.fill_to,
                                        schedule=options.schedule, live_classes=live,
                                        seed=self.seed)
        self.class_weight = self._class_weight(options.class_weight)
        self.sample_weights = bool(options.sample_weights) if options.sample_weights is not None \
            else self.class_weight is not None or (self.mixer is not None
                                                   and recipe.weight != 1.0)
        self.categorical = recipe.label_smoothing > 0
        self.epoch = 0
        self._cached: MixedEpoch | None = None
        self._warned_fit_weights = False

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
            "synthetic_pool": (dict(zip(self.class_names, self.synthetic.counts().tolist()))
                               if self.synthetic is not None else {}),
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
