"""Loaders: a Keras ``PyDataset`` (no TensorFlow) and a ``tf.data`` pipeline, fed by one sampler.

``image_dataset_from_directory`` and ``make_tf_dataset`` import TensorFlow on first use only.
"""

from genaug.loaders._augment import AUGMENTATIONS, build_augmentation
from genaug.loaders._pydataset import BalancedBatchGenerator, apply_augment
from genaug.loaders._sampler import EpochSampler


def __getattr__(name):
    if name in ("image_dataset_from_directory", "make_tf_dataset"):
        from genaug.loaders import _tfdata

        return getattr(_tfdata, name)
    raise AttributeError(f"module 'genaug.loaders' has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS",
    "BalancedBatchGenerator",
    "EpochSampler",
    "apply_augment",
    "build_augmentation",
    "image_dataset_from_directory",
    "make_tf_dataset",
]
