"""genaug: balanced training and measured synthetic augmentation for imbalanced image sets.

What a ``model.fit`` user needs is here: the two loaders (``image_dataset_from_directory``,
a ``tf.data`` drop-in, and ``BalancedBatchGenerator``, a Keras ``PyDataset``), class weights,
the synthetic cache and its ramp schedule, the live source, the dataset index and analysis,
and the exceptions. Names are imported on first use (PEP 562), so ``import genaug`` and the
CLI start fast and only what is used is loaded. ``BalancedBatchGenerator`` and everything it
uses never import TensorFlow; ``image_dataset_from_directory`` does.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BalancePlan": "genaug.sampling",
    "compute_class_weights": "genaug.sampling",
    "DatasetIndex": "genaug.data",
    "DatasetSplits": "genaug.data",
    "analyze_dataset": "genaug.data",
    "split_dataset": "genaug.data",
    "load_image": "genaug.data",
    "verify_class_balance": "genaug.data",
    "BalancedBatchGenerator": "genaug.loaders",
    "EpochSampler": "genaug.loaders",
    "SamplingOptions": "genaug.loaders",
    "build_augmentation": "genaug.loaders",
    "image_dataset_from_directory": "genaug.loaders",
    "CacheSource": "genaug.sources",
    "RealSource": "genaug.sources",
    "CacheWriter": "genaug.cache",
    "RampSchedule": "genaug.sampling",
    "SyntheticCache": "genaug.cache",
    "SyntheticMixer": "genaug.sampling",
    "SyntheticRecipe": "genaug.sampling",
    "LiveSource": "genaug.live",
    "GenaugError": "genaug.exceptions",
    "CacheError": "genaug.exceptions",
    "ConfigError": "genaug.exceptions",
    "DatasetError": "genaug.exceptions",
    "OutputError": "genaug.exceptions",
    "GenaugWarning": "genaug.exceptions",
    "ConvergenceWarning": "genaug.exceptions",
    "DoubleCorrectionWarning": "genaug.exceptions",
}

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time the names load lazily
    # ruff cannot see that __all__ (built from _EXPORTS) lists these names.
    from genaug.cache import CacheWriter, SyntheticCache  # noqa: F401
    from genaug.data import (  # noqa: F401
        DatasetIndex,
        DatasetSplits,
        analyze_dataset,
        load_image,
        split_dataset,
        verify_class_balance,
    )
    from genaug.exceptions import (  # noqa: F401
        CacheError,
        ConfigError,
        ConvergenceWarning,
        DatasetError,
        DoubleCorrectionWarning,
        GenaugError,
        GenaugWarning,
        OutputError,
    )
    from genaug.live import LiveSource  # noqa: F401
    from genaug.loaders import (  # noqa: F401
        BalancedBatchGenerator,
        EpochSampler,
        SamplingOptions,
        build_augmentation,
        image_dataset_from_directory,
    )
    from genaug.sampling import (  # noqa: F401
        BalancePlan,
        RampSchedule,
        SyntheticMixer,
        SyntheticRecipe,
        compute_class_weights,
    )
    from genaug.sources import CacheSource, RealSource  # noqa: F401


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'genaug' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
