"""Where the image of a slot comes from: its planned item, then stand-ins, in one explicit chain.

A real slot reads its planned real image. A synthetic slot tries, in order::

    fresh (live generator) -> planned cached image -> the slot's planned real image
                           -> wait for a fresh one (a class only the live generator supplies)

Within a pool (real or cached) a file that cannot be decoded is reported once and replaced by
the next readable image of the same class, so a file that breaks after indexing never stops an
epoch and never changes a batch's class balance. Both loaders use this chain: the
``PyDataset`` for every slot, the ``tf.data`` loader for the slots TensorFlow failed to decode.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from genaug.sampling import SYNTHETIC, MixedEpoch
from genaug.sources import FreshSource, Source


@dataclass(frozen=True)
class Planned:
    """Item ``index`` of ``source``, or the next readable image of its class there."""

    source: Source
    index: int


@dataclass(frozen=True)
class Fresh:
    """A fresh image from the live generator; ``block``: wait until one comes or it stops."""

    block: bool = False


class SlotReader:
    """Read (or locate) the image of every slot of a mixed epoch through the fallback chain.

    Parameters
    ----------
    real : Source
    synthetic : Source, optional
        The cached synthetic pool the plan indexes (``synthetic_pool``).
    live : FreshSource, optional
        A live generator; synthetic slots ask it first.
    image_size, color_mode, interpolation
        How images are decoded.

    Attributes
    ----------
    decode_failures : dict
        ``{path or item id: error}`` of every file that could not be decoded.
    """

    def __init__(self, real: Source, synthetic: Source | None = None,
                 live: FreshSource | None = None, *, image_size, color_mode,
                 interpolation: str = "bilinear"):
        self.real = real
        self.synthetic_pool = synthetic
        self.live = live
        self.image_size = image_size
        self.color_mode = color_mode
        self.interpolation = interpolation
        self.decode_failures: dict[str, str] = {}
        self._lock = threading.Lock()

    def chain(self, mixed: MixedEpoch, slot: int) -> list[Planned | Fresh]:
        """The links tried for ``slot``, in order."""
        if mixed.source[slot] != SYNTHETIC:
            return [Planned(self.real, int(mixed.index[slot]))]
        links: list[Planned | Fresh] = []
        if self.live is not None:
            links.append(Fresh())
        if mixed.index[slot] >= 0:
            links.append(Planned(self.synthetic_pool, int(mixed.index[slot])))
        if mixed.real_index[slot] >= 0:
            links.append(Planned(self.real, int(mixed.real_index[slot])))
        if self.live is not None:
            links.append(Fresh(block=True))
        return links

    def read(self, mixed: MixedEpoch, slot: int, *, deadline: float | None = None):
        """The pixels of ``slot`` (blended with its mixup partner, if it has one)."""
        label = int(mixed.labels[slot])
        image = None
        for position, link in enumerate(self.chain(mixed, slot)):
            if isinstance(link, Fresh):
                image = self.live.take(label, deadline=deadline, block=link.block)
            else:
                image = self._first_readable(link, label)[1]
                if image is not None and self.live is not None and position > 0:
                    self.live.record_fallback("cache" if link.source is self.synthetic_pool
                                              else "real")
            if image is not None:
                break
        if image is None:
            raise RuntimeError(self._nothing_left(label))
        if mixed.partner[slot] >= 0:
            partner = self._first_readable(Planned(self.real, int(mixed.partner[slot])),
                                           label)[1]
            if partner is not None:
                lam = float(mixed.lam[slot])
                image = lam * image.astype(np.float32) + (1.0 - lam) * partner
        return image

    def locate(self, mixed: MixedEpoch, slot: int) -> tuple[str, str | None]:
        """Readable files for ``slot`` and its mixup partner (None without one): the planned
        ones, or stand-ins. For a loader that decodes files itself."""
        label = int(mixed.labels[slot])
        for link in self.chain(mixed, slot):
            if isinstance(link, Planned):
                found, _ = self._first_readable(link, label)
                if found is not None:
                    break
        else:
            raise RuntimeError(self._nothing_left(label))
        path = link.source.paths[found]
        partner = None
        if mixed.partner[slot] >= 0:
            index, _ = self._first_readable(Planned(self.real, int(mixed.partner[slot])), label)
            partner = self.real.paths[index] if index is not None else None
        return path, partner

    def _first_readable(self, link: Planned, label: int):
        """``(index, image)`` of the planned item or the next readable one of its class in
        the same source; ``(None, None)`` when none is left."""
        source, i = link.source, link.index
        image = self._try_load(source, i)
        if image is not None:
            return i, image
        members = np.flatnonzero(source.labels == label)
        start = int(np.searchsorted(members, i))
        for step in range(1, len(members)):
            candidate = int(members[(start + step) % len(members)])
            image = self._try_load(source, candidate)
            if image is not None:
                return candidate, image
        return None, None

    def _try_load(self, source: Source, i: int):
        key = source.paths[i] if source.paths is not None else source.ids[i]
        if key in self.decode_failures:
            return None
        try:
            return source.load(i, image_size=self.image_size, color_mode=self.color_mode,
                               interpolation=self.interpolation)
        except Exception as error:  # PIL raises many types on corrupt data
            with self._lock:
                self.decode_failures[key] = f"{type(error).__name__}: {error}"
            warnings.warn(f"skipping unreadable image {key}: {error}", stacklevel=3)
            return None

    def _nothing_left(self, label: int) -> str:
        name = self.real.class_names[label]
        if self.live is not None and self.live.error:
            return (f"the live generator stopped ({self.live.error}) and class {name!r} has "
                    "no other image")
        return f"no readable image left for class {name!r}"
