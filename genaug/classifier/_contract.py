"""Saving and loading a trained classifier together with what is needed to feed it."""

from __future__ import annotations

import json
from pathlib import Path

from genaug._io import atomic_write_bytes
from genaug.exceptions import ConfigError


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def save_classifier(model, path, *, class_names, image_size, color_mode) -> Path:
    """Save ``model`` to ``path`` (``.keras``) and its input contract to ``<path>.json``.

    The model takes float32 batches ``(N, H, W, C)`` of raw pixel values in [0, 255] (rescaling
    is a layer inside it) and returns class probabilities in ``class_names`` order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    tmp.replace(path)
    info = {"class_names": list(class_names), "image_size": list(image_size),
            "color_mode": color_mode}
    atomic_write_bytes(sidecar_path(path), json.dumps(info, indent=2).encode())
    return path


def load_classifier(path):
    """Load a classifier saved by :func:`save_classifier`; return ``(model, info)``.

    ``info`` has ``class_names``, ``image_size`` and ``color_mode``. A model without a sidecar
    (any user Keras model) is accepted; its input shape is read from the model and
    ``class_names`` is None.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model not found: {path}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a bad file
        raise ConfigError(f"cannot load Keras model {path}: {error}".splitlines()[0]) from None
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
    else:
        shape = model.input_shape
        info = {"class_names": None, "image_size": list(shape[1:3]),
                "color_mode": "grayscale" if shape[-1] == 1 else "rgb"}
    info["image_size"] = tuple(info["image_size"])
    return model, info
