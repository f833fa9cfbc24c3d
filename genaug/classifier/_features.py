"""A classifier's embedding as a feature extractor (for FID/KID and feature-space selection).

No network access is possible at run time, so the Inception-v3 network of published FID is not
available. Any Keras classifier can stand in: its penultimate layer (or the layer named
``features``, which genaug's CNN has) is the embedding. The numbers are then comparable with
each other (same feature model, same data) but not with published FID/KID values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genaug.classifier._contract import load_classifier
from genaug.exceptions import ConfigError

FEATURE_LAYER = "features"


@dataclass
class FeatureExtractor:
    """A Keras model mapping raw-pixel images to embedding vectors.

    Attributes
    ----------
    model : keras.Model
        The truncated model; input float32 ``(N, H, W, C)`` pixels in [0, 255].
    image_size : (int, int)
        Input height and width.
    color_mode : str
        ``grayscale``, ``rgb`` or ``rgba``.
    layer : str
        Name of the layer whose output is the embedding.
    source : str
        Where the model came from, for the report.
    details : dict
        Extra facts for the report (e.g. the feature classifier's test metrics).
    """

    model: object
    image_size: tuple[int, int]
    color_mode: str
    layer: str
    source: str
    details: dict = field(default_factory=dict)

    def __call__(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Embed a uint8 stack ``(N, H, W, C)``; returns float64 ``(N, D)``.

        Outputs with spatial axes (a convolutional layer) are averaged over them.
        """
        images = np.asarray(images)
        if len(images) == 0:
            return np.zeros((0, self.dimension), dtype=np.float64)
        out = np.asarray(self.model.predict(images.astype(np.float32), batch_size=batch_size,
                                            verbose=0))
        if out.ndim > 2:
            out = out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1)
        return out.astype(np.float64)

    @property
    def dimension(self) -> int:
        shape = self.model.output_shape
        return int(shape[-1])

    def describe(self) -> dict:
        return {
            "source": self.source,
            "layer": self.layer,
            "dimension": self.dimension,
            "image_size": list(self.image_size),
            "color_mode": self.color_mode,
            **self.details,
        }


def embedding_model(model, *, layer: str | None = None):
    """The sub-model from ``model``'s inputs to its embedding layer.

    Parameters
    ----------
    model : keras.Model
    layer : str, optional
        Layer to use; default the layer named ``features`` if present, else the penultimate
        layer (the one before the classification head).

    Returns
    -------
    (keras.Model, str)
        The truncated model and the name of the embedding layer.
    """
    import keras

    names = [lay.name for lay in model.layers]
    if layer is not None:
        if layer not in names:
            raise ConfigError(f"the feature model has no layer named {layer!r}")
        chosen = model.get_layer(layer)
    elif FEATURE_LAYER in names:
        chosen = model.get_layer(FEATURE_LAYER)
    elif len(model.layers) >= 2:
        chosen = model.layers[-2]
    else:
        chosen = model.layers[-1]
    if isinstance(chosen, keras.layers.InputLayer):
        chosen = model.layers[-1]
    try:
        return keras.Model(model.inputs, chosen.output), chosen.name
    except Exception as error:  # Keras raises several kinds for unbuilt/subclassed models
        raise ConfigError(
            f"cannot take layer {chosen.name!r} of the feature model as an embedding "
            f"(a functional or Sequential Keras model is needed): {error}".splitlines()[0]
        ) from None


def load_feature_extractor(path, *, layer: str | None = None,
                           image_size: tuple[int, int] | None = None) -> FeatureExtractor:
    """Open any Keras model file as a :class:`FeatureExtractor`.

    The input size and colour mode come from the model's sidecar JSON (genaug classifiers) or
    from its input shape; ``image_size`` is needed only for models that accept any size.
    """
    model, info = load_classifier(path)
    size = tuple(info.get("image_size") or ())
    if len(size) != 2 or None in size:
        if image_size is None:
            raise ConfigError(f"{path} accepts any image size; pass --image-size")
        size = tuple(image_size)
    extractor, name = embedding_model(model, layer=layer)
    return FeatureExtractor(
        model=extractor, image_size=(int(size[0]), int(size[1])),
        color_mode=info.get("color_mode") or "rgb", layer=name,
        source=f"user model {Path(path)}",
        details={"class_names": info.get("class_names")},
    )
