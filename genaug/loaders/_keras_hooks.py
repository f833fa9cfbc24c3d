"""Every place genaug reaches into Keras beyond its public API, in one module.

Keras has no public way for a dataset to learn ``model.fit(class_weight=...)``, nor to set
the state of a random layer's seed generator. What the hooks rely on (``KERAS_HOOKS``; the
test ``tests/loaders/test_keras_hooks.py`` checks each name on the Keras version that
``constraints.txt`` pins, so an upgrade that removes one fails there, not in a user's fit):

- ``PyDatasetAdapter.__init__(..., class_weight=...)`` keeps the weights as
  ``self.class_weight`` and calls the dataset's ``on_epoch_begin`` from its own frames;
- ``TFDatasetAdapter.__init__(dataset, class_weight=...)`` applies them with ``dataset.map``
  before the first step;
- ``keras.random.SeedGenerator.state``: the variable ``[seed, counter]`` each draw advances.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from genaug.exceptions import ConfigError, DoubleCorrectionWarning
from genaug.sampling import Balance

#: The private Keras names the hooks rely on: module -> attribute -> what must hold.
KERAS_HOOKS = {
    "keras.src.trainers.data_adapters.py_dataset_adapter": {
        "PyDatasetAdapter": "__init__ takes class_weight and keeps it as self.class_weight",
    },
    "keras.src.trainers.data_adapters.tf_dataset_adapter": {
        "TFDatasetAdapter": "__init__ takes class_weight and applies it with dataset.map",
    },
    "keras.random": {
        "SeedGenerator": "has a state variable [seed, counter] that each draw advances",
    },
}

#: How many frames above a loader's hook the Keras adapter may sit.
ADAPTER_FRAMES = 4


def check_fit_class_weight(sampler) -> None:
    """Check ``model.fit(class_weight=...)`` against the loader's classes, and warn (once)
    when it reweights a loader that already balances.

    The loaders call this from the hooks Keras runs in its data adapters
    (``on_epoch_begin``, ``Dataset.map``; see :func:`watch_class_weight_map`), before the
    first step, and it looks at the caller's frames for the adapter's ``class_weight``.
    Class weights applied any other way are not seen.

    Raises
    ------
    ConfigError
        When the weights miss one of the loader's classes or name a class it does not have
        (Keras itself would fail deep in its adapter, or weigh the missing classes 0).
    """
    weights = _adapter_class_weight(sys._getframe(1))
    if weights is None:
        return
    names = sampler.class_names
    unknown = sorted(str(key) for key in weights
                     if not isinstance(key, (int, np.integer)) or not 0 <= key < len(names))
    missing = [f"{c} ({names[c]})" for c in range(len(names)) if c not in weights]
    if unknown or missing:
        raise ConfigError(
            "model.fit(class_weight=...) must give one weight per class index 0.."
            f"{len(names) - 1}: " + "; ".join(
                part for part in (f"missing {', '.join(missing)}" if missing else "",
                                  f"unknown {', '.join(unknown)}" if unknown else "") if part))
    if sampler.plan.mode == Balance.NONE or sampler._warned_fit_weights:
        return
    sampler._warned_fit_weights = True
    warnings.warn(
        f"model.fit(class_weight=...) on a loader that already balances the classes "
        f"(balance={sampler.plan.mode.value!r}) corrects the imbalance twice; give the "
        "loader class_weight='balanced' instead (it weighs the distribution the "
        "loader delivers) or use balance='none'", DoubleCorrectionWarning,
        stacklevel=2)


def _adapter_class_weight(frame):
    """The ``class_weight`` of the Keras data adapter among the :data:`ADAPTER_FRAMES`
    callers of ``frame``, or None."""
    for _ in range(ADAPTER_FRAMES):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if not type(owner).__module__.startswith("keras."):
            continue
        weights = frame.f_locals.get("class_weight", getattr(owner, "class_weight", None))
        if weights is not None:
            return weights
    return None


def watch_class_weight_map(dataset, sampler):
    """``dataset`` with its ``map`` checking ``fit(class_weight=...)`` first: Keras applies
    the weights by mapping them onto a ``tf.data`` dataset."""
    keras_map = dataset.map

    def map_and_check(*args, **kwargs):
        check_fit_class_weight(sampler)
        return keras_map(*args, **kwargs)

    dataset.map = map_and_check
    return dataset


def seed_generators(layer) -> list:
    """Every :class:`keras.random.SeedGenerator` a layer (and its sub-layers) holds, in a
    fixed order."""
    import keras

    found, seen = [], set()

    def visit(item):
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, keras.random.SeedGenerator):
            found.append(item)
        elif isinstance(item, keras.layers.Layer):
            for value in vars(item).values():
                visit(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)
        elif isinstance(item, dict):
            for value in item.values():
                visit(value)

    visit(layer)
    return found


def seed_of(generator) -> int:
    """The seed part of a seed generator's state (what makes ``seed=1`` and ``seed=2``
    differ)."""
    import keras

    return abs(int(keras.ops.convert_to_numpy(generator.state.value)[0]))


def set_seed(generator, seed: int) -> None:
    """Restart a seed generator's stream at ``seed`` (its counter back to 0)."""
    import keras

    generator.state.assign(keras.ops.convert_to_tensor([int(seed), 0],
                                                       dtype=generator.state.dtype))
