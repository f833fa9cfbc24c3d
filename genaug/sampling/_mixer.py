"""Class-aware mixing: which slots of an epoch plan take a synthetic image instead of a real one.

A slot only ever changes source, never class, so every batch keeps its class balance. For an
oversampled class the repeated real draws are replaced first, so original images keep their
place and synthetic images fill the deficit before duplicates do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genaug.exceptions import ConfigError
from genaug.sampling._fill import fill_shares
from genaug.sampling._plan import (
    Batched,
    EpochPlan,
    Stream,
    rng_for,
    stream_take,
    synthetic_image_stream,
)

#: The default largest synthetic share of a class's draws in an epoch.
DEFAULT_CAP = 0.6

#: The ``source`` of a slot in a :class:`MixedEpoch`: a real image, or a synthetic one.
REAL, SYNTHETIC = 0, 1


@dataclass(frozen=True)
class MixedEpoch(Batched):
    """An epoch plan after mixing: for every slot, its class, source and weight.

    ``source`` is ``REAL`` (0) or ``SYNTHETIC`` (1); ``index`` indexes the real images or the
    synthetic pool accordingly (-1 for a synthetic slot only a live generator can fill).
    ``real_index`` keeps the plan's real image for every slot (-1 where the class has none):
    the fallback when no synthetic image is at hand. Where ``partner >= 0`` the slot is a
    same-class mixup of the synthetic image (weight ``lam``) with real image ``partner``
    (weight ``1 - lam``).
    """

    epoch: int
    labels: np.ndarray
    source: np.ndarray
    index: np.ndarray
    real_index: np.ndarray
    duplicate: np.ndarray
    weights: np.ndarray
    partner: np.ndarray
    lam: np.ndarray
    batch_size: int

    def composition(self, class_names) -> dict:
        """Per class: unique real images, repeated real draws and synthetic draws."""
        out = {}
        for c, name in enumerate(class_names):
            mask = self.labels == c
            real = mask & (self.source == REAL)
            out[name] = {
                "real": int((real & ~self.duplicate).sum()),
                "duplicated": int((real & self.duplicate).sum()),
                "synthetic": int((mask & (self.source == SYNTHETIC)).sum()),
            }
        return out

    @classmethod
    def real_only(cls, plan: EpochPlan, weights: np.ndarray | None = None) -> MixedEpoch:
        n = len(plan)
        weights = np.ones(n, np.float32) if weights is None else weights
        return cls(plan.epoch, plan.labels, np.zeros(n, dtype=np.int8), plan.real_index,
                   plan.real_index, plan.duplicate, weights, np.full(n, -1, dtype=np.int64),
                   np.ones(n, np.float32), plan.batch_size)


def repeated_draws(index: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Which real slots repeat an image already drawn earlier in the epoch.

    Recomputed after mixing: when a ratio turns an image's first draw synthetic, its next real
    draw is its first real one, not a repeat.
    """
    repeated = np.zeros(len(index), dtype=bool)
    slots = np.flatnonzero(real)
    _, first = np.unique(index[slots], return_index=True)
    repeated[slots] = True
    repeated[slots[first]] = False
    return repeated


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


class SyntheticMixer:
    """Replace real slots of an epoch plan with synthetic images of the same class.

    Parameters
    ----------
    synthetic_labels : array-like of int
        Class of every image in the synthetic pool.
    real_labels : array-like of int
        Class of every real training image (mixup partners are drawn from them).
    eligible : array-like of bool
        Classes that may receive synthetic images.
    ratio : None, float or (low, high)
        Share of the eligible slots of each batch that become synthetic; with a range every
        batch draws its own ratio uniformly. ``None`` fills each class's deficit (its repeated
        real draws) instead, up to ``cap``.
    cap : float or array-like of float, default 0.6
        At most this share of a class's draws in an epoch is synthetic (one share per class
        for an array). Classes without any real image are exempt: all their draws are
        synthetic.
    fill_to : int or None
        Fill threshold ``N_t`` (see :func:`~genaug.sampling.fill_shares`): only classes with
        fewer real images receive synthetic ones, in at most ``(N_t - n) / N_t`` of their
        draws. With ``cap`` as well, the stricter share applies.
    weight : float, default 1.0
        Sample weight of a synthetic slot relative to a real one.
    mixup : bool, default False
        Blend each synthetic image with a real image of its class, ``lam ~ U(0.3, 0.7)``.
    schedule : RampSchedule or None
        Multiplies the ratio (or the deficit fill) per epoch; None means always full.
    live_classes : array-like of bool, optional
        Classes a live generator can supply even when the pool has none of them.
    seed : int
    """

    def __init__(self, synthetic_labels, real_labels, *, eligible, ratio=None, cap=DEFAULT_CAP,
                 fill_to: int | None = None, weight: float = 1.0, mixup: bool = False,
                 schedule=None, live_classes=None, seed: int = 0):
        if float(weight) < 0:
            raise ConfigError(f"synthetic_weight must be >= 0, got {weight}")
        self.synthetic_labels = np.asarray(synthetic_labels, dtype=np.int64)
        self.real_labels = np.asarray(real_labels, dtype=np.int64)
        self.eligible = np.asarray(eligible, dtype=bool)
        num_classes = len(self.eligible)
        self.pool = [np.flatnonzero(self.synthetic_labels == c) for c in range(num_classes)]
        self.real_members = [np.flatnonzero(self.real_labels == c) for c in range(num_classes)]
        self.live_classes = (np.zeros(num_classes, bool) if live_classes is None
                             else np.asarray(live_classes, dtype=bool))
        self.ratio = check_ratio(ratio)
        caps = np.asarray(cap, dtype=np.float64)
        if caps.ndim and caps.shape != (num_classes,) or ((caps < 0) | (caps > 1)).any():
            raise ConfigError(f"synthetic cap must be in [0, 1], one value or one per class, "
                              f"got {cap}")
        self.fill_to = fill_to
        real_counts = np.bincount(self.real_labels, minlength=num_classes)[:num_classes]
        # Per class: the largest synthetic share of its draws (the stricter of cap and fill).
        self.class_caps = np.minimum(caps, fill_shares(real_counts, fill_to))
        self.weight = float(weight)
        self.mixup = bool(mixup)
        self.schedule = schedule
        self.seed = int(seed)

    def factor(self, epoch: int) -> float:
        return 1.0 if self.schedule is None else self.schedule.factor(epoch)

    def mix(self, plan: EpochPlan) -> MixedEpoch:
        epoch, n = plan.epoch, len(plan)
        rng = rng_for(self.seed, Stream.MIXER, epoch)
        factor = self.factor(epoch)
        synthetic = plan.real_index < 0  # classes with no real image: synthetic by necessity
        usable = ((np.array([len(p) > 0 for p in self.pool]) | self.live_classes) & self.eligible
                  & (self.class_caps > 0))
        if factor > 0:
            if self.ratio is None:
                synthetic |= self._fill_deficits(plan, usable, factor, rng)
            else:
                synthetic |= self._apply_ratio(plan, usable, factor, rng)
        index = plan.real_index.copy()
        for c in np.unique(plan.labels[synthetic]):
            slots = np.flatnonzero(synthetic & (plan.labels == c))
            if not len(self.pool[c]):
                if not self.live_classes[c]:
                    raise ConfigError(f"class index {c} has neither real nor synthetic images")
                index[slots] = -1
                continue
            per_epoch = int((plan.labels == c).sum())
            picks = stream_take(len(self.pool[c]), epoch * per_epoch, len(slots),
                                seed=self.seed, key=synthetic_image_stream(c))
            index[slots] = self.pool[c][picks]
        partner = np.full(n, -1, dtype=np.int64)
        lam = np.ones(n, dtype=np.float32)
        if self.mixup:
            for slot in np.flatnonzero(synthetic):
                members = self.real_members[plan.labels[slot]]
                if len(members):
                    partner[slot] = members[rng.integers(len(members))]
                    lam[slot] = rng.uniform(0.3, 0.7)
        weights = np.where(synthetic, self.weight, 1.0).astype(np.float32)
        return MixedEpoch(epoch, plan.labels, synthetic.astype(np.int8), index, plan.real_index,
                          repeated_draws(index, ~synthetic), weights, partner, lam,
                          plan.batch_size)

    def _fill_deficits(self, plan, usable, factor, rng) -> np.ndarray:
        chosen = np.zeros(len(plan), dtype=bool)
        for c in np.flatnonzero(usable):
            duplicates = np.flatnonzero((plan.labels == c) & plan.duplicate)
            budget = int(np.floor(self.class_caps[c] * (plan.labels == c).sum()))
            take = int(round(factor * min(len(duplicates), budget)))
            chosen[rng.choice(duplicates, size=take, replace=False)] = True
        return chosen

    def _apply_ratio(self, plan, usable, factor, rng) -> np.ndarray:
        chosen = np.zeros(len(plan), dtype=bool)
        per_class = np.bincount(plan.labels, minlength=len(usable))
        budget = np.floor(self.class_caps * per_class).astype(np.int64)
        has_real = plan.real_index >= 0
        for b in range(plan.num_batches):
            part = plan.batch_slice(b)
            labels = plan.labels[part]
            eligible = np.flatnonzero(usable[labels] & has_real[part])
            if not len(eligible):
                continue
            ratio = self.ratio if not isinstance(self.ratio, tuple) else \
                rng_for(self.seed, Stream.BATCH_RATIO, plan.epoch, b).uniform(*self.ratio)
            want = int(round(factor * ratio * len(eligible)))
            # Repeated draws go first, then originals; random order within each group.
            order = rng.permutation(eligible)
            order = order[np.argsort(~plan.duplicate[part][order], kind="stable")]
            for slot in order:
                if want == 0:
                    break
                c = labels[slot]
                if budget[c] > 0:
                    budget[c] -= 1
                    chosen[part.start + slot] = True
                    want -= 1
        return chosen
