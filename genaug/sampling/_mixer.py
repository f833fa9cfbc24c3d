"""Class-aware mixing: which slots of an epoch plan take a synthetic image instead of a real one.

A slot only ever changes source, never class, so every batch keeps its class balance. For an
oversampled class the repeated real draws are replaced first, so original images keep their
place and synthetic images fill the deficit before duplicates do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genaug.exceptions import ConfigError
from genaug.sampling._fill import fill_shares, resolve_fill_to
from genaug.sampling._plan import (
    Batched,
    EpochPlan,
    Stream,
    rng_for,
    stream_take,
    synthetic_image_stream,
)
from genaug.sampling._recipe import SyntheticRecipe

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

    def draw_counts(self, class_names) -> dict:
        """Per class: first draws of real images, repeated real draws and synthetic draws."""
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
    recipe : SyntheticRecipe, optional
        Its ``ratio``, ``weight`` and ``mixup``, and, unless ``caps`` and ``fill_to`` are
        given, its ``cap`` and ``fill_to``. ``ratio`` is the share of the eligible slots of
        each batch that become synthetic (with a range every batch draws its own); None fills
        each class's deficit (its repeated real draws) instead, up to the cap. At most the
        cap's share of a class's draws in an epoch is synthetic; classes without any real
        image are exempt: all their draws are synthetic. Under the fill threshold ``N_t``
        (see :func:`~genaug.sampling.fill_shares`) only classes with fewer real images
        receive synthetic ones, in at most ``(N_t - n) / N_t`` of their draws; with a cap as
        well, the stricter share applies. Default: ``SyntheticRecipe()``.
    caps : array-like of float, optional
        The cap of every class (the recipe's, resolved on the class names, e.g. by
        :func:`~genaug.sampling.class_caps`); default: the recipe's cap, a number, for every
        class.
    fill_to : int or None, optional
        The fill threshold in images (the recipe's, resolved on the real counts); default:
        the recipe's, resolved here.
    schedule : RampSchedule or None
        Multiplies the ratio (or the deficit fill) per epoch; None means always full.
    live_classes : array-like of bool, optional
        Classes a live generator can supply even when the pool has none of them.
    seed : int
    """

    def __init__(self, synthetic_labels, real_labels, *, eligible,
                 recipe: SyntheticRecipe | None = None, caps=None, fill_to=None,
                 schedule=None, live_classes=None, seed: int = 0):
        recipe = SyntheticRecipe() if recipe is None else recipe
        self.synthetic_labels = np.asarray(synthetic_labels, dtype=np.int64)
        self.real_labels = np.asarray(real_labels, dtype=np.int64)
        self.eligible = np.asarray(eligible, dtype=bool)
        num_classes = len(self.eligible)
        self.pool = [np.flatnonzero(self.synthetic_labels == c) for c in range(num_classes)]
        self.real_members = [np.flatnonzero(self.real_labels == c) for c in range(num_classes)]
        self.live_classes = (np.zeros(num_classes, bool) if live_classes is None
                             else np.asarray(live_classes, dtype=bool))
        self.recipe = recipe
        if caps is None:
            if isinstance(recipe.cap, dict):
                raise ConfigError("a synthetic cap per class name needs caps, one per class "
                                  "index (genaug.sampling.class_caps)")
            caps = recipe.cap
        caps = np.asarray(caps, dtype=np.float64)
        if caps.ndim == 0:
            caps = np.full(num_classes, float(caps))
        if caps.shape != (num_classes,):
            raise ConfigError(f"caps must be one per class ({num_classes}), got {caps.shape[0]}")
        real_counts = np.bincount(self.real_labels, minlength=num_classes)[:num_classes]
        if fill_to is None:
            fill_to = resolve_fill_to(recipe.fill_to, real_counts)
        self.fill_to = fill_to
        # Per class: the largest synthetic share of its draws (the stricter of cap and fill).
        self.class_caps = np.minimum(caps, fill_shares(real_counts, fill_to))
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
            if self.recipe.ratio is None:
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
        if self.recipe.mixup:
            for slot in np.flatnonzero(synthetic):
                members = self.real_members[plan.labels[slot]]
                if len(members):
                    partner[slot] = members[rng.integers(len(members))]
                    lam[slot] = rng.uniform(0.3, 0.7)
        weights = np.where(synthetic, self.recipe.weight, 1.0).astype(np.float32)
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
            ratio = self.recipe.ratio if not isinstance(self.recipe.ratio, tuple) else \
                rng_for(self.seed, Stream.BATCH_RATIO, plan.epoch, b).uniform(*self.recipe.ratio)
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
