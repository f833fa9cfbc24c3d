"""genaug: balanced training and measured synthetic augmentation for imbalanced image sets.

Names are imported on first use (PEP 562), so ``import genaug`` and the CLI start fast and
only what is used is loaded. ``BalancedBatchGenerator`` and everything it uses never import
TensorFlow; ``image_dataset_from_directory`` does.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "BalancePlan": "genaug.balance",
    "compute_class_weights": "genaug.balance",
    "DatasetIndex": "genaug.data",
    "DatasetSplits": "genaug.data",
    "split_dataset": "genaug.data",
    "load_image": "genaug.data",
    "analyze_dataset": "genaug.data._analyze",
    "verify_class_balance": "genaug.data._analyze",
    "BalancedBatchGenerator": "genaug.loaders",
    "EpochSampler": "genaug.loaders",
    "SamplingOptions": "genaug.loaders",
    "build_augmentation": "genaug.loaders",
    "image_dataset_from_directory": "genaug.loaders._tfdata",
    "CacheSource": "genaug.sources",
    "RealSource": "genaug.sources",
    "CacheWriter": "genaug.synthetic",
    "RampSchedule": "genaug.synthetic",
    "SyntheticCache": "genaug.synthetic",
    "SyntheticMixer": "genaug.synthetic",
    "LiveSource": "genaug.live",
}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'genaug' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
