"""The CNN genaug trains: small, input-size agnostic, with a named feature layer."""

from __future__ import annotations

import keras
import numpy as np
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


def training_forward(model):
    """``model(x, training=True)``, compiled with ``tf.function`` on the TensorFlow backend
    (eager calls there cost more than the arithmetic of a small CNN); as is elsewhere."""

    def forward(batch):
        return model(batch, training=True)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(forward, reduce_retracing=True)
    return forward


def recalibrate_batch_norm(model, batches, *, forward=None) -> int:
    """Set each batch-norm layer's inference statistics to their exact mean over ``batches``.

    Keras keeps a batch-norm layer's inference mean and variance as a moving average over the
    training steps. A short run (a few dozen steps) ends with statistics still weighted by
    those of much earlier weights, and the model then predicts one class for every image
    although it fits its training batches. Recomputing them with the final weights, as
    ``torch.optim.swa_utils.update_bn`` does, removes that lag whatever the number of steps.
    No weight and no other state changes (training goes on exactly as without it).

    Each batch goes through the model in training mode (each layer normalised by the batch's
    own statistics, as in training) with the moving statistics set to 0 first, so the update
    leaves ``(1 - momentum)`` times the batch's mean and variance in them; their mean over the
    batches becomes the layer's statistics.

    Parameters
    ----------
    model : keras.Model
    batches : iterable of array
        Input batches (raw pixels, as the model takes them).
    forward : callable, optional
        :func:`training_forward` of ``model``, to reuse one compiled function across calls.

    Returns
    -------
    int
        The number of batches used (0 leaves the statistics as they were).
    """
    norms = [layer for layer in batch_norm_layers(model) if layer.momentum < 1.0]
    forward = forward or training_forward(model)
    numpy = keras.ops.convert_to_numpy
    saved = [(numpy(layer.moving_mean), numpy(layer.moving_variance)) for layer in norms]
    # Other state a training-mode pass moves (dropout's random seed) is put back, so that
    # recalibrating changes nothing about the rest of training.
    statistics = {id(v) for layer in norms for v in (layer.moving_mean, layer.moving_variance)}
    other_state = [(v, numpy(v)) for v in model.non_trainable_variables
                   if id(v) not in statistics]
    sums = [[np.zeros(mean.shape), np.zeros(variance.shape)] for mean, variance in saved]
    used = 0
    try:
        for batch in batches:
            for layer, (mean, variance) in zip(norms, saved):
                layer.moving_mean.assign(np.zeros_like(mean))
                layer.moving_variance.assign(np.zeros_like(variance))
            forward(batch)
            for layer, total in zip(norms, sums):
                total[0] += numpy(layer.moving_mean).astype(np.float64) / (1 - layer.momentum)
                total[1] += numpy(layer.moving_variance).astype(np.float64) / (1 - layer.momentum)
            used += 1
    except BaseException:  # an error half-way leaves the statistics as they were
        used = 0
        raise
    finally:
        for layer, (mean, variance), (mean_sum, variance_sum) in zip(norms, saved, sums):
            layer.moving_mean.assign(mean_sum / used if used else mean)
            layer.moving_variance.assign(variance_sum / used if used else variance)
        for variable, value in other_state:
            variable.assign(value)
    return used


class BatchNormRecalibration(keras.callbacks.Callback):
    """Recalibrate batch norm (:func:`recalibrate_batch_norm`) before each validation and at
    the end of ``fit``, so validation scores and the saved model use statistics of the
    current weights.

    Parameters
    ----------
    batches : sequence of array
        Input batches for the final recalibration, reused every time.
    validation_batches : int, optional
        How many of them recalibrate before a validation (default all): a cheaper estimate,
        since that pass runs every epoch.
    """

    def __init__(self, batches, *, validation_batches: int | None = None):
        super().__init__()
        self.batches = list(batches)
        self.validation_batches = min(validation_batches or len(self.batches),
                                      len(self.batches))
        self._calibrated = 0  # batches the statistics come from since the weights changed
        self._forward = None

    def on_epoch_begin(self, epoch, logs=None):
        self._calibrated = 0

    def _recalibrate(self, count: int) -> None:
        if self._calibrated < count:
            self._forward = self._forward or training_forward(self.model)
            recalibrate_batch_norm(self.model, self.batches[:count], forward=self._forward)
            self._calibrated = count

    def on_test_begin(self, logs=None):
        self._recalibrate(self.validation_batches)

    def on_train_end(self, logs=None):
        self._recalibrate(len(self.batches))
