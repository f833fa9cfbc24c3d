"""The default feature space of ``genaug quality``: a small classifier of the user's own data.

No network access is possible at run time, so the Inception-v3 network of published FID is not
available; a balanced classifier trained on the real images stands in (see
:mod:`genaug.classifier` for the extractor itself). Training it is the application's job: the
caller hands over the training function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from genaug.classifier import FeatureExtractor, load_feature_extractor

MODEL_NAME = "feature_model"


def train_feature_extractor(
    data_dir,
    *,
    train_classifier: Callable[..., dict],
    output_dir,
    epochs: int = 5,
    image_size: int = 32,
    color_mode: str = "auto",
    classes=None,
    seed: int = 0,
    verbose: int = 0,
) -> FeatureExtractor:
    """Train a small balanced classifier on the real images only and use it for features.

    Parameters
    ----------
    data_dir : path-like
        Real images (a folder or CSV manifest).
    train_classifier : callable
        ``train_classifier(**options) -> metrics``, where ``options`` are the fields of a
        training run (``data_dir``, ``classes``, ``balanced``, ``epochs``, ``image_size``,
        ``color_mode``, ``seed``, ``output_dir``, ``model_dir``, ``model_name``, ``verbose``)
        and ``metrics`` holds ``model_path`` (a classifier saved with
        :func:`genaug.classifier.save_classifier`) and ``balanced_accuracy``. The CLI hands
        ``lambda **o: training.pipeline.run_training(TrainConfig(**o))``.
    output_dir : path-like
        Where the model and its training outputs go.
    epochs, image_size, color_mode, classes, seed, verbose
        Options of that training run.

    Returns
    -------
    FeatureExtractor
        Its :attr:`~genaug.classifier.FeatureExtractor.details` hold the classifier's held-out
        balanced accuracy (a weak classifier gives weak features).
    """
    output_dir = Path(output_dir)
    metrics = train_classifier(
        data_dir=str(data_dir), classes=classes, balanced=True, epochs=epochs,
        image_size=image_size, color_mode=color_mode, seed=seed, output_dir=str(output_dir),
        model_dir=str(output_dir), model_name=MODEL_NAME, verbose=verbose)
    model_path = Path(metrics["model_path"])
    extractor = load_feature_extractor(model_path)
    extractor.source = (f"a classifier trained by genaug on the real images of {data_dir} "
                        f"(balanced, {epochs} epochs), saved to {model_path}")
    extractor.details["classifier_balanced_accuracy"] = metrics.get("balanced_accuracy")
    extractor.details["classifier_epochs"] = epochs
    return extractor
