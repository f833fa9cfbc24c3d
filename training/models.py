"""The CNN genaug trains: small, input-size agnostic, with a named feature layer."""

from __future__ import annotations

import keras
from keras import layers


def build_cnn(input_shape, num_classes: int, *, width: int = 32, dropout: float = 0.3,
              seed: int | None = None) -> keras.Model:
    """A compact VGG-style CNN for small images.

    Input: float32 raw pixels in [0, 255] (rescaling is the first layer, so the saved model is
    self-contained). Batch-norm momentum is 0.9 because small imbalanced sets give few steps
    per epoch, and with Keras's 0.99 the inference statistics lag far behind; even 0.9 lags
    in a run of a few dozen steps, so a training run recomputes them from its final weights
    (:class:`BatchNormRecalibration`). The penultimate layer is named ``"features"`` (the
    feature space of the quality metrics). Augmentation belongs to the loader, not the model.
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


def batch_norm_layers(model) -> list:
    """Every trainable ``BatchNormalization`` layer of ``model``, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization) and layer.trainable:
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batch_norm_layers(layer))
    return found


def recalibrate_batch_norm(model, batches) -> int:
    """Set each batch-norm layer's inference statistics to their exact mean over ``batches``.

    Keras keeps a batch-norm layer's inference mean and variance as a moving average over the
    training steps. A short run (a few dozen steps) ends with statistics still weighted by
    those of much earlier weights, and the model then predicts one class for every image
    although it fits its training batches. Recomputing them with the final weights, as
    ``torch.optim.swa_utils.update_bn`` does, removes that lag whatever the number of steps:
    a forward pass in training mode with momentum ``n / (n + 1)`` at the ``n``-th batch makes
    the moving average an exact running mean. No weight changes.

    Parameters
    ----------
    model : keras.Model
    batches : iterable of array
        Input batches (raw pixels, as the model takes them).

    Returns
    -------
    int
        The number of batches used (0 leaves the statistics as they were).
    """
    norms = batch_norm_layers(model)
    momenta = [layer.momentum for layer in norms]
    used = 0
    try:
        for used, batch in enumerate(batches, start=1):
            for layer in norms:
                layer.momentum = (used - 1) / used
            model(batch, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return used


class BatchNormRecalibration(keras.callbacks.Callback):
    """Recalibrate batch norm (:func:`recalibrate_batch_norm`) before each validation and at
    the end of ``fit``, so validation scores and the saved model use statistics of the final
    weights. ``batches`` is a sequence of input batches, reused every time."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches
        self._stale = False

    def on_epoch_begin(self, epoch, logs=None):
        self._stale = True

    def _recalibrate(self):
        if self._stale:
            recalibrate_batch_norm(self.model, self.batches)
            self._stale = False

    def on_test_begin(self, logs=None):
        self._recalibrate()

    def on_train_end(self, logs=None):
        self._recalibrate()
