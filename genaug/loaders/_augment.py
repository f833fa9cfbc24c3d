"""Augmentation: pipelines from names (Keras core layers by default, keras-cv when asked), and
applying one to a batch reproducibly, whichever worker thread decodes it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from genaug.exceptions import ConfigError
from genaug.loaders._keras_hooks import seed_generators, seed_of, set_seed
from genaug.sampling import Stream, rng_for

# Seed generators are shared state: one batch at a time sets them and draws from them.
_SEEDING = threading.Lock()

AUGMENTATIONS = ("flip", "rotation", "zoom", "translation", "contrast", "brightness",
                 "randaugment")


def build_augmentation(names: Sequence[str], *, backend: str = "keras", seed: int | None = None,
                       value_range=(0, 255)):
    """A ``keras.Sequential`` of augmentation layers for float images in ``value_range``.

    Parameters
    ----------
    names : sequence of str
        Any of ``flip`` (horizontal), ``rotation`` (+-10 %), ``zoom`` (+-10 %),
        ``translation`` (+-10 %), ``contrast`` (0.2), ``brightness`` (0.2) and, with
        ``backend="keras_cv"`` only, ``randaugment``.
    backend : {"keras", "keras_cv"}
        ``keras_cv`` uses keras-cv's layers (an optional dependency).
    seed : int, optional
    """
    import keras

    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ConfigError(f"unknown augmentation(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(AUGMENTATIONS)}")
    if backend == "keras":
        if "randaugment" in names:
            raise ConfigError("randaugment needs --augment-backend keras_cv")
        layers = keras.layers
    elif backend == "keras_cv":
        try:
            import keras_cv
        except ImportError:
            raise ConfigError("keras-cv is not installed (pip install keras-cv)") from None
        layers = keras_cv.layers
    else:
        raise ConfigError(f"augmentation backend must be keras or keras_cv, got {backend!r}")
    make = {
        "flip": lambda: layers.RandomFlip("horizontal", seed=seed),
        "rotation": lambda: layers.RandomRotation(0.1, seed=seed),
        "zoom": lambda: layers.RandomZoom(0.1, seed=seed),
        "translation": lambda: layers.RandomTranslation(0.1, 0.1, seed=seed),
        # keras-cv's contrast layer needs the value range; Keras's assumes none.
        "contrast": lambda: (layers.RandomContrast(value_range, 0.2, seed=seed)
                             if backend == "keras_cv" else
                             layers.RandomContrast(0.2, seed=seed)),
        "brightness": lambda: layers.RandomBrightness(0.2, value_range=value_range, seed=seed),
        "randaugment": lambda: layers.RandAugment(value_range=value_range, magnitude=0.3,
                                                  seed=seed),
    }
    return keras.Sequential([make[name]() for name in names], name="augmentation")


def apply_augment(augment, batch: np.ndarray) -> np.ndarray:
    """Run a callable or Keras augmentation layers on a float32 batch; return numpy."""
    import keras

    if augment is None:
        return batch
    if isinstance(augment, keras.layers.Layer):
        out = augment(batch, training=True)
    else:
        out = augment(batch)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)


class BatchAugment:
    """An augmentation whose random draws depend only on ``(seed, epoch, batch index)``.

    Keras's random layers draw from :class:`keras.random.SeedGenerator` states that advance
    with every call, so with ``workers > 1`` the batch a state is used for depends on thread
    timing, and ``g[0]`` differs on every call. Before each batch, every seed generator of the
    layers is set to a state derived from ``(seed, epoch, batch index)`` and its own initial
    state (so ``RandomFlip(seed=1)`` and ``seed=2`` still differ); setting and drawing happen
    under one lock, so worker threads cannot interleave them.

    A plain callable is run as it is: genaug cannot see its randomness, so it is reproducible
    only if the callable is.

    Parameters
    ----------
    augment : keras.layers.Layer, callable or None
    seed : int
        The loader's seed.
    """

    def __init__(self, augment, *, seed: int):
        import keras

        self.augment = augment
        self.seed = int(seed)
        self.generators = (seed_generators(augment)
                           if isinstance(augment, keras.layers.Layer) else [])
        self.bases = [seed_of(g) for g in self.generators]

    def __call__(self, batch: np.ndarray, *, epoch: int, index: int) -> np.ndarray:
        if not self.generators:
            return apply_augment(self.augment, batch)
        states = rng_for(self.seed, Stream.AUGMENTATION, epoch, index).integers(
            1, 2**31 - 1, size=len(self.generators))
        with _SEEDING:
            for generator, base, state in zip(self.generators, self.bases, states):
                set_seed(generator, int(rng_for(int(state), base).integers(1, 2**31 - 1)))
            return apply_augment(self.augment, batch)
