"""genaug: balanced training and measured synthetic augmentation for imbalanced image sets.

The core (``BalancedBatchGenerator`` and everything it uses) never imports TensorFlow;
``image_dataset_from_directory`` does, on first use.
"""

from genaug.balance import BalancePlan, compute_class_weights
from genaug.data import DatasetIndex, load_image
from genaug.data._analyze import analyze_dataset, verify_class_balance
from genaug.loaders import BalancedBatchGenerator, EpochSampler
from genaug.sources import CacheSource, RealSource
from genaug.synthetic import CacheWriter, RampSchedule, SyntheticCache, SyntheticMixer

__version__ = "0.1.0"


def __getattr__(name):
    if name == "image_dataset_from_directory":
        from genaug.loaders._tfdata import image_dataset_from_directory

        return image_dataset_from_directory
    raise AttributeError(f"module 'genaug' has no attribute {name!r}")


__all__ = [
    "BalancePlan",
    "BalancedBatchGenerator",
    "CacheSource",
    "CacheWriter",
    "DatasetIndex",
    "EpochSampler",
    "RampSchedule",
    "RealSource",
    "SyntheticCache",
    "SyntheticMixer",
    "analyze_dataset",
    "compute_class_weights",
    "image_dataset_from_directory",
    "load_image",
    "verify_class_balance",
]
