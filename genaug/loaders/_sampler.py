"""The epoch sampler shared by both loaders: balance plan + synthetic mixing + weights."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from genaug.balance import BalancePlan, delivered_class_weights, resolve_seed
from genaug.exceptions import ConfigError
from genaug.synthetic._mixer import SYNTHETIC, MixedEpoch, SyntheticMixer


class EpochSampler:
    """Decide the content of every batch of every epoch.

    It turns the real images' labels into a :class:`~genaug.balance.BalancePlan`, lets a
    :class:`~genaug.synthetic.SyntheticMixer` swap slots for synthetic images, and attaches
    sample weights. The loaders only decode what it says. ``set_epoch`` moves it (a Keras
    callback or the loader's ``on_epoch_end`` calls it); the content of an epoch depends only
    on the seed and the epoch number.

    Parameters
    ----------
    real : RealSource
    class_names : sequence of str
    balance : {"none", "oversample", "balanced_batches"}
    batch_size : int
    epoch_size : int, "max" or None
        See :class:`~genaug.balance.BalancePlan`.
    shuffle : bool
    seed : int or None
    class_weight : dict, "balanced" or None
        Folded into the sample weights. ``"balanced"`` weights the classes by the distribution
        the sampler actually delivers, so balanced sampling is not corrected twice.
    synthetic : CacheSource or None
        Pool of synthetic images.
    synthetic_ratio, synthetic_cap, synthetic_weight, mixup, schedule
        See :class:`~genaug.synthetic.SyntheticMixer`.
    synthetic_classes : sequence of str or None
        Classes that may receive synthetic images; default: those whose real count is below
        their per-epoch target (minority classes).
    live_classes : sequence of str
        Classes a live generator can supply (they count as having synthetic images).
    """

    def __init__(self, real, *, class_names: Sequence[str], balance: str = "oversample",
                 batch_size: int = 32, epoch_size=None, shuffle: bool = True, seed=None,
                 class_weight=None, synthetic=None, synthetic_ratio=None,
                 synthetic_cap: float = 0.6, synthetic_classes: Sequence[str] | None = None,
                 synthetic_weight: float = 1.0, mixup: bool = False, schedule=None,
                 live_classes: Sequence[str] = ()):
        self.real = real
        self.class_names = tuple(class_names)
        self.seed = resolve_seed(seed)
        k = len(self.class_names)
        self.real_counts = np.bincount(real.labels, minlength=k)
        self.synthetic = synthetic if synthetic is not None and len(synthetic) else None
        synthetic_counts = (self.synthetic.counts() if self.synthetic is not None
                            else np.zeros(k, dtype=np.int64))
        live = np.isin(self.class_names, list(live_classes))
        # A live class counts as supplied; its pool may still be empty.
        synthetic_counts = synthetic_counts + live
        allowed = np.ones(k, dtype=bool)
        if synthetic_classes is not None:
            unknown = sorted(set(synthetic_classes) - set(self.class_names))
            if unknown:
                raise ConfigError(f"synthetic_classes not in the dataset: {', '.join(unknown)}")
            allowed = np.isin(self.class_names, list(synthetic_classes))
        only = (self.real_counts == 0) & (synthetic_counts > 0) & allowed
        self.synthetic_only = [self.class_names[c] for c in np.flatnonzero(only)]
        self.plan = BalancePlan(real.labels, num_classes=k, mode=balance, batch_size=batch_size,
                                epoch_size=epoch_size, extra_classes=np.flatnonzero(only),
                                shuffle=shuffle, seed=self.seed)
        missing = [self.class_names[c] for c in np.flatnonzero(~self.plan.active)]
        if missing and balance != "none":
            warnings.warn(f"classes with no training image are never sampled: "
                          f"{', '.join(missing)}", stacklevel=2)
        if synthetic_classes is None:
            eligible = (self.real_counts < self.plan.targets) | only
        else:
            eligible = allowed
        self.eligible = eligible & (synthetic_counts > 0)
        self.mixer = None
        if self.synthetic is not None or live.any():
            pool = self.synthetic.labels if self.synthetic is not None else np.zeros(0, int)
            self.mixer = SyntheticMixer(pool, real.labels, eligible=self.eligible,
                                        ratio=synthetic_ratio, cap=synthetic_cap,
                                        weight=synthetic_weight, mixup=mixup, schedule=schedule,
                                        live_classes=live, seed=self.seed)
        self.class_weight = self._class_weight(class_weight)
        self.epoch = 0
        self._cached: MixedEpoch | None = None

    def _class_weight(self, class_weight) -> np.ndarray | None:
        if class_weight is None:
            return None
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ConfigError(
                    f"class_weight must be a dict or 'balanced', got {class_weight!r}")
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
        if self._cached is None or self._cached.epoch != epoch:
            plan = self.plan.epoch(epoch)
            mixed = self.mixer.mix(plan) if self.mixer is not None else MixedEpoch.real_only(plan)
            if self.class_weight is not None:
                mixed = _reweighted(mixed, self.class_weight)
            self._cached = mixed
        return self._cached

    def summary(self) -> dict:
        """What the sampler does per epoch, for metrics and status files."""
        mixed = self.mixed()
        return {
            "balance": self.plan.mode,
            "epoch_size": self.plan.epoch_size,
            "batches_per_epoch": len(self),
            "targets": dict(zip(self.class_names, self.plan.targets.tolist())),
            "synthetic_classes": [n for n, e in zip(self.class_names, self.eligible) if e],
            "synthetic_only_classes": self.synthetic_only,
            "synthetic_draws_this_epoch": int((mixed.source == SYNTHETIC).sum()),
            "seed": self.seed,
        }


def _reweighted(mixed: MixedEpoch, class_weight: np.ndarray) -> MixedEpoch:
    return replace(mixed, weights=(mixed.weights * class_weight[mixed.labels]).astype(np.float32))
