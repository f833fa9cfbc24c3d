"""The ``tf.data`` loader: the sampler's plan, decoded in parallel by TensorFlow ops.

Each pass over the dataset asks the sampler for one epoch's plan (a few arrays), so balancing
and mixing cost nothing per image; decoding runs with ``AUTOTUNE`` parallelism in a fixed order,
which keeps every balanced batch intact and the whole stream deterministic.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from genaug.data import (
    PROGRESS_FROM,
    StoreDecoder,
    channels_of,
    load_image,
    read_header,
    resize_array,
)
from genaug.exceptions import ConfigError
from genaug.loaders._data import adapt_data
from genaug.loaders._keras_hooks import watch_class_weight_map
from genaug.loaders._options import SamplingOptions
from genaug.loaders._sampler import EpochSampler, build_sampler
from genaug.loaders._slots import SlotReader
from genaug.loaders._stored import check_cache, store_builder
from genaug.sampling import DEFAULT_CAP, SYNTHETIC

# What TensorFlow's decoders turn into the same pixels as PIL; anything else goes via PIL.
_NATIVE_MODES = {"L", "RGB", "RGBA"}
_NATIVE_FORMATS = {"PNG", "JPEG", "GIF"}
_NATIVE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif"}
LABEL_MODES = ("int", "categorical", "binary", None)
#: Interpolations whose resize to the image's own size returns its pixels exactly.
_EXACT_AT_OWN_SIZE = {"bilinear", "nearest", "bicubic", "area"}
#: Slots decoded (and, when a file breaks, repaired) together when the loader yields single
#: images.
_SINGLE_IMAGE_WINDOW = 32
#: Images decoded per step while an image store is built.
_STORE_BATCH = 256


def _needs_pil(source) -> np.ndarray:
    """Per file: decode with PIL? Judged by the format PIL found in the content at indexing
    (a TIFF named .png must not reach TensorFlow's decoder), else by the file name."""
    n = len(source.paths)
    formats = source.formats if source.formats is not None else [None] * n
    modes = source.modes if source.modes is not None else [None] * n
    return np.array([
        (fmt not in _NATIVE_FORMATS if fmt is not None
         else Path(path).suffix.lower() not in _NATIVE_SUFFIXES)
        or (mode is not None and mode not in _NATIVE_MODES)
        for path, fmt, mode in zip(source.paths, formats, modes)], dtype=bool)


def make_tf_dataset(sampler: EpochSampler, *, image_size, color_mode: str = "rgb",
                    interpolation: str = "bilinear", label_mode: str | None = "int",
                    crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
                    data_format: str | None = None, augment=None,
                    cache="auto") -> tf.data.Dataset:
    """A ``tf.data.Dataset`` that yields the sampler's epochs, one per complete pass.

    Yields ``(images, labels)`` or, when ``sampler.sample_weights``, ``(images, labels,
    sample_weights)``; images are float32 in [0, 255] like Keras's loaders. A sampler built
    with ``batch_size=None`` yields single images (still in the balanced order). The returned
    dataset carries ``class_names``, ``file_paths``, ``sampler``, ``decode_failures``,
    ``image_size`` and ``color_mode`` attributes, and ``adapt_synthetic`` (the
    :class:`~genaug.loaders.AdaptAfterWarmup` switch, for a pool among the listed files).

    A pass moves the sampler to the next epoch when it has delivered its last batch (a fit
    from ``initial_epoch`` sets ``sampler.set_epoch`` first), so a partial pass
    (``dataset.take(1)`` before ``fit``) changes nothing. A file that breaks after indexing
    is replaced by another image of its class (reported once, as in the ``PyDataset``): the
    batches keep their classes, the epoch its length.

    ``cache`` (``"auto"``, ``"memory"``, a store directory or None) decodes every file once,
    with the same TensorFlow ops, into an image store when the first pass begins; a batch is
    then one gather of its rows (see :func:`~genaug.data.build_store`). The batches are the
    same as when streaming.
    """
    return _TFPipeline(sampler, image_size=image_size, color_mode=color_mode,
                       interpolation=interpolation, label_mode=label_mode,
                       crop_to_aspect_ratio=crop_to_aspect_ratio,
                       pad_to_aspect_ratio=pad_to_aspect_ratio, data_format=data_format,
                       augment=augment, cache=cache).build()


class _TFPipeline:
    """The steps of :func:`make_tf_dataset`; :meth:`build` runs them in order."""

    def __init__(self, sampler, *, image_size, color_mode, interpolation, label_mode,
                 crop_to_aspect_ratio, pad_to_aspect_ratio, data_format, augment, cache):
        self.channels = channels_of(color_mode)
        if label_mode not in LABEL_MODES:
            raise ConfigError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
        self.num_classes = len(sampler.class_names)
        if label_mode == "binary" and self.num_classes != 2:
            raise ConfigError(f"label_mode='binary' needs exactly 2 classes, found "
                              f"{self.num_classes}")
        if sampler.categorical and label_mode != "int":
            raise ConfigError(f"synthetic_label_smoothing needs label_mode='int' (the targets "
                              f"become one-hot rows), got {label_mode!r}")
        if sampler.real.paths is None:
            raise ConfigError("the tf.data loader reads files; use BalancedBatchGenerator for "
                              "arrays")
        self.sampler = sampler
        self.color_mode = color_mode
        self.height, self.width = (int(v) for v in image_size)
        self.interpolation = interpolation
        self.label_mode = label_mode
        self.crop, self.pad = crop_to_aspect_ratio, pad_to_aspect_ratio
        self.data_format = data_format
        self.augment = augment
        self.batch_size = sampler.options.batch_size
        self.epoch_size = sampler.plan.epoch_size
        self.window = self.batch_size or _SINGLE_IMAGE_WINDOW
        self.windows = -(-self.epoch_size // self.window)
        self.weighted = sampler.sample_weights
        # Mixup partners exist only when the mixer was asked for mixup.
        self.mixup = sampler.mixer is not None and sampler.mixer.recipe.mixup
        self.passes, self.pass_epochs = 0, {}  # every pass over the dataset, and its epoch
        # The pass that last delivered each window (batch) of the plan.
        self.delivered = tf.Variable(np.full(self.windows, -1, np.int64), trainable=False)
        # The synthetic files listed here; an adapted pool is mapped onto them (planned).
        self.listed, self.listed_rows = sampler.synthetic_pool, None
        self.reader = SlotReader(sampler.real, sampler.synthetic_pool, image_size=(self.height,
                                                                              self.width),
                                 color_mode=color_mode, interpolation=interpolation)
        self.cache = cache
        self._store, self._store_lock = None, threading.Lock()

    def build(self) -> tf.data.Dataset:
        # 1. Every file a plan can name, which of them need PIL, and whether an image store
        #    holds them decoded.
        self.files()
        # 2. One epoch's plan per pass, as a few arrays.
        dataset = self.plans()
        # 3. Decode every slot in parallel, in plan order, a batch at a time; or, from the
        #    store, gather each batch's rows at once.
        if self.build_store is None:
            dataset = dataset.map(_graph(self.element), num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True).batch(self.window)
        else:
            dataset = dataset.map(_graph(self.gathered), num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True)
        # 4. A batch with a file that broke after indexing is dropped.
        dataset = dataset.ignore_errors()
        # 5. Augmentation.
        if self.augment is not None and self.batch_size:
            dataset = self.augmented(dataset)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        # 6. Once the consumer has taken the pass's other batches, the dropped ones are read
        #    again (a pass with none dropped never instantiates this under model.fit, which
        #    takes exactly the dataset's cardinality).
        dataset = dataset.concatenate(self.read_again())
        # 7. As each batch reaches the consumer: it is marked delivered, its labels unpacked;
        #    after the last slot of a pass the sampler moves on (so a partial pass, such as
        #    take(1), moves nothing).
        dataset = dataset.map(_graph(self.deliver))
        if not self.batch_size:
            dataset = dataset.unbatch().map(_graph(self.deliver_single_image))
        steps = len(self.sampler) if self.batch_size else self.epoch_size
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
        return self.describe(dataset)

    # -- 1. files ---------------------------------------------------------------------------
    def files(self) -> None:
        real, synthetic = self.sampler.real, self.sampler.synthetic_pool
        # Encoded once: a plan then indexes bytes, as TensorFlow's strings need them.
        self.paths = np.asarray([os.fsencode(path) for path in (
            *real.paths, *(synthetic.paths if synthetic else ()))], dtype=bytes)
        self.pil = np.concatenate([_needs_pil(real),
                                   _needs_pil(synthetic) if synthetic else np.zeros(0, bool)])
        self.offset = len(real.paths)
        self.any_pil = bool(self.pil.any())
        target = (self.width, self.height)
        self.at_size = (self.interpolation in _EXACT_AT_OWN_SIZE and not (self.crop or self.pad)
                        and all(size == target for source in (real, synthetic) if source
                                for size in _file_sizes(source)))
        # At its own size a decoded image is whole pixel values; resized it is not, and the
        # store keeps the float32 values the resize made, so batches stay the same.
        decoder = StoreDecoder(
            f"tensorflow {tf.__version__}" + (" crop" if self.crop else " pad" if self.pad
                                              else ""),
            np.dtype(np.uint8 if self.at_size else np.float32), self.decode_into_store)
        self.build_store = store_builder(
            [os.fsdecode(path) for path in self.paths], self.cache,
            image_size=(self.height, self.width), color_mode=self.color_mode,
            interpolation=self.interpolation, decoder=decoder)
        self.pixels = None
        if self.build_store is not None and check_cache(self.cache) in ("auto", "memory"):
            # Filled when the first pass builds the store; a memory-mapped store is read
            # through numpy instead, so that only the rows a batch needs are paged in.
            shape = [None, self.height, self.width, self.channels]
            self.pixels = tf.Variable(tf.zeros([0, *shape[1:]], decoder.dtype), shape=shape,
                                      trainable=False)

    # -- 2. plans ---------------------------------------------------------------------------
    def plans(self) -> tf.data.Dataset:
        """Each pass: one call into Python for the epoch's plan, then its slots as tensor
        slices (no per-element Python, and no unbatching of a generator's output); from a
        store, as slices of a window (batch) each, since nothing is done per image."""
        stored = self.build_store is not None
        dtypes = [tf.int64 if stored else tf.string, tf.int64]
        if self.weighted:
            dtypes.append(tf.float32)
        if self.any_pil and not stored:
            dtypes.append(tf.bool)
        if self.mixup:
            dtypes += ([tf.int64] if stored else [tf.string, tf.bool]) + [tf.bool, tf.float32]

        def epoch_slots(_):
            columns = tf.numpy_function(self.epoch_arrays, [], dtypes, stateful=True)
            for column in columns:
                column.set_shape([None])
            if not stored:
                return tf.data.Dataset.from_tensor_slices(tuple(columns))
            # A window (batch) per element rather than a slot: per element, tf.data costs
            # tens of microseconds, a stored image's gather a fraction of that. The full
            # windows are rows of one reshape; the last, shorter one follows.
            full = self.epoch_size // self.window * self.window
            windows = tf.data.Dataset.from_tensor_slices(tuple(
                tf.reshape(column[:full], [-1, self.window]) for column in columns))
            if full < self.epoch_size:
                windows = windows.concatenate(tf.data.Dataset.from_tensors(tuple(
                    column[full:] for column in columns)))
            return windows

        return tf.data.Dataset.from_tensors(0).flat_map(_graph(epoch_slots))

    def epoch_arrays(self):
        # Only the columns the element function reads: every extra component is sliced,
        # copied and passed per element.
        epoch = self.sampler.epoch
        self.passes += 1
        self.pass_epochs[self.passes] = epoch
        mixed = self.planned(epoch)
        item = np.where(mixed.source == SYNTHETIC, mixed.index + self.offset, mixed.index)
        # A slot's place in the whole stream (its pass and its position in the epoch) rides
        # in its label column: one more column would cost every element a few percent.
        place = self.passes * self.epoch_size + np.arange(len(mixed), dtype=np.int64)
        stored = self.build_store is not None
        if stored:
            # A slot is its row in the store, -1 for a file the store could not decode: the
            # gather fails that batch, which is then read again as when streaming.
            row_of = np.arange(len(self.paths), dtype=np.int64)
            row_of[list(self.store().errors)] = -1
        # numpy_function wants exactly the declared dtypes.
        columns = [row_of[item] if stored else self.paths[item],
                   (place * self.num_classes + mixed.labels).astype(np.int64)]
        if self.weighted:
            columns.append(mixed.weights.astype(np.float32))
        if self.any_pil and not stored:
            columns.append(self.pil[item])
        if self.mixup:
            partner = np.where(mixed.partner >= 0, mixed.partner, 0)
            # Row 0 stands for "no partner": its pixels are not used, whatever they are.
            columns += ([np.where(mixed.partner >= 0, row_of[partner], 0)] if stored
                        else [self.paths[partner], self.pil[partner]])
            columns += [mixed.partner >= 0, mixed.lam.astype(np.float32)]
        return tuple(columns)

    def planned(self, epoch: int):
        """The sampler's plan of ``epoch``, its synthetic slots indexing the listed files."""
        mixed = self.sampler.mixed(epoch)
        if self.listed_rows is None:
            return mixed
        drawn = (mixed.source == SYNTHETIC) & (mixed.index >= 0)
        return replace(mixed, index=np.where(drawn, self.listed_rows[np.where(
            drawn, mixed.index, 0)], mixed.index))

    def adapt_synthetic(self, *, synthetic_ids=None, synthetic_cap=None) -> None:
        """Draw from the next pass on as :meth:`EpochSampler.adapt` says, mid-``fit``; the
        adapted pool must be among the synthetic files listed when the dataset was built."""
        self.sampler.adapt(synthetic_ids=synthetic_ids, synthetic_cap=synthetic_cap)
        pool = self.sampler.synthetic_pool
        row_of = {item: row for row, item in enumerate(self.listed.ids if self.listed else ())}
        outside = [item for item in (pool.ids if pool else ()) if item not in row_of]
        if outside:
            raise ConfigError(
                f"the tf.data loader reads the synthetic files it listed when it was built, and "
                f"the adapted pool holds {len(outside)} other(s) (synthetic_pool_cap redraws "
                "the pool from the selection); use BalancedBatchGenerator to adapt this pool")
        self.listed_rows = np.asarray([row_of[item] for item in (pool.ids if pool else ())],
                                      dtype=np.int64)

    # -- 1b. the image store ----------------------------------------------------------------
    def store(self):
        """Every file decoded once (built by the first pass). An in-memory store's pixels
        then live in a TensorFlow variable, which the batches gather from in the graph."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    store = self.build_store()
                    if self.pixels is not None:
                        self.pixels.assign(store.images)
                        # The variable holds the pixels now: the array would be a second copy.
                        store = replace(store, images=store.images[:0])
                    self._store = store
        return self._store

    def decode_into_store(self, images: np.ndarray, paths) -> dict[int, str]:
        """Decode every file with :meth:`decode` (the streaming path's ops), in parallel;
        ``{row: error}`` of the files TensorFlow could not decode."""
        shape = [self.height, self.width, self.channels]

        def row(index, path, use_pil):
            # ensure_shape: a file whose size changed since indexing fails alone.
            return index, tf.ensure_shape(self.decode(path, use_pil), shape)

        rows = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), self.paths, self.pil))
        rows = rows.map(_graph(row), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        decoded = np.zeros(len(paths), bool)
        with tqdm(total=len(paths), desc="decoding images once", unit="img",
                  disable=len(paths) < PROGRESS_FROM) as progress:
            for index, batch in rows.ignore_errors().batch(_STORE_BATCH):
                index = index.numpy()
                images[index] = batch.numpy()
                decoded[index] = True
                progress.update(len(index))
        return {int(row): "TensorFlow could not decode the file"
                for row in np.flatnonzero(~decoded)}

    # -- 3. decode --------------------------------------------------------------------------
    def gathered(self, rows, place_and_label, *rest):
        """One batch from the store: its rows gathered at once, mixed and laid out as
        :meth:`element` makes each image."""
        rest = list(rest)
        weight = rest.pop(0) if self.weighted else None
        images = self.gather(rows)
        if self.mixup:
            partner, has_partner, lam = rest
            lam = tf.reshape(lam, [-1, 1, 1, 1])
            mixed = lam * images + (1.0 - lam) * self.gather(partner)
            images = tf.where(tf.reshape(has_partner, [-1, 1, 1, 1]), mixed, images)
        if self.data_format == "channels_first":
            images = tf.transpose(images, (0, 3, 1, 2))
        return (images, place_and_label, *([weight] if self.weighted else []))

    def gather(self, rows):
        """The store's ``rows`` as float32; a row of -1 (a file the store could not decode)
        fails the batch (TensorFlow's gather refuses an index out of range on the CPU, where
        tf.data runs)."""
        if self.pixels is None:
            images = tf.numpy_function(self.store_rows, [rows], tf.float32, stateful=False)
            images.set_shape([None, self.height, self.width, self.channels])
            return images
        return tf.cast(tf.gather(self.pixels, rows), tf.float32)

    def store_rows(self, rows) -> np.ndarray:
        """:meth:`gather` from a memory-mapped store: only the batch's rows are paged in."""
        if (rows < 0).any():
            raise OSError("a file of this batch could not be decoded")
        return self.store().images[rows].astype(np.float32)

    def element(self, path, place_and_label, *rest):
        rest = list(rest)
        weight = rest.pop(0) if self.weighted else None
        use_pil = rest.pop(0) if self.any_pil else False
        image = self.decode(path, use_pil)
        if self.mixup:
            partner, partner_pil, has_partner, lam = rest
            image = tf.cond(has_partner,
                            lambda: lam * image + (1.0 - lam) * self.decode(partner, partner_pil),
                            lambda: image)
        if self.data_format == "channels_first":
            image = tf.transpose(image, (2, 0, 1))
        return (image, place_and_label, *([weight] if self.weighted else []))

    def decode(self, path, use_pil):
        """Decode and resize one file; ``use_pil`` is a bool tensor, or a Python bool."""
        if use_pil is True:
            image = self.pil_image(path)
        elif use_pil is False:
            image = self.native_image(path)
        else:
            # A tf.cond per element costs ~30-50 us on a 64x64 PNG (about 10% of the image's
            # CPU); only pay for it when some file in the set actually needs PIL.
            image = tf.cond(use_pil, lambda: self.pil_image(path),
                            lambda: self.native_image(path))
        image.set_shape([None, None, self.channels])
        if self.at_size:
            # Every file was indexed at the target size, where the resize returns the pixels
            # unchanged, at a tenth of a small image's cost. A file whose size changed since
            # fails the batch's shape check and is read again like a broken one.
            image.set_shape([self.height, self.width, self.channels])
            return tf.cast(image, tf.float32)
        if self.crop or self.pad:
            image = _fit_aspect(image, self.height, self.width, crop=self.crop)
        image = tf.cast(tf.image.resize(image, (self.height, self.width),
                                        method=self.interpolation), tf.float32)
        image.set_shape([self.height, self.width, self.channels])
        return image

    def native_image(self, path):
        return tf.image.decode_image(tf.io.read_file(path), channels=self.channels,
                                     expand_animations=False)

    def pil_image(self, path):
        return tf.numpy_function(
            lambda p: load_image(p.decode(), image_size=None, color_mode=self.color_mode),
            [path], tf.uint8, stateful=False)

    # -- 5. augment -------------------------------------------------------------------------
    def augmented(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        augment = self.augment
        # One batch at a time: a seeded layer's random state then advances in batch order,
        # so the same seed gives the same augmented batches (parallel calls would race on it).
        return dataset.map(lambda x, *rest: (augment(x, training=True), *rest))

    # -- 6. read again ----------------------------------------------------------------------
    def read_again(self) -> tf.data.Dataset:
        """The windows of this pass that TensorFlow could not decode, read again.

        A batch with a slot TensorFlow cannot decode fails as a whole and is dropped
        (``ignore_errors`` after the fused map-and-batch, so the normal path stays as it
        was). When the consumer has taken the pass's other batches, every window no batch
        delivered is read again in Python: each slot's own file through PIL when PIL can read
        it, else a stand-in of its class from the :class:`SlotReader` (the ``PyDataset``'s
        fallback chain). Every batch keeps its classes and the epoch its length; only the
        repaired batches come later, and PIL resizes them (with antialiasing, unlike
        TensorFlow).
        """
        def windows(_):
            columns = tf.numpy_function(
                self.stand_in_windows, [],
                [tf.float32, tf.int64, *([tf.float32] if self.weighted else [])])
            shape = ([self.channels, self.height, self.width] if self.data_format ==
                     "channels_first" else [self.height, self.width, self.channels])
            columns[0].set_shape([None, *shape])
            for column in columns[1:]:
                column.set_shape([None])
            return tf.data.Dataset.from_tensor_slices(tuple(columns))

        dataset = tf.data.Dataset.from_tensors(0).flat_map(_graph(windows)).batch(self.window)
        return self.augmented(dataset) if self.augment is not None and self.batch_size \
            else dataset

    def stand_in_windows(self):
        """Every slot of the windows of this pass that no batch delivered: its pixels (own
        file or a stand-in of its class), its place and label, its weight."""
        mixed = self.planned(self.pass_epochs[self.passes])
        missing = np.flatnonzero(self.delivered.numpy() != self.passes)
        slots = np.concatenate([np.arange(w * self.window, min((w + 1) * self.window,
                                                                 self.epoch_size))
                                for w in missing]) if len(missing) else np.zeros(0, np.int64)
        images = np.zeros((len(slots), self.height, self.width, self.channels), np.float32)
        for row, slot in enumerate(slots):
            path, partner = self.reader.locate(mixed, int(slot))
            images[row] = self.pil_image_at_size(path)
            if partner is not None:
                lam = float(mixed.lam[slot])
                images[row] = lam * images[row] + (1.0 - lam) * self.pil_image_at_size(partner)
        if self.data_format == "channels_first":
            images = images.transpose(0, 3, 1, 2)
        places = self.passes * self.epoch_size + slots
        columns = [images, (places * self.num_classes + mixed.labels[slots]).astype(np.int64)]
        if self.weighted:
            columns.append(mixed.weights[slots].astype(np.float32))
        return tuple(columns)

    def pil_image_at_size(self, path: str) -> np.ndarray:
        image = load_image(path, image_size=None, color_mode=self.color_mode)
        if self.crop or self.pad:
            image = _fit_aspect_array(image, self.height, self.width, crop=self.crop)
        return resize_array(image, (self.height, self.width), self.interpolation)

    # -- 7. deliver -------------------------------------------------------------------------
    def deliver(self, images, place_and_label, *weight):
        """A batch reaching the consumer: its labels; the pass's last slot moves the
        sampler on."""
        labels = tf.cast(place_and_label % self.num_classes, tf.int32)
        places = None
        if not self.batch_size or self.sampler.categorical:
            places = place_and_label // self.num_classes
        # The window's pass goes to a variable, from the batch's first slot alone (a batch is
        # one window); Python is called only after a pass's last window: a call per batch
        # would cost each batch more than gathering it.
        first = place_and_label[0] // self.num_classes
        window, pass_id = (first % self.epoch_size) // self.window, first // self.epoch_size
        marked = self.delivered.scatter_nd_update([[window]], [pass_id])
        moved = (self.move_on_after(tf.equal(window, self.windows - 1), pass_id)
                 if self.batch_size else tf.constant(0, tf.int64))
        with tf.control_dependencies([marked, moved]):
            images = tf.identity(images)
        out = ((images, *self.format_labels(labels, places), *weight) if self.label_mode
               else (images,))
        if not self.batch_size:
            return (*out, places)  # counted image by image, after unbatching
        return out if len(out) > 1 else out[0]

    def deliver_single_image(self, image, *rest):
        with tf.control_dependencies([self.count_pass(rest[-1][None])]):
            out = tuple(tf.identity(column) for column in (image, *rest[:-1]))
        return out if len(out) > 1 else out[0]

    def format_labels(self, labels, places=None) -> tuple:
        if self.sampler.categorical:  # synthetic label smoothing: the sampler's soft rows
            targets = tf.numpy_function(self.targets, [places], tf.float32)
            targets.set_shape([None, self.num_classes])
            return (targets,)
        if self.label_mode == "categorical":
            return (tf.one_hot(labels, self.num_classes),)
        if self.label_mode == "binary":
            return (tf.cast(tf.expand_dims(labels, -1), tf.float32),)
        return (labels,)

    def targets(self, places) -> np.ndarray:
        """The sampler's targets of the slots at ``places`` (one pass: one batch's places)."""
        mixed = self.sampler.mixed(self.pass_epochs[int(places[0]) // self.epoch_size])
        return self.sampler.targets(mixed, places % self.epoch_size)

    def count_pass(self, places):
        last = tf.reduce_any(tf.equal(places % self.epoch_size, self.epoch_size - 1))
        return self.move_on_after(last, tf.reduce_max(places) // self.epoch_size)

    def move_on_after(self, last, pass_id):
        """Call :meth:`pass_done` for ``pass_id`` when ``last`` (the pass's last slot is
        here): the only call into Python as batches are delivered."""
        return tf.cond(last, lambda: tf.numpy_function(self.pass_done, [pass_id], tf.int64),
                       lambda: tf.constant(0, tf.int64))

    def pass_done(self, pass_id) -> np.int64:
        """Pass ``pass_id`` delivered its last slot: move on to the next epoch, unless
        something else moved the sampler in the meantime (a ramp callback sets the epoch
        itself)."""
        epoch = self.pass_epochs.get(int(pass_id))
        if epoch is not None and self.sampler.epoch == epoch:
            self.sampler.set_epoch(epoch + 1)
        return np.int64(0)

    def describe(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        sampler = self.sampler
        dataset.class_names = list(sampler.class_names)
        dataset.file_paths = list(sampler.real.paths)
        dataset.sampler = sampler
        dataset.image_size, dataset.color_mode = (self.height, self.width), self.color_mode
        dataset.adapt_synthetic = self.adapt_synthetic
        dataset.decode_failures = self.reader.decode_failures
        dataset._pipeline = self  # for tests: the store and the gather
        # warn when fit(class_weight=...) corrects a balanced loader a second time
        return watch_class_weight_map(dataset, sampler)


def _graph(function):
    """``function`` traced as it is written: it has no Python control flow on tensors, and
    AutoGraph's conversion would cost every construction of the dataset about 0.1 s."""
    return tf.autograph.experimental.do_not_convert(function)


def _file_sizes(source):
    """(width, height) of every file of ``source``: from its index, else from the files'
    headers (None where a header does not tell)."""
    if source.sizes is not None:
        return source.sizes
    return [found[1] if found else None for found in map(read_header, source.paths)]


def _fit_aspect(image, height, width, *, crop: bool):
    """Central crop (or pad) to the target aspect ratio before resizing, as Keras does."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    target = width / height
    if crop:
        new_h = tf.minimum(h, w / target)
        new_w = tf.minimum(w, h * target)
        top = tf.cast((h - new_h) / 2, tf.int32)
        left = tf.cast((w - new_w) / 2, tf.int32)
        return image[top: top + tf.cast(new_h, tf.int32), left: left + tf.cast(new_w, tf.int32)]
    new_h = tf.maximum(h, w / target)
    new_w = tf.maximum(w, h * target)
    return tf.image.pad_to_bounding_box(
        image, tf.cast((new_h - h) / 2, tf.int32), tf.cast((new_w - w) / 2, tf.int32),
        tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32))


def _fit_aspect_array(image: np.ndarray, height: int, width: int, *, crop: bool):
    """:func:`_fit_aspect` on an (H, W, C) array, for images PIL decodes."""
    h, w = image.shape[:2]
    target = width / height
    if crop:
        new_h, new_w = int(min(h, w / target)), int(min(w, h * target))
        top, left = int((h - new_h) / 2), int((w - new_w) / 2)
        return image[top: top + new_h, left: left + new_w]
    new_h, new_w = int(max(h, w / target)), int(max(w, h * target))
    out = np.zeros((new_h, new_w, image.shape[2]), image.dtype)
    top, left = int((new_h - h) / 2), int((new_w - w) / 2)
    out[top: top + h, left: left + w] = image
    return out


def image_dataset_from_directory(
    directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
    batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
    subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False, data_format=None, verbose=True, *, balance="oversample",
    epoch_size=None, class_weight=None, sample_weights=None, synthetic_cache=None,
    synthetic_ratio=None, synthetic_cap=DEFAULT_CAP, synthetic_pool_cap=None,
    synthetic_classes=None, synthetic_weight=1.0, synthetic_fill_to=None,
    synthetic_label_smoothing=0.0, mixup=False, synthetic=None, schedule=None,
    exclude_source_ids=(), synthetic_ids=None, augment=None, cache="auto",
):
    """Drop-in for ``keras.utils.image_dataset_from_directory`` that balances the classes.

    Keras's arguments keep their names and defaults. The split made by ``validation_split`` is
    stratified per class (every class with two or more images is represented on both sides)
    and is the same for ``subset="training"`` and ``"validation"`` given the same ``seed``.
    Only the training subset is balanced and receives synthetic images; the validation subset
    is every real validation image once, and synthetic images derived from a validation image
    are excluded from training automatically.

    ``directory`` may also be a CSV manifest ``path,label[,split]`` (or a ``DatasetIndex``):
    its ``test`` rows are never loaded, its ``validation`` rows are the validation subset
    (``subset`` then needs no ``validation_split``; one given is ignored with a warning), and
    synthetic images derived from either are excluded from training.

    Additional parameters
    ---------------------
    balance : {"none", "oversample", "balanced_batches"}, default "oversample"
        How an epoch draws the classes (:class:`~genaug.sampling.Balance`). The default keeps
        what the Keras loader it replaces gives, a shuffled stream of images, with every class
        drawn to its target; ``"balanced_batches"`` (the default of
        :class:`~genaug.BalancedBatchGenerator`, named for it) also holds each class equal in
        every batch.
    epoch_size, class_weight, sample_weights, synthetic_cache, synthetic_ratio, synthetic_cap,
    synthetic_pool_cap, synthetic_classes, synthetic_weight, synthetic_fill_to,
    synthetic_label_smoothing, mixup, synthetic, schedule, exclude_source_ids, synthetic_ids,
    augment
        As for :class:`~genaug.BalancedBatchGenerator`: the synthetic settings flat, or as one
        :class:`~genaug.sampling.SyntheticRecipe` in ``synthetic``.
    cache : "auto", "memory", path-like or None, default "auto"
        Decode every file once into an image store (in memory, or memory-mapped in a store
        directory) and gather batches from it; ``"auto"`` does so in memory when the decoded
        images fit :func:`~genaug.data.memory_budget`, else streams. None streams, decoding
        every image in every epoch. Batches are the same either way.

    Returns
    -------
    tf.data.Dataset, or a (training, validation) pair for ``subset="both"``
        With ``class_names``, ``file_paths``, ``sampler``, ``skipped`` (files left out while
        indexing, and why) and ``decode_failures`` attributes.
    """
    if labels not in ("inferred", None):
        raise ConfigError("explicit label lists are not supported; use a CSV manifest "
                          "(path,label) instead")
    if labels is None:
        label_mode = None
        balance = "none"
    if subset not in (None, "training", "validation", "both"):
        raise ConfigError(f"subset must be 'training', 'validation' or 'both', got {subset!r}")
    if validation_split is not None and subset is None:
        raise ConfigError("validation_split and subset must be given together")
    options = SamplingOptions.from_arguments(locals())
    data = adapt_data(directory, class_names=class_names, validation_split=validation_split,
                      seed=seed)
    if subset is not None and data.validation is None:
        raise ConfigError("validation_split and subset must be given together")
    if data.splits.validation_source.startswith("stratified") and shuffle and seed is None:
        raise ConfigError("using validation_split with shuffling needs a seed, so both subsets "
                          "see the same split")
    if verbose:
        print(data.found_message())
    decoding = dict(image_size=image_size, color_mode=color_mode, interpolation=interpolation,
                    label_mode=label_mode, crop_to_aspect_ratio=crop_to_aspect_ratio,
                    pad_to_aspect_ratio=pad_to_aspect_ratio, data_format=data_format,
                    cache=cache)

    def build(training: bool):
        if training:
            sampler = build_sampler(data.training, options, synthetic_cache=synthetic_cache,
                                    held_out_ids=data.held_out_ids)
        else:
            sampler = build_sampler(data.validation, options.evaluation())
        if verbose and subset is not None:
            print(f"Using {len(sampler.real)} files for "
                  f"{'training' if training else 'validation'}.")
        dataset = make_tf_dataset(sampler, augment=augment if training else None, **decoding)
        dataset.skipped = data.skipped
        return dataset

    if subset == "both":
        return build(True), build(False)
    return build(subset != "validation")
