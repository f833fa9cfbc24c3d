"""The CNN genaug trains: small, input-size agnostic, with a named feature layer."""

from __future__ import annotations

import keras
from keras import layers


def build_cnn(input_shape, num_classes: int, *, width: int = 32, dropout: float = 0.3,
              seed: int | None = None) -> keras.Model:
    """A compact VGG-style CNN for small images.

    Input: float32 raw pixels in [0, 255] (rescaling is the first layer, so the saved model is
    self-contained). Batch-norm momentum is 0.9 because small imbalanced sets give few steps
    per epoch, and with Keras's 0.99 the inference statistics lag far behind. The penultimate
    layer is named ``"features"`` (the feature space of the quality metrics). Augmentation
    belongs to the loader, not the model.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    for i, filters in enumerate((width, width * 2, width * 4)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        if i < 2 or min(input_shape[:2]) >= 32:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout, seed=seed)(x)
    x = layers.Dense(width * 4, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="genaug_cnn")
