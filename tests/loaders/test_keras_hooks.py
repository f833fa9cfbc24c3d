"""The private Keras names genaug's hooks rely on (genaug.loaders._keras_hooks), checked on the
Keras version constraints.txt pins: bumping that pin to a Keras that moves one fails here.

Another installed Keras is checked too, and a failure there says which version broke it."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from genaug.loaders._keras_hooks import KERAS_HOOKS, seed_generators, seed_of, set_seed

ROOT = Path(__file__).resolve().parents[2]
PINNED = re.search(r"^keras==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
WHERE = (f"Keras {keras.__version__} (constraints.txt pins {PINNED}): "
         "genaug/loaders/_keras_hooks.py needs updating")


def _source(module: str, name: str) -> str:
    return inspect.getsource(getattr(importlib.import_module(module), name).__init__)


def test_the_pinned_keras_is_the_installed_one():
    if keras.__version__ != PINNED:
        pytest.skip(f"installed Keras {keras.__version__}, pinned {PINNED}: the hooks below "
                    "are checked on the installed one")


@pytest.mark.parametrize("module, name", [(m, n) for m, names in KERAS_HOOKS.items()
                                          for n in names])
def test_every_private_name_exists(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone: {WHERE}"


def test_the_data_adapters_still_receive_class_weight_as_the_hooks_read_it():
    module = "keras.src.trainers.data_adapters.py_dataset_adapter"
    py_init = _source(module, "PyDatasetAdapter")
    assert "class_weight" in inspect.signature(
        importlib.import_module(module).PyDatasetAdapter.__init__).parameters, WHERE
    assert "self.class_weight = class_weight" in py_init, WHERE
    tf_init = _source("keras.src.trainers.data_adapters.tf_dataset_adapter", "TFDatasetAdapter")
    assert re.search(r"class_weight is not None:\s+dataset = dataset\.map\(", tf_init), WHERE


def test_a_seed_generator_state_is_seed_then_counter():
    layer = keras.layers.RandomFlip(seed=3)
    (generator,) = seed_generators(keras.Sequential([layer]))
    assert tuple(generator.state.shape) == (2,), WHERE
    set_seed(generator, 41)
    assert seed_of(generator) == 41
    assert keras.ops.convert_to_numpy(generator.state.value)[1] == 0
    first = keras.ops.convert_to_numpy(layer(np.ones((2, 4, 4, 1)), training=True))
    set_seed(generator, 41)
    again = keras.ops.convert_to_numpy(layer(np.ones((2, 4, 4, 1)), training=True))
    assert np.array_equal(first, again), WHERE
