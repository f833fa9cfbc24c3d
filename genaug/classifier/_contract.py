"""Saving and loading a trained classifier together with what is needed to feed it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from genaug.exceptions import ConfigError, OutputError
from genaug.io import atomic_write_bytes


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def save_classifier(model, path, *, class_names, image_size, color_mode) -> Path:
    """Save ``model`` to ``path`` (``.keras``) and its input contract to ``<path>.json``.

    The model takes float32 batches ``(N, H, W, C)`` of raw pixel values in [0, 255] (rescaling
    is a layer inside it) and returns class probabilities in ``class_names`` order.

    The model is written to ``.<stem>.tmp.keras`` first (a later save overwrites what a killed
    one left there), the sidecar records its SHA-256, and only a rename follows the sidecar, so
    a full disk keeps the previous pair and a kill between the two renames leaves a pair that
    :func:`load_classifier` refuses instead of a new model read with an old contract.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(tmp)
        info = {"class_names": list(class_names), "image_size": list(image_size),
                "color_mode": color_mode, "model_sha256": _sha256(tmp)}
        atomic_write_bytes(sidecar_path(path), json.dumps(info, indent=2).encode())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OutputError):
            raise
        raise OutputError(f"cannot save the model {path}: {error.strerror or error}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def load_classifier(path):
    """Load a classifier saved by :func:`save_classifier`; return ``(model, info)``.

    ``info`` has ``class_names``, ``image_size`` and ``color_mode``. A model without a sidecar
    (any user Keras model) is accepted; its input shape is read from the model and
    ``class_names`` is None. A sidecar that records another model's SHA-256 (a save killed
    between its two renames) is refused.
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
        recorded = info.pop("model_sha256", None)
        if recorded is not None and recorded != _sha256(path):
            raise ConfigError(f"{sidecar} belongs to another model than {path} (a save was "
                              "interrupted): save the model again")
    else:
        shape = model.input_shape
        info = {"class_names": None, "image_size": list(shape[1:3]),
                "color_mode": "grayscale" if shape[-1] == 1 else "rgb"}
    info["image_size"] = tuple(info["image_size"])
    return model, info
