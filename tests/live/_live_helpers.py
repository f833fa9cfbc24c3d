"""Helpers shared by the live tests."""

import keras

from genaug import BalancedBatchGenerator


def fit_with_live(data, live, epochs=2, callbacks=()):
    loader = BalancedBatchGenerator(data, batch_size=6, image_size=(8, 8), seed=0,
                                    synthetic_ratio=0.5, live_source=live)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with live:
        model.fit(loader, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return loader
