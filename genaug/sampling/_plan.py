"""The balance plan: which real image fills each slot of each batch, epoch by epoch.

Every class draws from its own endless stream of seeded permutations of its images, so within
an epoch an oversampled class repeats each image ``floor`` or ``ceil(target / count)`` times
(exact target count), an undersampled class rotates through all its images across epochs, and
any epoch can be rebuilt from ``(seed, epoch)`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

import numpy as np

from genaug.exceptions import ConfigError, DatasetError


class Balance(str, Enum):
    """How an epoch draws the classes (a ``str``, so ``Balance.OVERSAMPLE == "oversample"``).

    ``NONE``: every image once. ``OVERSAMPLE``: every class drawn to its target, then shuffled.
    ``BALANCED_BATCHES``: every batch holds each class equally.
    """

    NONE = "none"
    OVERSAMPLE = "oversample"
    BALANCED_BATCHES = "balanced_batches"

    @classmethod
    def of(cls, value) -> Balance:
        """``value`` as a :class:`Balance`, or a one-line :class:`ConfigError` naming
        ``balance``."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"balance must be one of {', '.join(BALANCE_MODES)}, "
                              f"got {value!r}") from None


BALANCE_MODES = tuple(mode.value for mode in Balance)


def resolve_seed(seed: int | None) -> int:
    """A concrete seed: ``seed`` itself, or fresh entropy drawn once when it is None."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, (bool, float)) or int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class Stream(IntEnum):
    """The first key after the seed of each random stream (:func:`rng_for`).

    One value per use, so no two uses draw the same numbers. The per-class streams of real
    and synthetic images take their keys from :func:`real_image_stream` and
    :func:`synthetic_image_stream`, which stay clear of these values.
    """

    #: Which classes take the remainder slots of a balanced epoch.
    REMAINDER_CLASSES = 1
    #: The slot order of an epoch without balancing.
    UNBALANCED_ORDER = 2
    #: The slot order of an oversampled epoch.
    OVERSAMPLE_ORDER = 3
    #: The class order inside each balanced batch.
    BATCH_CLASSES = 4
    #: The mixer's choices within an epoch (slots to replace, mixup partners).
    MIXER = 5
    #: A batch's synthetic ratio drawn from a range.
    BATCH_RATIO = 6
    #: Which synthetic images a class keeps under its pool quota.
    POOL_QUOTA = 7
    #: The augmentation layers' seeds of each batch.
    AUGMENTATION = 8


#: Below this many classes the per-class stream keys keep their first layout
#: (real images ``1000 + c``, synthetic images ``2000 + c``), so seeded runs repeat exactly.
_FIRST_LAYOUT_CLASSES = 1000


def real_image_stream(class_index: int) -> int:
    """The stream key of class ``class_index``'s real images (see :func:`stream_take`).

    Past the first layout's 1,000 classes the real and synthetic keys interleave above every
    key of that layout (real even, synthetic odd), so no two classes or kinds share one.
    """
    c = int(class_index)
    if c < _FIRST_LAYOUT_CLASSES:
        return 1000 + c
    return 3 * _FIRST_LAYOUT_CLASSES + 2 * (c - _FIRST_LAYOUT_CLASSES)


def synthetic_image_stream(class_index: int) -> int:
    """The stream key of class ``class_index``'s synthetic images (see
    :func:`real_image_stream`)."""
    c = int(class_index)
    if c < _FIRST_LAYOUT_CLASSES:
        return 2000 + c
    return real_image_stream(c) + 1


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """Independent generator for ``(seed, *keys)``; the same keys give the same stream."""
    return np.random.default_rng([seed, *[int(k) for k in keys]])


def largest_remainder(weights, total: int) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` that add up exactly.

    Each share gets the floor of its exact quota; the units left over go to the largest
    fractional parts (ties to the earlier entry), so the result is deterministic.

    Examples
    --------
    >>> largest_remainder([40, 35, 25], 7)
    [3, 2, 2]
    """
    weights = np.asarray(weights, dtype=np.float64)
    if total < 0 or weights.ndim != 1 or not len(weights):
        raise ConfigError("largest_remainder needs a non-negative total and some weights")
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ConfigError("weights must be positive numbers")
    exact = weights / weights.sum() * total
    quotas = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: int(total - quotas.sum())]] += 1
    return [int(q) for q in quotas]


def stream_take(size: int, start: int, n: int, *, seed: int, key: int) -> np.ndarray:
    """Items ``[start, start + n)`` of the endless stream of permutations of ``range(size)``.

    Cycle ``k`` of the stream is the permutation drawn from ``(seed, key, k)``.
    """
    if n == 0 or size == 0:
        return np.zeros(0, dtype=np.int64)
    first, last = start // size, (start + n - 1) // size
    cycles = [rng_for(seed, key, k).permutation(size) for k in range(first, last + 1)]
    stream = np.concatenate(cycles)
    offset = start - first * size
    return stream[offset: offset + n]


class Batched:
    """Slots in batch order: batch ``b`` is ``[b * batch_size, (b + 1) * batch_size)``."""

    labels: np.ndarray
    batch_size: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def batch_slice(self, batch: int) -> slice:
        return slice(batch * self.batch_size, min((batch + 1) * self.batch_size, len(self)))


@dataclass(frozen=True)
class EpochPlan(Batched):
    """The slots of one epoch, in batch order (batch ``b`` is ``[b*batch_size, (b+1)*batch_size)``).

    Attributes
    ----------
    epoch : int
    labels : ndarray of int
        Class of each slot.
    real_index : ndarray of int
        Index of the real image filling the slot, or -1 where no real image exists (a class
        trained from synthetic images alone); the mixer fills those.
    duplicate : ndarray of bool
        Whether the slot repeats a real image already drawn earlier in this epoch.
    batch_size : int
    """

    epoch: int
    labels: np.ndarray
    real_index: np.ndarray
    duplicate: np.ndarray
    batch_size: int


class BalancePlan:
    """Per-epoch sampling plan over labelled real images.

    Parameters
    ----------
    labels : array-like of int
        Class index of every real training image.
    num_classes : int
        Number of classes (classes with no image count 0).
    mode : Balance or {"none", "oversample", "balanced_batches"}
        ``none``: every image once per epoch. ``oversample``: each class draws its target,
        then the epoch is shuffled. ``balanced_batches``: every batch holds each class equally
        (per-class counts in a batch differ by at most 1).
    batch_size : int
    epoch_size : int, "max" or None
        Slots per epoch in the balanced modes. ``None`` or ``"max"``: classes x largest class
        (every class brought to the largest). An integer is split equally over the classes,
        so ``epoch_size=len(labels)`` makes a balanced epoch cost the same as a plain one.
    extra_classes : sequence of int
        Classes without real images that still take part (trained from synthetic images).
    shuffle : bool
        Shuffle the slot order each epoch (``mode="none"`` and ``"oversample"``).
    seed : int or None
        The plan for epoch ``e`` depends only on ``(seed, e)``.
    """

    def __init__(self, labels, *, num_classes: int, mode: str = "oversample",
                 batch_size: int = 32, epoch_size=None, extra_classes=(), shuffle: bool = True,
                 seed: int | None = None):
        mode = Balance.of(mode)
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = resolve_seed(seed)
        self.counts = np.bincount(self.labels, minlength=self.num_classes)
        self.members = [np.flatnonzero(self.labels == c) for c in range(self.num_classes)]
        active = self.counts > 0
        active[list(extra_classes)] = True
        self.active = active
        if not self.labels.size and not active.any():
            raise DatasetError("no training images")
        self.targets = self._targets(epoch_size)

    def _targets(self, epoch_size) -> np.ndarray:
        if self.mode == "none":
            if epoch_size not in (None, "max"):
                raise ConfigError("epoch_size only applies to the balanced modes")
            return self.counts.copy()
        k = int(self.active.sum())
        if epoch_size in (None, "max"):
            per_class = max(int(self.counts.max()), 1)
            epoch_size = k * per_class
        elif isinstance(epoch_size, bool) or not isinstance(epoch_size, (int, np.integer)) \
                or epoch_size < k:
            raise ConfigError(
                f"epoch_size must be 'max' or an integer of at least the {k} classes, "
                f"got {epoch_size!r}"
            )
        targets = np.zeros(self.num_classes, dtype=np.int64)
        # Remainder slots go to classes in a seeded order, not always the first classes.
        order = rng_for(self.seed, Stream.REMAINDER_CLASSES).permutation(
            np.flatnonzero(self.active))
        share = largest_remainder(np.ones(k), int(epoch_size))
        targets[order] = share
        return targets

    @property
    def epoch_size(self) -> int:
        return int(self.targets.sum())

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.epoch_size // self.batch_size)

    def epoch(self, epoch: int) -> EpochPlan:
        """The plan of epoch ``epoch`` (a pure function of the seed and the epoch)."""
        epoch = int(epoch)
        if self.mode == "none":
            order = np.arange(len(self.labels))
            if self.shuffle:
                order = rng_for(self.seed, Stream.UNBALANCED_ORDER, epoch).permutation(order)
            return EpochPlan(epoch, self.labels[order], order,
                             np.zeros(len(order), dtype=bool), self.batch_size)
        if self.mode == "balanced_batches":
            labels = self._balanced_batch_labels(epoch)
        else:
            labels = np.repeat(np.arange(self.num_classes), self.targets)
        real_index = np.full(len(labels), -1, dtype=np.int64)
        duplicate = np.zeros(len(labels), dtype=bool)
        for c in np.flatnonzero(self.active):
            slots = np.flatnonzero(labels == c)
            n_real = self.counts[c]
            if not n_real or not len(slots):
                continue
            # Start at epoch * target so consecutive epochs continue the class's stream.
            picks = stream_take(n_real, epoch * int(self.targets[c]), len(slots),
                                seed=self.seed, key=real_image_stream(c))
            real_index[slots] = self.members[c][picks]
            _, first = np.unique(picks, return_index=True)
            dup = np.ones(len(slots), dtype=bool)
            dup[first] = False
            duplicate[slots] = dup
        if self.mode == "oversample" and self.shuffle:
            order = rng_for(self.seed, Stream.OVERSAMPLE_ORDER, epoch).permutation(len(labels))
            labels, real_index, duplicate = labels[order], real_index[order], duplicate[order]
        return EpochPlan(epoch, labels, real_index, duplicate, self.batch_size)

    def _balanced_batch_labels(self, epoch: int) -> np.ndarray:
        """Class of every slot so that each batch holds each active class equally (+-1).

        A batch repeats one order of the classes (seeded per batch when shuffling), the
        classes with one more slot first: every run of consecutive slots in it, such as the
        share of one replica when a distribution strategy cuts the batch into equal parts,
        then holds each class equally too (+-1).
        """
        classes = np.flatnonzero(self.active)
        rng = rng_for(self.seed, Stream.BATCH_CLASSES, epoch)
        rotation = rng.permutation(classes)
        labels, position = [], 0
        total = self.epoch_size
        for start in range(0, total, self.batch_size):
            size = min(self.batch_size, total - start)
            # The classes that get one more slot rotate through a seeded order.
            extras = rotation[(position + np.arange(size % len(classes))) % len(classes)]
            position += len(extras)
            rest = np.setdiff1d(classes, extras)
            if self.shuffle:
                extras, rest = rng.permutation(extras), rng.permutation(rest)
            else:
                extras = np.sort(extras)
            order = np.concatenate([extras, rest])
            labels.append(np.resize(order, size))
        return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
