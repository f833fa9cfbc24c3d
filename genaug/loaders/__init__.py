"""Loaders: a Keras ``PyDataset`` (no TensorFlow) and a ``tf.data`` pipeline, fed by one sampler.

The path of every option: the loader's flat keyword arguments become one
:class:`SamplingOptions`; :func:`adapt_data` normalises the data argument;
:func:`build_sampler` makes the :class:`EpochSampler` (balance plan + mixer + weights); the
loader decodes what the sampler plans, through one :class:`SlotReader` fallback chain.
:func:`build_loaders` makes a run's training, validation and test loaders from its splits;
:class:`AdaptAfterWarmup` adapts the synthetic pool mid-fit; :func:`write_training_status`
writes the run's ``status.json``, the accounting ``genaug train`` writes.
``image_dataset_from_directory`` and ``make_tf_dataset`` import TensorFlow on first use only.
"""

from genaug.loaders._adapt import AdaptAfterWarmup, select_synthetic
from genaug.loaders._augment import AUGMENTATIONS, BatchAugment, apply_augment, build_augmentation
from genaug.loaders._build import LOADERS, Loaders, build_loaders, choose_loader
from genaug.loaders._data import LoaderData, adapt_data
from genaug.loaders._options import SamplingOptions
from genaug.loaders._pydataset import BalancedBatchGenerator
from genaug.loaders._sampler import EpochSampler, TrainingComposition, build_sampler
from genaug.loaders._slots import SlotReader
from genaug.loaders._training_status import training_status, write_training_status


def __getattr__(name):
    if name in ("image_dataset_from_directory", "make_tf_dataset"):
        from genaug.loaders import _tfdata

        return getattr(_tfdata, name)
    raise AttributeError(f"module 'genaug.loaders' has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS",
    "AdaptAfterWarmup",
    "LOADERS",
    "BalancedBatchGenerator",
    "BatchAugment",
    "EpochSampler",
    "LoaderData",
    "Loaders",
    "SamplingOptions",
    "SlotReader",
    "TrainingComposition",
    "adapt_data",
    "apply_augment",
    "build_augmentation",
    "build_loaders",
    "build_sampler",
    "choose_loader",
    "image_dataset_from_directory",
    "make_tf_dataset",
    "select_synthetic",
    "training_status",
    "write_training_status",
]
