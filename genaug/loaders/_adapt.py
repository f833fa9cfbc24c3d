"""``AdaptAfterWarmup``: select and allocate the synthetic pool with the model being trained,
at the end of its warm-up, and let the same ``model.fit`` go on."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import keras
import numpy as np

from genaug.data import channels_of
from genaug.exceptions import ConfigError

SELECTIONS = ("feature-distance", "class-margin")
ALLOCATIONS = ("confusion",)


class AdaptAfterWarmup(keras.callbacks.Callback):
    """At the end of epoch ``warmup_epochs``, adapt the training loader's synthetic pool.

    With ``select``, the real training images and the synthetic images offered to the
    loader's sampler are embedded by the model's ``features`` layer (or penultimate layer,
    :func:`genaug.classifier.embedding_model`) and only those that
    :func:`genaug.sampling.select_by_feature_distance` (``"feature-distance"``) or
    :func:`genaug.sampling.select_by_class_margin` (``"class-margin"``) keep are drawn from
    then on. With ``allocate="confusion"``, each class's synthetic cap is scaled by the
    model's errors on ``validation`` (:func:`genaug.sampling.allocate_by_confusion`). The
    loader switches in place (``adapt_synthetic``), so its later epochs are those of a loader
    built with the selection and caps from the start.

    Parameters
    ----------
    loader : BalancedBatchGenerator or tf.data.Dataset
        The training loader (one of genaug's). The ``tf.data`` loader can switch to a pool
        among the files it listed; with ``synthetic_pool_cap`` a selection redraws the pool,
        which only :class:`~genaug.BalancedBatchGenerator` can follow.
    warmup_epochs : int
        Epochs trained before the adaptation (at least 1).
    select : {"feature-distance", "class-margin"}, optional
    allocate : {"confusion"}, optional
    validation : loader, optional
        Real held-out images for the allocation (one of genaug's loaders, not shuffled or
        shuffled: its plan gives the labels).
    log : callable, optional
        Receives one line at a time of what was kept and allocated (e.g. ``print``).

    Attributes
    ----------
    selection, allocation : dict or None
        What the selection kept and the caps the allocation set, once done; ``status.json``
        holds them (:func:`~genaug.loaders.write_training_status`).
    """

    def __init__(self, loader, *, warmup_epochs: int, select: str | None = None,
                 allocate: str | None = None, validation=None,
                 log: Callable[[str], None] | None = None):
        super().__init__()
        if not callable(getattr(loader, "adapt_synthetic", None)):
            raise ConfigError("AdaptAfterWarmup needs one of genaug's loaders (a "
                              "BalancedBatchGenerator or a genaug tf.data dataset)")
        if select is None and allocate is None:
            raise ConfigError("AdaptAfterWarmup: give select, allocate or both")
        if select is not None and select not in SELECTIONS:
            raise ConfigError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
        if allocate is not None and allocate not in ALLOCATIONS:
            raise ConfigError(f"allocate must be confusion, got {allocate!r}")
        if int(warmup_epochs) < 1:
            raise ConfigError(f"warmup_epochs must be at least 1, got {warmup_epochs}")
        sampler = loader.sampler
        if select is not None and sampler.offered is None:
            raise ConfigError("AdaptAfterWarmup(select=...) needs a loader with a synthetic "
                              "cache")
        if select is not None and sampler.options.synthetic.pool_cap is not None and \
                not isinstance(loader, keras.utils.PyDataset):
            raise ConfigError("AdaptAfterWarmup(select=...) with synthetic_pool_cap redraws "
                              "the pool from the selection, beyond the files a tf.data loader "
                              "listed when it was built: use BalancedBatchGenerator")
        if allocate is not None:
            if validation is None:
                raise ConfigError("AdaptAfterWarmup(allocate='confusion') measures the model "
                                  "on validation images: give validation=")
            if isinstance(sampler.requested_options.synthetic.cap, Mapping):
                raise ConfigError("AdaptAfterWarmup(allocate='confusion') scales one "
                                  "synthetic_cap, not per-class caps")
        self.loader, self.validation = loader, validation
        self.warmup_epochs = int(warmup_epochs)
        self.select, self.allocate = select, allocate
        self.log = log or (lambda line: None)
        self.selection: dict | None = None
        self.allocation: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.warmup_epochs:
            return
        ids = self.selected_ids() if self.select else None
        caps = self.confusion_caps() if self.allocate else None
        self.loader.adapt_synthetic(synthetic_ids=ids, synthetic_cap=caps)

    def selected_ids(self) -> frozenset[str]:
        """The ids of the offered synthetic images the selection keeps, by the model's own
        embedding (:func:`select_synthetic`)."""
        from genaug.classifier import FeatureExtractor, embedding_model

        sampler = self.loader.sampler
        embedding, layer = embedding_model(self.model)
        extractor = FeatureExtractor(
            model=embedding, image_size=tuple(self.loader.image_size),
            color_mode=self.loader.color_mode, layer=layer,
            source=f"this run's model after {self.warmup_epochs} warm-up epoch(s)")
        ids, self.selection = select_synthetic(
            extractor, sampler.real, sampler.offered, method=self.select,
            after_epoch=self.warmup_epochs, log=self.log)
        return ids

    def confusion_caps(self) -> dict[str, float]:
        """Per-class caps from the model's confusion on the validation images, among the
        classes the sampler gives synthetic images."""
        from genaug.sampling import allocate_by_confusion

        sampler = self.loader.sampler
        k = len(sampler.class_names)
        labels = self.validation.sampler.mixed().labels  # the plan the pass below delivers
        predicted = np.argmax(self.model.predict(self.validation, verbose=0), axis=1)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        allocation = allocate_by_confusion(
            confusion, class_names=sampler.class_names,
            cap=sampler.requested_options.synthetic.cap, eligible=sampler.eligible)
        self.allocation = {**allocation.to_dict(), "after_epoch": self.warmup_epochs}
        self.log(f"synthetic allocation (validation confusion after {self.warmup_epochs} "
                 "warm-up epoch(s)):")
        for name, row in self.allocation["per_class"].items():
            if row["receives_synthetic"]:
                self.log(f"  {name}: recall {row['recall']:.2f} on {row['validation_images']}"
                         f" images, cap {row['synthetic_cap']:.2f}")
        return allocation.as_cap()


def select_synthetic(extractor, real, offered, *, method: str, after_epoch: int | None = None,
                     log: Callable[[str], None] | None = None) -> tuple[frozenset[str], dict]:
    """Embed the real training images ``real`` and the synthetic images ``offered`` (sources)
    with ``extractor`` and keep the synthetic images that the selection ``method`` keeps
    (:data:`SELECTIONS`). Validation and test images never take part; images derived from
    them must not be offered.

    Returns
    -------
    (frozenset of str, dict)
        The kept images' ids, and the selection's report (its ``features`` and
        ``after_epoch``) as ``status.json`` holds it.
    """
    from genaug.sampling import select_by_class_margin, select_by_feature_distance

    log = log or (lambda line: None)
    started = time.perf_counter()
    margin = method == "class-margin"
    chooser = select_by_class_margin if margin else select_by_feature_distance
    result = chooser(extractor(all_images(real, extractor)), real.labels,
                     extractor(all_images(offered, extractor)), offered.labels,
                     class_names=real.class_names)
    seconds = time.perf_counter() - started
    report = {**result.to_dict(), "features": extractor.describe(), "after_epoch": after_epoch,
              "seconds": round(seconds, 2)}
    log(f"synthetic selection ({method}, {extractor.source}): kept {result.kept} of "
        f"{len(result.keep)} cached images in {seconds:.1f}s")
    for name, row in result.per_class.items():
        if margin and row["kept"] + row["dropped"]:
            nearer = ", ".join(f"{other} {n}" for other, n in row["nearer_to"].items())
            log(f"  {name}: kept {row['kept']}, dropped {row['dropped']}"
                + (f" (nearer to {nearer})" if nearer else ""))
        elif row["kept"] + row["dropped"]:
            log(f"  {name}: in {row['in']}, near {row['near']}, far {row['far']}; "
                f"kept {row['kept']}" + (f" ({row['note']})" if row["note"] else ""))
    return frozenset(np.asarray(offered.ids, dtype=object)[result.keep]), report


def all_images(source, extractor) -> np.ndarray:
    """Every image of ``source`` as one uint8 stack ``(N, H, W, C)``, in the extractor's
    input format."""
    size, mode = tuple(extractor.image_size), extractor.color_mode
    if len(source) == 0:
        return np.zeros((0, *size, channels_of(mode)), dtype=np.uint8)
    return np.stack([source.load(i, image_size=size, color_mode=mode)
                     for i in range(len(source))])
