"""``BalancedBatchGenerator``: a Keras ``PyDataset`` of balanced batches, decoded with PIL.

It imports no TensorFlow and works under every Keras backend.
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from genaug.data import DatasetIndex, check_color_mode
from genaug.loaders._sampler import EpochSampler
from genaug.sources import CacheSource, RealSource
from genaug.synthetic._mixer import SYNTHETIC


def apply_augment(augment, batch: np.ndarray) -> np.ndarray:
    """Run a callable or Keras augmentation layers on a float32 batch; return numpy."""
    if augment is None:
        return batch
    if isinstance(augment, keras.layers.Layer):
        out = augment(batch, training=True)
    else:
        out = augment(batch)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)


class BalancedBatchGenerator(keras.utils.PyDataset):
    """Batches with equal class representation, decoded lazily from disk, for ``model.fit``.

    Parameters
    ----------
    data : path-like, DatasetIndex, (x, y) tuple or array
        An image folder (one sub-folder per class) or CSV manifest, an index, an in-memory
        ``(x, y)`` pair, or ``x`` with ``y`` given as the second argument (imbalanced-learn
        style).
    y : array-like, optional
        Labels when ``data`` is an in-memory array.
    batch_size : int, default 32
    image_size : (height, width), default (256, 256)
    color_mode : {"grayscale", "rgb", "rgba"}, default "rgb"
    class_names : sequence of str, optional
        Explicit classes (may name classes with no image). For in-memory data, the names of
        label indices ``0..K-1``.
    seed : int, optional
        Same seed, same batches; each epoch reshuffles from ``(seed, epoch)``.
    augment : callable or keras.layers.Layer, optional
        Applied to every float32 batch (e.g. ``keras.Sequential([keras.layers.RandomFlip()])``).
    balance : {"balanced_batches", "oversample", "none"}, default "balanced_batches"
    epoch_size : int, "max" or None
        Samples per epoch; default: classes x largest class.
    class_weight : dict, "balanced" or None
        Folded into returned sample weights (Keras refuses ``fit(class_weight=...)`` together
        with sample weights).
    sample_weights : bool, optional
        Return ``(x, y, sample_weight)``; default: only when class or synthetic weights apply.
    synthetic_cache : path-like, SyntheticCache or CacheSource, optional
        Synthetic images to mix in; see :class:`~genaug.synthetic.SyntheticMixer` for
        ``synthetic_ratio``, ``synthetic_cap``, ``synthetic_classes``, ``synthetic_weight``,
        ``mixup`` and ``schedule``.
    exclude_source_ids : iterable of str
        Held-out real image ids; synthetic images derived from them are left out.
    live_source : LiveSource, optional
        Fresh synthetic images from a background generator; synthetic slots take them first.
    **pydataset_kwargs
        ``workers``, ``use_multiprocessing``, ``max_queue_size``.
    """

    def __init__(self, data, y=None, *, batch_size: int = 32, image_size=(256, 256),
                 color_mode: str = "rgb", class_names=None, seed: int | None = None,
                 augment=None, balance: str = "balanced_batches", epoch_size=None,
                 shuffle: bool = True, interpolation: str = "bilinear", class_weight=None,
                 sample_weights: bool | None = None, synthetic_cache=None,
                 synthetic_ratio=None, synthetic_cap: float = 0.6, synthetic_classes=None,
                 synthetic_weight: float = 1.0, mixup: bool = False, schedule=None,
                 exclude_source_ids=(), live_source=None, **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        check_color_mode(color_mode)
        self.real, self.class_names = _real_source(data, y, class_names)
        self.image_size = None if image_size is None else tuple(int(v) for v in image_size)
        self.color_mode = color_mode
        self.interpolation = interpolation
        self.augment = augment
        synthetic = synthetic_cache
        if synthetic is not None and not isinstance(synthetic, CacheSource):
            synthetic = CacheSource(synthetic, class_names=self.class_names,
                                    exclude_source_ids=exclude_source_ids)
        self.synthetic = synthetic
        self.sampler = EpochSampler(
            self.real, class_names=self.class_names, balance=balance, batch_size=batch_size,
            epoch_size=epoch_size, shuffle=shuffle, seed=seed, class_weight=class_weight,
            synthetic=synthetic, synthetic_ratio=synthetic_ratio, synthetic_cap=synthetic_cap,
            synthetic_classes=synthetic_classes, synthetic_weight=synthetic_weight, mixup=mixup,
            schedule=schedule, live_classes=live_source.live_classes if live_source else ())
        if sample_weights is None:
            sample_weights = class_weight is not None or (synthetic is not None
                                                          and synthetic_weight != 1.0)
        self.sample_weights = bool(sample_weights)
        self.live_source = live_source
        self.decode_failures: dict[str, str] = {}
        self._lock = threading.Lock()
        self.composition_log: dict[int, dict] = {}

    @property
    def seed(self) -> int:
        return self.sampler.seed

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (the ramp schedule's callback calls this at each epoch start)."""
        self.sampler.set_epoch(epoch)

    def on_epoch_end(self) -> None:
        self.sampler.set_epoch(self.sampler.epoch + 1)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        mixed = self.sampler.mixed()
        if mixed.epoch not in self.composition_log:
            self._start_epoch(mixed)
        part = mixed.batch_slice(index)
        # One wait budget for the whole batch: a step never waits longer than the timeout.
        deadline = (time.perf_counter() + self.live_source.timeout
                    if self.live_source is not None else None)
        images = [self._load_slot(mixed, slot, deadline)
                  for slot in range(part.start, part.stop)]
        x = apply_augment(self.augment, np.stack(images).astype(np.float32))
        y = mixed.labels[part].astype(np.int64)
        if self.sample_weights:
            return x, y, mixed.weights[part]
        return x, y

    def _start_epoch(self, mixed) -> None:
        """Once per epoch: log its composition and tell the live producer what it needs."""
        with self._lock:
            if mixed.epoch in self.composition_log:
                return
            self.composition_log[mixed.epoch] = mixed.composition(self.class_names)
            if self.live_source is not None:
                self.live_source.set_need(np.bincount(mixed.labels[mixed.source == SYNTHETIC],
                                                      minlength=len(self.class_names)))

    def _load_slot(self, mixed, slot: int, deadline: float | None) -> np.ndarray:
        label = int(mixed.labels[slot])
        if mixed.source[slot] == SYNTHETIC:
            image = self._synthetic(mixed, slot, label, deadline)
            if mixed.partner[slot] >= 0:
                lam = float(mixed.lam[slot])
                partner = self._load(self.real, int(mixed.partner[slot]), label)
                image = lam * image.astype(np.float32) + (1.0 - lam) * partner
            return image
        return self._load(self.real, int(mixed.index[slot]), label)

    def _synthetic(self, mixed, slot: int, label: int, deadline: float | None) -> np.ndarray:
        """Fresh from the live source, else the cached pick, else the planned real image."""
        live = self.live_source
        image = live.take(label, deadline=deadline) if live is not None else None
        if image is not None:
            return image
        if mixed.index[slot] >= 0:
            if live is not None:
                live.record_fallback("cache")
            return self._load(self.synthetic, int(mixed.index[slot]), label)
        if mixed.real_index[slot] >= 0:
            live.record_fallback("real")
            return self._load(self.real, int(mixed.real_index[slot]), label)
        # A class only the live generator supplies: nothing else can stand in.
        image = live.take(label, block=True)
        if image is None:
            raise RuntimeError(f"the live generator stopped ({live.error}) and class "
                               f"{self.class_names[label]!r} has no other image")
        return image

    def _load(self, source, i: int, label: int) -> np.ndarray:
        """Decode item ``i``; a file that fails is reported once and replaced by the next
        image of the same class, so a corrupt file never stops an epoch."""
        image = self._try_load(source, i)
        if image is not None:
            return image
        members = np.flatnonzero(source.labels == label)
        start = int(np.searchsorted(members, i))
        for step in range(1, len(members)):
            image = self._try_load(source, int(members[(start + step) % len(members)]))
            if image is not None:
                return image
        raise RuntimeError(f"no readable image left for class {self.class_names[label]!r}")

    def _try_load(self, source, i: int) -> np.ndarray | None:
        key = source.paths[i] if source.paths is not None else str(i)
        if key in self.decode_failures:
            return None
        try:
            return source.load(i, image_size=self.image_size, color_mode=self.color_mode,
                               interpolation=self.interpolation)
        except Exception as error:  # PIL raises many types on corrupt data
            with self._lock:
                self.decode_failures[key] = f"{type(error).__name__}: {error}"
            warnings.warn(f"skipping unreadable image {key}: {error}", stacklevel=2)
            return None

    def composition(self) -> dict:
        """Per epoch and class: real, duplicated and synthetic draws so far."""
        return {int(e): c for e, c in sorted(self.composition_log.items())}


def _real_source(data, y, class_names):
    if y is not None or isinstance(data, tuple):
        x, labels = (data, y) if y is not None else data
        labels = np.asarray(labels)
        if labels.dtype.kind in "USO":
            names = list(class_names) if class_names is not None else sorted(set(labels.tolist()))
            position = {n: i for i, n in enumerate(names)}
            labels = np.asarray([position[v] for v in labels.tolist()])
        else:
            k = int(labels.max()) + 1 if labels.size else 0
            names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        return RealSource(images=x, labels=labels), tuple(names)
    index = data if isinstance(data, DatasetIndex) else \
        DatasetIndex.load(Path(data), class_names=class_names)
    return RealSource(index), index.class_names
