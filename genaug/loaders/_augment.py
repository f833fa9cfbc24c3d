"""Augmentation pipelines from names: Keras core layers by default, keras-cv when asked."""

from __future__ import annotations

from collections.abc import Sequence

from genaug.exceptions import ConfigError

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
