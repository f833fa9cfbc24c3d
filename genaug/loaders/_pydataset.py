"""``BalancedBatchGenerator``: a Keras ``PyDataset`` of balanced batches, decoded with PIL.

It imports no TensorFlow and works under every Keras backend.
"""

from __future__ import annotations

import threading
import time

import keras
import numpy as np

from genaug.exceptions import ConfigError
from genaug.loaders._augment import BatchAugment
from genaug.loaders._data import adapt_data
from genaug.loaders._keras_hooks import check_fit_class_weight
from genaug.loaders._options import SamplingOptions
from genaug.loaders._sampler import EpochSampler, build_sampler
from genaug.loaders._slots import SlotReader
from genaug.loaders._stored import StoredSource, stored
from genaug.sampling import DEFAULT_CAP, SYNTHETIC, SyntheticRecipe


class BalancedBatchGenerator(keras.utils.PyDataset):
    """Batches with equal class representation, decoded lazily from disk, for ``model.fit``.

    Parameters
    ----------
    data : path-like, DatasetIndex, (x, y) tuple or array
        An image folder (one sub-folder per class) or CSV manifest, an index, an in-memory
        ``(x, y)`` pair, or ``x`` with ``y`` given as the second argument (imbalanced-learn
        style). A manifest's ``split`` column is obeyed: only ``train`` rows (and rows without
        a split) are drawn, and synthetic images derived from its ``validation`` or ``test``
        rows are left out.
    y : array-like, optional
        Labels when ``data`` is an in-memory array.
    batch_size : int, default 32
    image_size : (height, width), optional
        Default: (256, 256) for files; in-memory arrays keep their own size (uint8 arrays can
        be resized, float arrays cannot: asking is a ``ConfigError``).
    color_mode : {"grayscale", "rgb", "rgba"}, optional
        Default: "rgb" for files; arrays keep their channels.
    class_names : sequence of str, optional
        Explicit classes (may name classes with no image). For in-memory data, the names of
        label indices ``0..K-1``.
    seed : int, optional
        Same seed, same batches; each epoch reshuffles from ``(seed, epoch)``.
    augment : callable or keras.layers.Layer, optional
        Applied to every float32 batch (e.g. ``keras.Sequential([keras.layers.RandomFlip()])``).
        Keras layers draw from a random state set from ``(seed, epoch, batch index)``, so
        batches are the same whatever ``workers`` is (see :class:`BatchAugment`).
    balance : {"balanced_batches", "oversample", "none"}, default "balanced_batches"
        How an epoch draws the classes (:class:`~genaug.sampling.Balance`). The default is
        what this class is named for: every batch holds each class equally, as in
        imbalanced-learn's ``BalancedBatchGenerator``.
        (:func:`~genaug.image_dataset_from_directory` defaults to ``"oversample"``, the
        shuffled stream of the Keras loader it replaces.)
    epoch_size : int, "max" or None
        Samples per epoch; default: classes x largest class.
    class_weight : dict, "balanced" or None
        Folded into returned sample weights (Keras refuses ``fit(class_weight=...)`` together
        with sample weights). ``fit(class_weight=...)`` on a balancing loader corrects twice:
        genaug warns when Keras hands it the weights.
    sample_weights : bool, optional
        Return ``(x, y, sample_weight)``; default: only when class or synthetic weights apply.
    synthetic_cache : path-like, SyntheticCache or CacheSource, optional
        Synthetic images to mix in; ``synthetic_ratio``, ``synthetic_cap``,
        ``synthetic_pool_cap``, ``synthetic_classes``, ``synthetic_weight``,
        ``synthetic_fill_to``, ``synthetic_label_smoothing`` and ``mixup`` are the fields of
        :class:`~genaug.sampling.SyntheticRecipe` (``ratio``, ``cap``, ...), given flat.
    synthetic : SyntheticRecipe, optional
        The same settings as one object, instead of the flat keywords.
    schedule : RampSchedule, optional
        Multiplies the synthetic share per epoch (``recipe.schedule(epochs=N)``).
    exclude_source_ids : iterable of str
        Held-out real image ids; synthetic images derived from them are left out.
    synthetic_ids : iterable of str, optional
        Ids of the synthetic images that may be drawn (a selection); default all.
    live_source : LiveSource, optional
        Fresh synthetic images from a background generator; synthetic slots take them first.
    cache : "auto", "memory", path-like or None, default "auto"
        Decode the training (and cached synthetic) files once into an image store and
        assemble each batch by one gather: ``"auto"`` in memory when the decoded images fit
        :func:`~genaug.data.memory_budget`, else decoded per batch as with None; ``"memory"``
        always in memory; a directory keeps a memory-mapped store there for later runs.
        Batches are the same with and without it.
    verbose : bool, default True
        Print what was found when ``data`` is a folder or manifest (as Keras's loader does).
    **pydataset_kwargs
        ``workers``, ``use_multiprocessing``, ``max_queue_size``.

    Attributes
    ----------
    skipped : tuple of SkippedFile
        Files left out while indexing ``data``, and why.
    decode_failures : dict
        Files that broke after indexing (replaced by another image of their class).
    """

    def __init__(self, data, y=None, *, batch_size: int = 32, image_size=None,
                 color_mode: str | None = None, class_names=None, seed: int | None = None,
                 augment=None, balance: str = "balanced_batches", epoch_size=None,
                 shuffle: bool = True, interpolation: str = "bilinear", class_weight=None,
                 sample_weights: bool | None = None, synthetic_cache=None,
                 synthetic_ratio=None, synthetic_cap: float = DEFAULT_CAP,
                 synthetic_pool_cap=None, synthetic_classes=None, synthetic_weight: float = 1.0,
                 synthetic_fill_to=None, synthetic_label_smoothing: float = 0.0,
                 mixup: bool = False, synthetic: SyntheticRecipe | None = None, schedule=None,
                 exclude_source_ids=(), synthetic_ids=None,
                 live_source=None, cache="auto", verbose: bool = True,
                 **pydataset_kwargs):
        options = SamplingOptions.from_arguments(locals())
        loaded = adapt_data(data, y, class_names=class_names)
        if verbose and loaded.indexed:
            print(loaded.found_message("loader"))
        sampler = build_sampler(loaded.training, options, synthetic_cache=synthetic_cache,
                                held_out_ids=loaded.held_out_ids,
                                live_classes=live_source.live_classes if live_source else ())
        self._attach(sampler, image_size=image_size, color_mode=color_mode,
                     interpolation=interpolation, augment=augment, live_source=live_source,
                     skipped=loaded.skipped, cache=cache, **pydataset_kwargs)

    @classmethod
    def from_sampler(cls, sampler: EpochSampler, *, image_size=None,
                     color_mode: str | None = None, interpolation: str = "bilinear",
                     augment=None, live_source=None, cache="auto", **pydataset_kwargs):
        """A generator of ``sampler``'s batches (see :func:`~genaug.loaders.build_sampler`)."""
        generator = cls.__new__(cls)
        generator._attach(sampler, image_size=image_size, color_mode=color_mode,
                          interpolation=interpolation, augment=augment,
                          live_source=live_source, skipped=(), cache=cache,
                          **pydataset_kwargs)
        return generator

    def _attach(self, sampler, *, image_size, color_mode, interpolation, augment, live_source,
                skipped, cache, **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        if sampler.options.batch_size is None:
            raise ConfigError("BalancedBatchGenerator needs a batch_size")
        self.sampler = sampler
        self.class_names = sampler.class_names
        self.real = sampler.real
        self.synthetic_pool = sampler.synthetic_pool
        self.live_source = live_source
        self.skipped = tuple(skipped)
        self.image_size, self.color_mode = sampler.real.image_format(image_size, color_mode)
        self.interpolation = interpolation
        self.augment = augment
        self._augment = BatchAugment(augment, seed=sampler.seed)
        self._store_option = cache  # kept to store an adapted synthetic pool the same way
        self.reader = SlotReader(stored(sampler.real, cache, **self._image_format()),
                                 self._stored_synthetic(), live_source,
                                 image_size=self.image_size, color_mode=self.color_mode,
                                 interpolation=interpolation)
        self.sample_weights = sampler.sample_weights
        self._lock = threading.Lock()
        self._served: dict[int, dict] = {}

    def _image_format(self) -> dict:
        return dict(image_size=self.image_size, color_mode=self.color_mode,
                    interpolation=self.interpolation)

    def _stored_synthetic(self):
        return stored(self.sampler.synthetic_pool, self._store_option, **self._image_format())

    @property
    def seed(self) -> int:
        return self.sampler.seed

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def decode_failures(self) -> dict[str, str]:
        return self.reader.decode_failures

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch``. ``on_epoch_end`` moves to the next one, so a ``model.fit`` from
        epoch 0 needs no call; a fit from ``initial_epoch`` calls this first."""
        self.sampler.set_epoch(epoch)

    def adapt_synthetic(self, *, synthetic_ids=None, synthetic_cap=None) -> None:
        """Draw from the next batch on as :meth:`EpochSampler.adapt` says (a selection, per-class
        caps), mid-``fit``: :class:`~genaug.loaders.AdaptAfterWarmup` calls this."""
        self.sampler.adapt(synthetic_ids=synthetic_ids, synthetic_cap=synthetic_cap)
        self.synthetic_pool = self.sampler.synthetic_pool
        self.reader.synthetic_pool = self._stored_synthetic()

    def on_epoch_begin(self) -> None:
        check_fit_class_weight(self.sampler)

    def on_epoch_end(self) -> None:
        self.sampler.set_epoch(self.sampler.epoch + 1)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        mixed = self.sampler.mixed()
        if mixed.epoch not in self._served:
            self._start_epoch(mixed)
        part = mixed.batch_slice(index)
        # One wait budget for the whole batch: a step never waits longer than the timeout.
        deadline = (time.perf_counter() + self.live_source.timeout
                    if self.live_source is not None else None)
        images = self._gathered(mixed, part)
        if images is None:
            images = np.stack([self.reader.read(mixed, slot, deadline=deadline)
                               for slot in range(part.start, part.stop)])
        if images.dtype.kind != "f":
            images = images.astype(np.float32)
        x = self._augment(images, epoch=mixed.epoch, index=index)
        y = self.sampler.targets(mixed, part)
        if self.sample_weights:
            return x, y, mixed.weights[part]
        return x, y

    def _gathered(self, mixed, part):
        """The batch's images gathered from the image stores in one indexing per source, or
        None when a slot needs the fallback chain (a live generator, a mixup partner, a
        broken file, a synthetic slot without a cached image, a source not stored)."""
        real, synthetic = self.reader.real, self.reader.synthetic_pool
        if self.live_source is not None or not isinstance(real, StoredSource) \
                or (mixed.partner[part] >= 0).any():
            return None
        index = mixed.index[part]
        is_synthetic = mixed.source[part] == SYNTHETIC
        if is_synthetic.any() and (not isinstance(synthetic, StoredSource)
                                   or (index[is_synthetic] < 0).any()):
            return None
        images = np.empty((len(index), *real.store.images.shape[1:]), dtype=np.float32)
        for source, rows in ((real, ~is_synthetic), (synthetic, is_synthetic)):
            if rows.any():
                store = source.store
                if not source.readable[index[rows]].all():
                    return None
                images[rows] = store.images[index[rows]]
        return images

    def _start_epoch(self, mixed) -> None:
        """Once per epoch: count its draws and tell the live producer what it needs."""
        with self._lock:
            if mixed.epoch in self._served:
                return
            self._served[mixed.epoch] = mixed.draw_counts(self.class_names)
            if self.live_source is not None:
                self.live_source.set_need(np.bincount(mixed.labels[mixed.source == SYNTHETIC],
                                                      minlength=len(self.class_names)))

    def draws_served(self) -> dict:
        """Per epoch served so far, per class: real, duplicated and synthetic draws (the whole
        run's, planned or not: :meth:`EpochSampler.composition`)."""
        return {int(e): c for e, c in sorted(self._served.items())}
