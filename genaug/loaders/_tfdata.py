"""The ``tf.data`` loader: the sampler's plan, decoded in parallel by TensorFlow ops.

Each pass over the dataset asks the sampler for one epoch's plan (a few arrays), so balancing
and mixing cost nothing per image; decoding runs with ``AUTOTUNE`` parallelism in a fixed order,
which keeps every balanced batch intact and the whole stream deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from genaug.data import DatasetIndex, check_color_mode, load_image
from genaug.exceptions import ConfigError
from genaug.loaders._sampler import EpochSampler
from genaug.sources import CacheSource, RealSource
from genaug.synthetic._mixer import SYNTHETIC

# What TensorFlow's decoders turn into the same pixels as PIL; anything else goes via PIL.
_NATIVE_MODES = {"L", "RGB", "RGBA"}
_NATIVE_FORMATS = {"PNG", "JPEG", "GIF"}
_NATIVE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif"}
LABEL_MODES = ("int", "categorical", "binary", None)


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
                    sample_weights: bool = False, batch_size: int | None = None,
                    crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
                    data_format: str | None = None, augment=None) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` that yields the sampler's epochs, one per iteration.

    Yields ``(images, labels)`` or ``(images, labels, sample_weights)``; images are float32 in
    [0, 255] like Keras's loaders. ``batch_size=None`` yields single images (still in the
    balanced order). The returned dataset carries ``class_names``, ``file_paths`` and
    ``sampler`` attributes; ``sampler.set_epoch`` is what the ramp callback moves.
    """
    channels = check_color_mode(color_mode)
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    num_classes = len(sampler.class_names)
    if label_mode == "binary" and num_classes != 2:
        raise ConfigError(f"label_mode='binary' needs exactly 2 classes, found {num_classes}")
    real = sampler.real
    if real.paths is None:
        raise ConfigError("the tf.data loader reads files; use BalancedBatchGenerator for arrays")
    synthetic = sampler.synthetic
    paths = np.asarray(list(real.paths) + list(synthetic.paths if synthetic else ()), dtype=object)
    pil = np.concatenate([_needs_pil(real),
                          _needs_pil(synthetic) if synthetic else np.zeros(0, bool)])
    offset = len(real.paths)
    height, width = (int(v) for v in image_size)

    any_pil = bool(pil.any())
    # Mixup partners exist only when the mixer was asked for mixup.
    mixup = sampler.mixer is not None and sampler.mixer.mixup

    def epoch_arrays():
        # Only the columns the element function reads: every extra component is sliced,
        # copied and passed per element.
        epoch = sampler.epoch
        sampler.set_epoch(epoch + 1)  # a Keras callback may set it back explicitly
        mixed = sampler.mixed(epoch)
        item = np.where(mixed.source == SYNTHETIC, mixed.index + offset, mixed.index)
        columns = [paths[item].astype(bytes), mixed.labels.astype(np.int32)]
        if sample_weights:
            columns.append(mixed.weights)
        if any_pil:
            columns.append(pil[item])
        if mixup:
            partner = np.where(mixed.partner >= 0, mixed.partner, 0)
            columns += [paths[partner].astype(bytes), pil[partner], mixed.partner >= 0,
                        mixed.lam]
        yield tuple(columns)

    string, boolean = tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.bool)
    signature = [string, tf.TensorSpec([None], tf.int32)]
    if sample_weights:
        signature.append(tf.TensorSpec([None], tf.float32))
    if any_pil:
        signature.append(boolean)
    if mixup:
        signature += [string, boolean, boolean, tf.TensorSpec([None], tf.float32)]
    plans = tf.data.Dataset.from_generator(epoch_arrays, output_signature=tuple(signature))

    def pil_decode(path):
        return load_image(path.decode(), image_size=None, color_mode=color_mode)

    def native_decode(path):
        return tf.image.decode_image(tf.io.read_file(path), channels=channels,
                                     expand_animations=False)

    def decode(path, use_pil):
        # A tf.cond per element costs ~30-50 us on a 64x64 PNG (about 10% of the image's
        # CPU); only pay for it when some file in the set actually needs PIL.
        if any_pil:
            image = tf.cond(
                use_pil,
                lambda: tf.numpy_function(pil_decode, [path], tf.uint8, stateful=False),
                lambda: native_decode(path),
            )
        else:
            image = native_decode(path)
        image.set_shape([None, None, channels])
        if crop_to_aspect_ratio or pad_to_aspect_ratio:
            image = _fit_aspect(image, height, width, crop=crop_to_aspect_ratio)
        image = tf.cast(tf.image.resize(image, (height, width), method=interpolation), tf.float32)
        image.set_shape([height, width, channels])
        return image

    def element(path, label, *rest):
        rest = list(rest)
        weight = rest.pop(0) if sample_weights else None
        use_pil = rest.pop(0) if any_pil else None
        image = decode(path, use_pil)
        if mixup:
            partner, partner_pil, has_partner, lam = rest
            image = tf.cond(has_partner,
                            lambda: lam * image + (1.0 - lam) * decode(partner, partner_pil),
                            lambda: image)
        if data_format == "channels_first":
            image = tf.transpose(image, (2, 0, 1))
        if label_mode is None:
            return image
        if label_mode == "categorical":
            label = tf.one_hot(label, num_classes)
        elif label_mode == "binary":
            label = tf.cast(tf.expand_dims(label, -1), tf.float32)
        return (image, label, weight) if sample_weights else (image, label)

    dataset = plans.unbatch().map(element, num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True)
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
        steps = len(sampler)
        if augment is not None:
            dataset = dataset.map(lambda x, *rest: (augment(x, training=True), *rest),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        steps = sampler.plan.epoch_size
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.class_names = list(sampler.class_names)
    dataset.file_paths = list(real.paths)
    dataset.sampler = sampler
    return dataset


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


def image_dataset_from_directory(
    directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
    batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
    subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False, data_format=None, verbose=True, *, balance="oversample",
    epoch_size=None, class_weight=None, sample_weights=None, synthetic_cache=None,
    synthetic_ratio=None, synthetic_cap=0.6, synthetic_classes=None, synthetic_weight=1.0,
    mixup=False, schedule=None, exclude_source_ids=(), augment=None,
):
    """Drop-in for ``keras.utils.image_dataset_from_directory`` that balances the classes.

    Keras's arguments keep their names and defaults. The split made by ``validation_split`` is
    stratified per class (every class with two or more images is represented on both sides)
    and is the same for ``subset="training"`` and ``"validation"`` given the same ``seed``.
    Only the training subset is balanced and receives synthetic images; the validation subset
    is every real validation image once, and synthetic images derived from a validation image
    are excluded from training automatically.

    Additional parameters
    ---------------------
    balance : {"none", "oversample", "balanced_batches"}, default "oversample"
    epoch_size, class_weight, sample_weights, synthetic_cache, synthetic_ratio, synthetic_cap,
    synthetic_classes, synthetic_weight, mixup, schedule, exclude_source_ids, augment
        As for :class:`~genaug.BalancedBatchGenerator`. ``directory`` may also be a CSV manifest.

    Returns
    -------
    tf.data.Dataset, or a (training, validation) pair for ``subset="both"``
        With ``class_names``, ``file_paths`` and ``sampler`` attributes.
    """
    if labels not in ("inferred", None):
        raise ConfigError("explicit label lists are not supported; use a CSV manifest "
                          "(path,label) instead")
    if labels is None:
        label_mode = None
        balance = "none"
    if subset not in (None, "training", "validation", "both"):
        raise ConfigError(f"subset must be 'training', 'validation' or 'both', got {subset!r}")
    if (validation_split is None) != (subset is None):
        raise ConfigError("validation_split and subset must be given together")
    if validation_split and shuffle and seed is None:
        raise ConfigError("using validation_split with shuffling needs a seed, so both subsets "
                          "see the same split")
    index = DatasetIndex.load(directory, class_names=class_names)
    if len(index) == 0:
        raise ConfigError(f"no images found in {directory}")
    train_idx, val_idx = np.arange(len(index)), np.arange(0)
    if validation_split:
        train_idx, val_idx = index.stratified_split(validation_split, seed=seed)
    options = dict(image_size=image_size, color_mode=color_mode, interpolation=interpolation,
                   label_mode=label_mode, batch_size=batch_size,
                   crop_to_aspect_ratio=crop_to_aspect_ratio,
                   pad_to_aspect_ratio=pad_to_aspect_ratio, data_format=data_format)

    def build(indices, training: bool):
        part = index.subset(indices)
        real = RealSource(part)
        synthetic = None
        if training and synthetic_cache is not None:
            held = index.subset(val_idx)
            synthetic = CacheSource(synthetic_cache, class_names=index.class_names,
                                    exclude_source_ids={*exclude_source_ids, *held.ids,
                                                        *held.paths})
        weighted = sample_weights
        if weighted is None:
            weighted = training and (class_weight is not None
                                     or (synthetic is not None and synthetic_weight != 1.0))
        sampler = EpochSampler(
            real, class_names=index.class_names, balance=balance if training else "none",
            batch_size=batch_size or 1, epoch_size=epoch_size if training else None,
            shuffle=shuffle, seed=seed, class_weight=class_weight if training else None,
            synthetic=synthetic, synthetic_ratio=synthetic_ratio, synthetic_cap=synthetic_cap,
            synthetic_classes=synthetic_classes, synthetic_weight=synthetic_weight,
            mixup=mixup, schedule=schedule)
        if verbose:
            print(f"Found {len(part)} files belonging to {index.num_classes} classes."
                  + (f" Using them for {'training' if training else 'validation'}."
                     if validation_split else ""))
        return make_tf_dataset(sampler, sample_weights=bool(weighted),
                               augment=augment if training else None, **options)

    if subset == "both":
        return build(train_idx, True), build(val_idx, False)
    if subset == "validation":
        return build(val_idx, False)
    return build(train_idx, True)
