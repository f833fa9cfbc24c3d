"""Quality gates: each scores a generated image, compares with a threshold and is recorded.

The standard chain is blur (Laplacian variance), structure (neighbour-pixel correlation),
near-duplicate (perceptual hash) and verification (a reference classifier's probability for
the intended class). Gates are pluggable: subclass :class:`QualityGate` (or wrap a function
with :class:`FunctionGate`) and pass it in ``extra_gates``.

A chain works in two phases, so a pipeline can run the costly part of a batch on worker
threads and keep one ordered consumer: :meth:`GateChain.prepare` scores a batch with the
stateless gates and computes what the stateful gates compare (a pHash each), in any thread;
:meth:`GateChain.finish` then decides each image in order against what was accepted before.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from genaug.exceptions import ConfigError
from genaug.generation._image_metrics import (
    HashSet,
    border_means,
    histogram_distances,
    intensity_histograms,
    laplacian_variances,
    neighbour_correlations,
    phash_batch,
)
from genaug.generation._utils import normalize_image
from genaug.sampling import DEFAULT_RADIUS_FLOOR, ClassMargins, ClassPrototypes, RecipeFlag

#: A class whose acceptance by a gate falls below this share is reported loudly.
COLLAPSE_RATE = 0.2
#: ... once at least this many of its candidates were checked.
COLLAPSE_MIN_CHECKED = 20
#: The default smallest probability of the intended class that the verifier keeps.
DEFAULT_VERIFY_THRESHOLD = 0.6


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict on one image."""

    score: float | None
    threshold: float
    passed: bool
    note: str | None = None

    def to_dict(self) -> dict:
        out = {"score": None if self.score is None else round(float(self.score), 6),
               "threshold": float(self.threshold), "passed": bool(self.passed)}
        if self.note:
            out["note"] = self.note
        return out


class QualityGate(ABC):
    """Base class of quality gates.

    A gate has a ``name`` (the key in a record's ``quality``), a ``threshold``, a
    :meth:`score` for one uint8 HxWxC image of a class, and :meth:`passes`. A stateful gate
    (``stateful = True``) compares with images accepted earlier: :meth:`register` is called
    with every accepted image, and such a gate is evaluated last. A stateful gate may split
    its work: :meth:`features` (per batch, any thread) and :meth:`score_features` /
    :meth:`register_features` (per image, in order); the defaults pass the images through.
    ``thread_safe = False`` (the default for user gates) makes the chain call the gate from
    one thread at a time.
    """

    name: str = "gate"
    stateful: bool = False
    higher_is_better: bool = True
    thread_safe: bool = False

    def __init__(self, *, threshold: float):
        self.threshold = float(threshold)

    @abstractmethod
    def score(self, image: np.ndarray, class_name: str) -> float | None:
        """The image's score (None: the gate does not apply to it, counted as passed)."""

    def score_batch(self, images: Sequence[np.ndarray], class_names: Sequence[str]) -> list:
        return [self.score(image, name) for image, name in zip(images, class_names)]

    def passes(self, score: float | None) -> bool:
        if score is None:
            return True
        return score >= self.threshold if self.higher_is_better else score <= self.threshold

    def result(self, score: float | None) -> GateResult:
        note = "not applicable" if score is None else None
        return GateResult(score=score, threshold=self.threshold, passed=self.passes(score),
                          note=note)

    def check(self, image: np.ndarray, class_name: str) -> GateResult:
        return self.result(self.score(image, class_name))

    def register(self, image: np.ndarray, class_name: str) -> None:  # noqa: B027
        """Called with every accepted image (stateful gates remember it)."""

    def features(self, images: Sequence[np.ndarray]) -> Sequence:
        """What a stateful gate compares, for a batch (no state read or changed)."""
        return list(images)

    def score_features(self, feature, class_name: str) -> float | None:
        return self.score(feature, class_name)

    def register_features(self, feature, class_name: str) -> None:
        self.register(feature, class_name)

    def describe(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "type": type(self).__name__}


class BlurGate(QualityGate):
    """Reject blurry or flat images: Laplacian variance at least ``threshold`` (default 60)."""

    name = "blur"
    thread_safe = True

    def __init__(self, *, threshold: float = 60.0):
        super().__init__(threshold=threshold)

    def score(self, image, class_name):
        return float(laplacian_variances([image])[0])

    def score_batch(self, images, class_names):
        return _batched(laplacian_variances, images)


class StructureGate(QualityGate):
    """Reject noise-like images: neighbour-pixel correlation at least ``threshold`` (0.5).

    Real photographs, drawings and scans score 0.7-0.95 (the embedded digits: 0.95 and
    above); noise scores about 0. A classifier-based verifier cannot replace this gate: a
    softmax is confidently wrong on noise (an undertrained CPU generator had 30 noise images
    of one class accepted at a 0.6 verify threshold), and the blur gate scores noise as sharp.
    """

    name = "structure"
    thread_safe = True

    def __init__(self, *, threshold: float = 0.5):
        super().__init__(threshold=threshold)

    def score(self, image, class_name):
        return float(neighbour_correlations([image])[0])

    def score_batch(self, images, class_names):
        return _batched(neighbour_correlations, images)


def _batched(function, images) -> list[float]:
    """``function`` over the batch at once when its images share a shape, else one by one."""
    if len({np.shape(image) for image in images}) <= 1:
        return [float(v) for v in function(images)] if len(images) else []
    return [float(function([image])[0]) for image in images]


class PHashGate(QualityGate):
    """Reject near-duplicates: pHash Hamming distance above ``threshold`` (default 4) to every
    image already accepted for the class and to the class's real images.

    Parameters
    ----------
    threshold : int, default 4
        Largest distance still counted as a duplicate.
    reference_images : callable, optional
        ``reference_images(class_name) -> iterable of uint8 arrays``: the real images of a
        class, hashed lazily the first time the class is seen.
    """

    name = "phash"
    stateful = True
    thread_safe = True  # features() reads no state; comparisons run in the chain's order

    def __init__(self, *, threshold: int = 4,
                 reference_images: Callable[[str], Iterable[np.ndarray]] | None = None):
        super().__init__(threshold=threshold)
        self.reference_images = reference_images
        self._known: dict[str, HashSet] = {}  # per class: real images, then accepted ones
        self._accepted: dict[str, int] = defaultdict(int)

    def passes(self, score):
        return score is None or score > self.threshold

    def _hashes(self, class_name: str) -> HashSet:
        if class_name not in self._known:  # the real images, hashed the first time
            images = list(self.reference_images(class_name)) if self.reference_images else []
            self._known[class_name] = HashSet(phash_batch(images))
        return self._known[class_name]

    def add_reference(self, class_name: str, images: Iterable[np.ndarray]) -> None:
        """Add real images of a class to compare against."""
        self._hashes(class_name).add(phash_batch(list(images)))

    def features(self, images):
        return phash_batch(images)

    def score_features(self, feature, class_name):
        nearest = self._hashes(class_name).nearest(feature)
        return 64.0 if nearest is None else float(nearest)

    def register_features(self, feature, class_name):
        self._hashes(class_name).add(feature)
        self._accepted[class_name] += 1

    def score(self, image, class_name):
        return self.score_features(phash_batch([image])[0], class_name)

    def register(self, image, class_name):
        self.register_features(phash_batch([image])[0], class_name)

    def accepted_count(self, class_name: str) -> int:
        return self._accepted[class_name]


class VerifierGate(QualityGate):
    """Keep images a reference classifier assigns to the intended class with probability at
    least ``threshold`` (default :data:`DEFAULT_VERIFY_THRESHOLD`).

    Train the reference classifier on the real data **with balanced sampling**: one trained on
    long-tailed data learns the imbalance and rejects nearly every image of a rare class (as
    measured: 0 of 4,613 kept at threshold 0.9). The chain reports per-class acceptance and
    warns when it collapses.

    Parameters
    ----------
    model : keras model or path-like
        Softmax classifier taking float32 (N, H, W, C) pixels in [0, 255], or a ``.keras``
        file saved by ``genaug.classifier.save_classifier``.
    class_names : sequence of str, optional
        The classifier's output order (read from the model's sidecar when loading a file).
    image_size : (h, w), optional
    color_mode : {"grayscale", "rgb"}, optional
    threshold : float, default DEFAULT_VERIFY_THRESHOLD
    """

    name = "verifier"

    def __init__(self, model, *, class_names=None, image_size=None, color_mode=None,
                 threshold: float = DEFAULT_VERIFY_THRESHOLD, batch_size: int = 256):
        super().__init__(threshold=threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"`verify_threshold` must be in [0, 1], got {threshold}")
        self.source = None
        if not hasattr(model, "predict"):
            from genaug.classifier import load_classifier

            self.source = str(model)
            model, info = load_classifier(model)
            class_names = class_names or info.get("class_names")
            image_size = image_size or info.get("image_size")
            color_mode = color_mode or info.get("color_mode")
        self.model = model
        shape = getattr(model, "input_shape", None)
        if image_size is None and shape is not None:
            image_size = tuple(shape[1:3])
        if color_mode is None and shape is not None:
            color_mode = "grayscale" if shape[-1] == 1 else "rgb"
        self.image_size = None if image_size is None else tuple(int(v) for v in image_size)
        self.color_mode = color_mode or "rgb"
        self.class_names = None if class_names is None else tuple(class_names)
        self.batch_size = int(batch_size)

    def bind_classes(self, class_names: Sequence[str]) -> None:
        """For a model without class names: assume the dataset's class order."""
        if self.class_names is None:
            outputs = getattr(self.model, "output_shape", (None, None))[-1]
            if outputs is not None and outputs != len(class_names):
                raise ConfigError(f"the verification model has {outputs} outputs but the data "
                                  f"has {len(class_names)} classes and the model names none")
            self.class_names = tuple(class_names)

    def _inputs(self, images):
        return np.stack([normalize_image(image, self.image_size, self.color_mode)
                         for image in images]).astype(np.float32)

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            x = self._inputs(images[start:start + self.batch_size])
            out.append(np.asarray(self.model(x, training=False)))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names or ())))

    def score_batch(self, images, class_names):
        if self.class_names is None:
            raise ConfigError("VerifierGate needs class names: call bind_classes() first")
        known = [i for i, c in enumerate(class_names) if c in self.class_names]
        scores: list[float | None] = [None] * len(images)
        if known:
            probs = self.probabilities([images[i] for i in known])
            for row, i in zip(probs, known):
                scores[i] = float(row[self.class_names.index(class_names[i])])
        return scores

    def score(self, image, class_name):
        return self.score_batch([image], [class_name])[0]

    def describe(self) -> dict:
        return {**super().describe(), "model": self.source,
                "classes": None if self.class_names is None else list(self.class_names)}


class _EmbeddingGate(QualityGate):
    """A gate that embeds images with a classifier's features and compares them with the
    features of real images (``reference_images``)."""

    def __init__(self, model, *, reference_images: Callable[[str], Iterable[np.ndarray]] | None,
                 threshold: float, radius_quantile: float):
        super().__init__(threshold=threshold)
        if not 0.0 < float(radius_quantile) <= 1.0:
            raise ConfigError(f"radius_quantile must be in (0, 1], got {radius_quantile}")
        self.source = None
        if not callable(getattr(model, "describe", None)):
            from genaug.classifier import load_feature_extractor

            self.source = str(model)
            model = load_feature_extractor(model)
        self.extractor = model
        self.reference_images = reference_images
        self.radius_quantile = float(radius_quantile)

    def _embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        size, mode = self.extractor.image_size, self.extractor.color_mode
        return self.extractor(np.stack([normalize_image(image, size, mode) for image in images]))

    def _real_features(self, class_name: str) -> np.ndarray:
        real = list(self.reference_images(class_name)) if self.reference_images else []
        return self._embed(real) if real else np.zeros((0, self.extractor.dimension))

    def score(self, image, class_name):
        return self.score_batch([image], [class_name])[0]

    def describe(self) -> dict:
        return {**super().describe(), "model": self.source or self.extractor.source,
                "radius_quantile": self.radius_quantile}


class FeatureDistanceGate(_EmbeddingGate):
    """Keep an image whose feature lies within ``threshold`` times its class's real radius.

    The score is ``d / d_f``: the image's distance to the class centre (the mean feature of
    the class's real images) over ``d_f``, the ``radius_quantile`` quantile of the real
    images' own distances to it (:class:`genaug.sampling.ClassPrototypes`). Score <= 1 is
    the "in" band, <= 2 "near", above 2 "far"; the default threshold 2 keeps in and near,
    as :func:`genaug.sampling.select_by_feature_distance` does. A class's real features are
    computed once, the first time the class is scored; a class with fewer than 2 real images
    has no radius and its images pass ("not applicable").

    Parameters
    ----------
    model : FeatureExtractor or path-like
        A ``genaug.classifier.FeatureExtractor``, or a ``.keras`` classifier (saved by
        ``genaug train --balanced``) whose ``features`` layer embeds.
    reference_images : callable
        ``reference_images(class_name) -> iterable of uint8 images``: the class's real images.
    threshold : float, default 2.0
        Largest ``d / d_f`` kept (1.0: the "in" band only).
    radius_quantile : float in (0, 1], default 0.95
    """

    name = "feature_distance"
    higher_is_better = False

    def __init__(self, model, *, reference_images: Callable[[str], Iterable[np.ndarray]] | None,
                 threshold: float = 2.0, radius_quantile: float = 0.95):
        if not float(threshold) > 0:
            raise ConfigError(f"`select_max_ratio` must be positive, got {threshold}")
        super().__init__(model, reference_images=reference_images, threshold=threshold,
                         radius_quantile=radius_quantile)
        self._prototypes: dict[str, ClassPrototypes] = {}

    def prototype(self, class_name: str) -> ClassPrototypes:
        """The class's centre and radius (its real images embedded the first time)."""
        if class_name not in self._prototypes:
            features = self._real_features(class_name)
            self._prototypes[class_name] = ClassPrototypes.fit(
                features, np.zeros(len(features), dtype=np.int64), num_classes=1,
                radius_quantile=self.radius_quantile)
        return self._prototypes[class_name]

    def score_batch(self, images, class_names):
        scores: list[float | None] = [None] * len(images)
        usable = [i for i, name in enumerate(class_names)
                  if not np.isnan(self.prototype(name).radii[0])]
        if usable:
            features = self._embed([images[i] for i in usable])
            for i, feature in zip(usable, features):
                ratio = self.prototype(class_names[i]).ratios(feature[None], [0])[0]
                scores[i] = float(ratio)
        return scores


class ClassMarginGate(_EmbeddingGate):
    """Admit an image only when its own class ranks first in a classifier's feature space.

    The rule of :func:`genaug.sampling.select_by_class_margin` (one implementation,
    :class:`genaug.sampling.ClassMargins`): every class has a centre (the mean feature of
    its real training images) and a radius, raised to at least ``radius_floor`` times the
    median radius so that a rare class's tight few images do not prune it away. The score is
    the image's radius-scaled distance to its own class over the smallest such distance to
    any other class; ``<= threshold`` (1: its own class is the nearest) passes. The real
    features of every class are computed once, the first time an image is scored. A class
    with fewer than 2 real images has no centre: its images pass ("not applicable").

    Parameters
    ----------
    model : FeatureExtractor or path-like
        A ``genaug.classifier.FeatureExtractor``, or a ``.keras`` classifier trained with
        balanced sampling (``genaug train --balanced``) whose ``features`` layer embeds.
    reference_images : callable
        ``reference_images(class_name) -> iterable of uint8 images``: the class's real
        **training** images.
    class_names : sequence of str
        Every class of the data (the margin is against all of them).
    threshold : float, default 1.0
    radius_quantile : float in (0, 1], default 0.95
    radius_floor : float >= 0, default 0.5
    """

    name = "class_margin"
    higher_is_better = False

    def __init__(self, model, *, reference_images: Callable[[str], Iterable[np.ndarray]] | None,
                 class_names: Sequence[str], threshold: float = 1.0,
                 radius_quantile: float = 0.95, radius_floor: float = DEFAULT_RADIUS_FLOOR):
        if not float(threshold) > 0:
            raise ConfigError(f"the class-margin threshold must be positive, got {threshold}")
        if not float(radius_floor) >= 0.0:
            raise ConfigError(f"radius_floor must be >= 0, got {radius_floor}")
        super().__init__(model, reference_images=reference_images, threshold=threshold,
                         radius_quantile=radius_quantile)
        self.class_names = tuple(class_names)
        self.radius_floor = float(radius_floor)
        self._margins: ClassMargins | None = None

    def margins(self) -> ClassMargins:
        """Every class's centre and floored radius (all real images embedded the first
        time)."""
        if self._margins is None:
            per_class = [self._real_features(name) for name in self.class_names]
            labels = np.concatenate([np.full(len(f), c, dtype=np.int64)
                                     for c, f in enumerate(per_class)])
            self._margins = ClassMargins.fit(
                np.concatenate(per_class), labels, num_classes=len(self.class_names),
                radius_quantile=self.radius_quantile, radius_floor=self.radius_floor)
        return self._margins

    def score_batch(self, images, class_names):
        scores: list[float | None] = [None] * len(images)
        margins = self.margins()
        usable = [i for i, name in enumerate(class_names) if name in self.class_names
                  and margins.has_centre[self.class_names.index(name)]]
        if usable:
            labels = [self.class_names.index(class_names[i]) for i in usable]
            ratios, _ = margins.margins(self._embed([images[i] for i in usable]), labels)
            for i, ratio in zip(usable, ratios):
                scores[i] = float(ratio)
        return scores

    def describe(self) -> dict:
        return {**super().describe(), "radius_floor": self.radius_floor}


#: The pixel-statistics gate's allowance beyond the real spread: grey levels of the border
#: mean, and total-variation distance of the intensity histogram.
DEFAULT_BORDER_TOLERANCE = 16.0
DEFAULT_HISTOGRAM_TOLERANCE = 0.1


@dataclass(frozen=True)
class PixelReference:
    """A class's real pixel statistics: the median border mean and the mean intensity
    histogram, and how far the real images themselves lie from them (the ``quantile`` of
    their own deviations)."""

    border: float
    border_spread: float
    histogram: np.ndarray
    histogram_spread: float

    @classmethod
    def fit(cls, images: Sequence[np.ndarray], *, quantile: float) -> PixelReference:
        borders = border_means(images)
        histograms = intensity_histograms(images)
        border = float(np.median(borders))
        histogram = histograms.mean(axis=0)
        return cls(border=border,
                   border_spread=float(np.quantile(np.abs(borders - border), quantile)),
                   histogram=histogram,
                   histogram_spread=float(np.quantile(
                       histogram_distances(histograms, histogram), quantile)))


class PixelStatisticsGate(QualityGate):
    """Reject an image whose background level or intensity histogram is off its class's
    real images (grey or white backgrounds where every real image is black).

    Per class, from its real **training** images (:class:`PixelReference`): the median mean
    of the border pixels (:func:`border_means`, the background level) and the mean intensity
    histogram, with the ``spread_quantile`` quantile of the real images' own deviations from
    them. The score is the larger of ``|border - median| / (border spread +
    border_tolerance)`` and ``histogram distance / (histogram spread +
    histogram_tolerance)``; ``<= threshold`` (1) passes. A class with fewer than 2 real
    images has no spread: its images pass ("not applicable").

    Parameters
    ----------
    reference_images : callable
        ``reference_images(class_name) -> iterable of uint8 images`` at the output size and
        colour mode.
    threshold : float, default 1.0
    border_tolerance : float, default 16
        Grey levels (0-255) allowed beyond the real border spread.
    histogram_tolerance : float, default 0.1
        Total-variation distance allowed beyond the real histogram spread.
    spread_quantile : float in (0, 1], default 0.95
    """

    name = "pixel_statistics"
    higher_is_better = False

    def __init__(self, *, reference_images: Callable[[str], Iterable[np.ndarray]] | None,
                 threshold: float = 1.0, border_tolerance: float = DEFAULT_BORDER_TOLERANCE,
                 histogram_tolerance: float = DEFAULT_HISTOGRAM_TOLERANCE,
                 spread_quantile: float = 0.95):
        super().__init__(threshold=threshold)
        if not self.threshold > 0:
            raise ConfigError(f"the pixel-statistics threshold must be positive, got {threshold}")
        if not (float(border_tolerance) > 0 and float(histogram_tolerance) > 0):
            raise ConfigError("the pixel-statistics tolerances must be positive, got "
                              f"{border_tolerance} and {histogram_tolerance}")
        if not 0.0 < float(spread_quantile) <= 1.0:
            raise ConfigError(f"spread_quantile must be in (0, 1], got {spread_quantile}")
        self.reference_images = reference_images
        self.border_tolerance = float(border_tolerance)
        self.histogram_tolerance = float(histogram_tolerance)
        self.spread_quantile = float(spread_quantile)
        self._references: dict[str, PixelReference | None] = {}

    def reference(self, class_name: str) -> PixelReference | None:
        """The class's real pixel statistics (None: fewer than 2 real images)."""
        if class_name not in self._references:
            real = list(self.reference_images(class_name)) if self.reference_images else []
            self._references[class_name] = (
                PixelReference.fit(real, quantile=self.spread_quantile) if len(real) >= 2
                else None)
        return self._references[class_name]

    def score_batch(self, images, class_names):
        scores: list[float | None] = []
        for image, class_name in zip(images, class_names):
            reference = self.reference(class_name)
            if reference is None:
                scores.append(None)
                continue
            border = abs(float(border_means([image])[0]) - reference.border)
            distance = float(histogram_distances(intensity_histograms([image]),
                                                 reference.histogram)[0])
            scores.append(max(border / (reference.border_spread + self.border_tolerance),
                              distance / (reference.histogram_spread
                                          + self.histogram_tolerance)))
        return scores

    def score(self, image, class_name):
        return self.score_batch([image], [class_name])[0]

    def describe(self) -> dict:
        return {**super().describe(), "border_tolerance": self.border_tolerance,
                "histogram_tolerance": self.histogram_tolerance,
                "spread_quantile": self.spread_quantile}


class FunctionGate(QualityGate):
    """A gate from a function ``score_fn(image, class_name) -> float``.

    Example: a single-face check, ``FunctionGate("one_face", count_faces, threshold=1,
    higher_is_better=...)`` or any score with a threshold.
    """

    def __init__(self, name: str, score_fn: Callable[[np.ndarray, str], float | None], *,
                 threshold: float, higher_is_better: bool = True):
        super().__init__(threshold=threshold)
        self.name = str(name)
        self.score_fn = score_fn
        self.higher_is_better = bool(higher_is_better)

    def score(self, image, class_name):
        value = self.score_fn(image, class_name)
        return None if value is None else float(value)


@dataclass
class Prepared:
    """The order-independent part of an image's verdict (from :meth:`GateChain.prepare`):
    the stateless gates' results and what each stateful gate will compare."""

    results: dict[str, GateResult]
    features: dict[str, object] = field(default_factory=dict)

    @property
    def stateless_passed(self) -> bool:
        return all(r.passed for r in self.results.values())


class GateChain:
    """Run gates in order (stateless first, stateful last) and keep per-class statistics.

    :meth:`check` is all a producer needs: it returns ``(passed, quality)`` where ``quality``
    is the record field ``{gate: {"score", "threshold", "passed"}}``; with ``register=True``
    (default) an accepted image is remembered by stateful gates (near-duplicate detection).
    Every gate is evaluated, even after one fails, so rejections are attributed to all gates
    that would reject the image. For batches: :meth:`prepare` (any thread, several at once)
    then :meth:`finish` per image, in order, from one thread.

    Parameters
    ----------
    gates : sequence of QualityGate
    reference_images : callable, optional
        ``reference_images(class_name)`` -> the class's real images; lets a verifier collapse
        be diagnosed (does the verifier reject the real images too?).
    """

    def __init__(self, gates: Sequence[QualityGate] = (), *,
                 reference_images: Callable[[str], Iterable[np.ndarray]] | None = None):
        names = [g.name for g in gates]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"two quality gates share the name {', '.join(duplicated)}")
        self.gates = [g for g in gates if not g.stateful] + [g for g in gates if g.stateful]
        self._stats: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._final: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._warned: set[tuple[str, str]] = set()
        self._locks = {g.name: threading.Lock() for g in self.gates if not g.thread_safe}
        self.reference_images = reference_images

    def __getstate__(self) -> dict:
        """Pickled (for a remote worker's :meth:`prepare`) without its locks, which are made
        anew on unpickling."""
        state = dict(self.__dict__)
        state["_locks"] = sorted(state["_locks"])
        return state

    def __setstate__(self, state: dict) -> None:
        state["_locks"] = {name: threading.Lock() for name in state["_locks"]}
        self.__dict__.update(state)

    @property
    def stateless(self) -> list[QualityGate]:
        return [g for g in self.gates if not g.stateful]

    @property
    def stateful(self) -> list[QualityGate]:
        return [g for g in self.gates if g.stateful]

    def get(self, name: str) -> QualityGate | None:
        return next((g for g in self.gates if g.name == name), None)

    def _call(self, gate: QualityGate, method: str, *args):
        lock = self._locks.get(gate.name)
        if lock is None:
            return getattr(gate, method)(*args)
        with lock:
            return getattr(gate, method)(*args)

    def prepare(self, images: Sequence[np.ndarray],
                class_names: Sequence[str]) -> list[Prepared]:
        """The order-independent part of a batch's verdicts: the stateless gates' scores
        (each gate over the whole batch) and the stateful gates' features. Reads and changes
        no statistics or state, so batches may be prepared on several threads at once."""
        images, class_names = list(images), list(class_names)
        prepared = [Prepared({}) for _ in images]
        for gate in self.stateless:
            for entry, score in zip(prepared,
                                    self._call(gate, "score_batch", images, class_names)):
                entry.results[gate.name] = gate.result(score)
        for gate in self.stateful:
            for entry, feature in zip(prepared, self._call(gate, "features", images)):
                entry.features[gate.name] = feature
        return prepared

    def finish(self, image: np.ndarray, class_name: str, prepared: Prepared | None = None,
               *, register: bool = True) -> tuple[bool, dict]:
        """Complete the verdict of one image (stateful gates), count it, register it."""
        results = dict(prepared.results) if prepared is not None else {}
        features = prepared.features if prepared is not None else {}
        for gate in self.gates:
            if gate.name in results:
                continue
            if gate.name in features:
                score = self._call(gate, "score_features", features[gate.name], class_name)
                results[gate.name] = gate.result(score)
            else:
                results[gate.name] = self._call(gate, "check", image, class_name)
        passed = all(r.passed for r in results.values())
        for name, result in results.items():
            stats = self._stats[(class_name, name)]
            stats[0] += 1
            stats[1] += int(result.passed)
        final = self._final[class_name]
        final[0] += 1
        final[1] += int(passed)
        if passed and register:
            for gate in self.stateful:
                if gate.name in features:
                    self._call(gate, "register_features", features[gate.name], class_name)
                else:
                    self._call(gate, "register", image, class_name)
        return passed, {name: results[name].to_dict() for name in results}

    def check(self, image: np.ndarray, class_name: str, *,
              register: bool = True) -> tuple[bool, dict]:
        """Run every gate on one uint8 HxWxC image; return ``(passed, quality)``."""
        return self.finish(image, class_name, None, register=register)

    def register(self, image: np.ndarray, class_name: str) -> None:
        """Remember an accepted image (e.g. from an earlier run) in the stateful gates."""
        self.register_many([image], class_name)

    def register_many(self, images: Sequence[np.ndarray], class_name: str) -> None:
        """:meth:`register` for a batch of one class's images, in order."""
        for gate in self.stateful:
            for feature in self._call(gate, "features", list(images)):
                self._call(gate, "register_features", feature, class_name)

    def acceptance_rates(self) -> dict[str, dict]:
        """``{class: {"checked", "accepted", "rate", "by_gate": {gate: rate}}}`` so far."""
        out = {}
        for class_name, (checked, accepted) in self._final.items():
            by_gate = {gate: round(p / n, 4) for (c, gate), (n, p) in self._stats.items()
                       if c == class_name and n}
            out[class_name] = {"checked": checked, "accepted": accepted,
                               "rate": round(accepted / checked, 4) if checked else None,
                               "by_gate": by_gate}
        return out

    def collapsed(self, *, min_rate: float = COLLAPSE_RATE,
                  min_checked: int = COLLAPSE_MIN_CHECKED) -> list[dict]:
        """Gates whose acceptance of a class fell below ``min_rate``."""
        out = []
        for (class_name, gate), (checked, passed) in sorted(self._stats.items()):
            if checked >= min_checked and passed / checked < min_rate:
                out.append({"class": class_name, "gate": gate, "checked": checked,
                            "passed": passed, "rate": passed / checked})
        return out

    def new_collapse_messages(self) -> list[str]:
        """:meth:`collapse_message` of each gate whose acceptance of a class has collapsed
        since the last call: once per class and gate, for the caller to warn with."""
        messages = []
        for item in self.collapsed():
            key = (item["class"], item["gate"])
            if key not in self._warned:
                self._warned.add(key)
                messages.append(self.collapse_message(item))
        return messages

    def collapse_message(self, item: dict) -> str:
        """:func:`collapse_message` for an entry of :meth:`collapsed`, with the evidence the
        chain has: the structure gate's acceptance of the same class and, for the verifier,
        its acceptance of the class's real images."""
        class_name, gate = item["class"], item["gate"]
        structure = self._stats.get((class_name, "structure"))
        structure_rate = structure[1] / structure[0] if structure and structure[0] else None
        real_pass_rate = None
        if gate == "verifier" and self.reference_images is not None:
            real = list(self.reference_images(class_name))
            if real:
                verifier = self.get("verifier")
                scores = verifier.score_batch(real, [class_name] * len(real))
                real_pass_rate = float(np.mean([verifier.result(v).passed for v in scores]))
        return collapse_message(class_name, gate, item["passed"], item["checked"],
                                structure_rate=structure_rate, real_pass_rate=real_pass_rate)

    def describe(self) -> list[dict]:
        return [g.describe() for g in self.gates]


def collapse_message(class_name: str, gate: str, passed: int, checked: int, *,
                     structure_rate: float | None = None,
                     real_pass_rate: float | None = None) -> str:
    """The warning for a gate that rejects nearly every candidate of a class.

    A verifier collapse has two opposite causes; the evidence at hand decides the hint:
    ``structure_rate`` (the structure gate's acceptance of the same candidates: noise means
    the generator is at fault) and ``real_pass_rate`` (the verifier's acceptance of the
    class's real images: rejecting those too means it learned the imbalance).
    """
    hint = {
        "verifier": "the reference classifier may have learned the class imbalance (train it "
                    "with balanced sampling, or lower `verify_threshold`), or the generator "
                    "does not make this class faithfully",
        "structure": "the generator makes noise for this class: train it longer",
        "blur": "the images are flat or blurry at this size: lower `blur_min` or check the "
                "generator",
        "phash": "the generator repeats itself (mode collapse) or copies real images: raise "
                 "guidance diversity, train longer, or lower `phash_max`",
    }.get(gate, "check the gate's threshold")
    if gate == "verifier" and structure_rate is not None and structure_rate < COLLAPSE_RATE:
        hint = (f"the structure gate passed only {structure_rate:.0%} of them too: the "
                "generator makes noise for this class, not the reference classifier's fault; "
                "train the generator longer")
    elif gate == "verifier" and real_pass_rate is not None:
        if real_pass_rate < 0.5:
            hint = (f"the reference classifier also rejects {1 - real_pass_rate:.0%} of the "
                    "class's real images: it has learned the class imbalance; retrain it "
                    "with balanced sampling, or lower `verify_threshold`")
        else:
            hint = (f"the reference classifier accepts {real_pass_rate:.0%} of the class's "
                    "real images (its own training images, an optimistic figure), so the "
                    "generator does not make this class faithfully: train it longer or raise "
                    "`guidance_scale`")
    return (f"ACCEPTANCE COLLAPSE: gate {gate!r} accepted only {passed} of {checked} "
            f"candidates of class {class_name!r} ({passed / checked:.0%}); {hint}")


def real_image_loader(paths_by_class: Mapping[str, Sequence[str]], *, image_size,
                      color_mode: str) -> Callable[[str], Iterable[np.ndarray]]:
    """``reference_images`` for :func:`build_gate_chain`: a class's real images, read from
    ``paths_by_class`` at the output size and colour mode, one by one as a gate asks."""
    from genaug.data import load_image

    def reference_images(class_name):
        for path in paths_by_class.get(class_name, ()):
            yield load_image(path, image_size=image_size, color_mode=color_mode)

    return reference_images


#: ``select_method`` values of :class:`GateSpec`.
SELECT_METHODS = ("feature-distance", "class-margin")


@dataclass(frozen=True)
class GateFlag(RecipeFlag):
    """The ``genaug generate`` flag of a :class:`GateSpec` field.

    A :class:`~genaug.sampling.RecipeFlag` (``name``, ``help``, ``kind`` and bounds) whose
    ``kind`` may also be ``Path``: a file path, which the field takes as it is.

    Attributes
    ----------
    choices : tuple of str
        With ``kind=str``: the values the flag takes.
    off : float, optional
        The flag's value that leaves the gate out (the field's None): the command line has
        no None.
    field_default : bool, default True
        Whether the flag's default is the field's (shown in ``--help``). False: None, so that
        a command can tell whether the flag was given; not given, the field keeps its default.
    old_names : tuple of str
        Spellings the flag had before, still accepted for one release (not in ``--help``).
    """

    choices: tuple[str, ...] = ()
    off: float | None = None
    field_default: bool = True
    old_names: tuple[str, ...] = ()


def _flag(name: str, help: str, **settings) -> dict:
    return {"flag": GateFlag(name, help, **settings)}


@dataclass(frozen=True)
class GateSpec:
    """The settings of the standard gate chain, validated once; :meth:`build` makes the chain.

    The chain is blur, structure, pixel statistics (when asked), verifier and feature
    selection (when their models are given), extra gates, pHash. ``generate_cache``, the live
    producer and ``genaug generate`` all take one of these. A field's :class:`GateFlag` (its
    metadata ``"flag"``) is its ``genaug generate`` option: a new setting needs no
    command-line code.

    Parameters
    ----------
    blur_min : float or None, default 60
        Minimum Laplacian variance; None leaves the blur gate out.
    structure_min : float or None, default 0.5
        Minimum neighbour-pixel correlation (rejects noise); None leaves the gate out.
    phash_max : int or None, default 4
        Largest pHash distance counted as a near-duplicate; None leaves the gate out.
    verify_model : keras model, path-like or VerifierGate, optional
        The reference classifier (trained on the real data with balanced sampling).
    verify_threshold : float, default DEFAULT_VERIFY_THRESHOLD
        Smallest probability of the intended class that the verifier keeps.
    select_model : path-like, FeatureExtractor, FeatureDistanceGate or ClassMarginGate, optional
        A classifier trained with balanced sampling whose features select, against the
        real training images.
    select_method : {"feature-distance", "class-margin"}, default "feature-distance"
        How ``select_model``'s features select: :class:`FeatureDistanceGate` (within
        ``select_max_ratio`` class radii) or :class:`ClassMarginGate` (its own class ranks
        first; needs the class names).
    select_max_ratio : float, default 2.0
        Largest distance to the class centre, in class radii, that the feature-distance
        gate keeps (2: the "in" and "near" bands; 1: "in" only).
    pixel_statistics : bool, default False
        Add :class:`PixelStatisticsGate` (background level and intensity histogram against
        the real training images). Off by default: its tolerances are not measured yet.
    extra_gates : sequence of QualityGate
        User gates (e.g. a single-face check), kept as a tuple.
    """

    blur_min: float | None = field(default=60.0, metadata=_flag(
        "--blur-min", "Minimum Laplacian variance (0 turns the gate off).", low=0, off=0))
    structure_min: float | None = field(default=0.5, metadata=_flag(
        "--structure-min", "Minimum neighbour-pixel correlation; rejects noise (0 turns it "
        "off).", low=0, high=1, off=0))
    phash_max: int | None = field(default=4, metadata=_flag(
        "--phash-max", "Largest pHash distance counted as a near-duplicate (-1 turns it off).",
        kind=int, low=-1, high=64, off=-1))
    verify_model: object = field(default=None, metadata=_flag(
        "--verify-model", "Reference classifier (.keras) trained on the real data with "
        "balanced sampling; enables the verification gate.", kind=Path))
    verify_threshold: float = field(default=DEFAULT_VERIFY_THRESHOLD, metadata=_flag(
        "--verify-threshold", "Smallest probability of the intended class that the "
        "verifier keeps.", low=0, high=1))
    select_model: object = field(default=None, metadata=_flag(
        "--select-model", "Classifier (.keras, trained with --balanced) whose features "
        "--synthetic-select uses.", kind=Path))
    # Not given, the command can refuse --select-model alone.
    select_method: str = field(default="feature-distance", metadata=_flag(
        "--synthetic-select", "Feature-space gate (needs --select-model): feature-distance "
        "keeps images within --select-max-ratio class radii of their class's real images; "
        "class-margin only those whose own class ranks first (the rule of genaug train "
        "--synthetic-select class-margin, docs/generation.md).", kind=str,
        choices=SELECT_METHODS, field_default=False, old_names=("--select",)))
    select_max_ratio: float = field(default=2.0, metadata=_flag(
        "--select-max-ratio", "Largest distance to the class centre, in class radii (2: the "
        "in and near bands; 1: in only).", low=0, low_open=True))
    pixel_statistics: bool = field(default=False, metadata=_flag(
        "--pixel-statistics", "Gate on the class's real pixel statistics: reject an image "
        "whose border mean (background level) or intensity histogram lies outside the spread "
        "of the class's real training images (off by default: not yet measured; "
        "docs/generation.md).", kind=bool))
    # Objects only (a command line names them its own way: genaug generate --gate).
    extra_gates: Sequence[QualityGate] = ()

    def __post_init__(self):
        object.__setattr__(self, "extra_gates", tuple(self.extra_gates))
        if self.select_method not in SELECT_METHODS:
            raise ConfigError(f"`select_method` must be one of {', '.join(SELECT_METHODS)}, "
                              f"got {self.select_method!r}")

    @classmethod
    def flags(cls) -> dict[str, GateFlag]:
        """The :class:`GateFlag` of every field that has one, by field name, in field order."""
        return {f.name: f.metadata["flag"] for f in fields(cls) if "flag" in f.metadata}

    @classmethod
    def defaults(cls) -> dict:
        """Every field's default, by field name."""
        return {f.name: f.default for f in fields(cls)}

    @property
    def uses_models(self) -> bool:
        """Whether a gate runs a classifier (the verifier or the feature selection)."""
        return bool(self.verify_model) or bool(self.select_model)

    def build(self, *, class_names: Sequence[str] | None = None,
              reference_images: Callable[[str], Iterable[np.ndarray]] | None = None,
              training_images: Callable[[str], Iterable[np.ndarray]] | None = None
              ) -> GateChain:
        """The chain of these settings.

        Parameters
        ----------
        class_names : sequence of str, optional
            The dataset's classes (for a verification model that names none).
        reference_images : callable, optional
            ``reference_images(class_name)`` -> the real images of the class for the pHash
            gate, already at the output size and colour mode.
        training_images : callable, optional
            The same for the class's real **training** images only, which the selection and
            pixel-statistics gates measure against (default: ``reference_images``).
        """
        training_images = training_images or reference_images
        gates: list[QualityGate] = []
        if self.blur_min is not None:
            gates.append(BlurGate(threshold=self.blur_min))
        if self.structure_min is not None:
            gates.append(StructureGate(threshold=self.structure_min))
        if self.pixel_statistics:
            gates.append(PixelStatisticsGate(reference_images=training_images))
        if self.verify_model is not None:
            verifier = (self.verify_model if isinstance(self.verify_model, VerifierGate)
                        else VerifierGate(self.verify_model, threshold=self.verify_threshold))
            if class_names is not None:
                verifier.bind_classes(class_names)
            gates.append(verifier)
        if self.select_model is not None:
            gates.append(_selection_gate(self.select_model, self.select_method,
                                         self.select_max_ratio, class_names, training_images))
        gates.extend(self.extra_gates)
        if self.phash_max is not None:
            gates.append(PHashGate(threshold=self.phash_max, reference_images=reference_images))
        return GateChain(gates, reference_images=reference_images)


def build_gate_chain(*, class_names: Sequence[str] | None = None,
                     reference_images: Callable[[str], Iterable[np.ndarray]] | None = None,
                     training_images: Callable[[str], Iterable[np.ndarray]] | None = None,
                     **settings) -> GateChain:
    """The standard gate chain: ``GateSpec(**settings).build(...)``.

    ``settings`` are the fields of :class:`GateSpec` (``blur_min``, ``phash_max``,
    ``verify_model``, ...); the other arguments are those of :meth:`GateSpec.build`.
    """
    return GateSpec(**settings).build(class_names=class_names,
                                      reference_images=reference_images,
                                      training_images=training_images)


def _selection_gate(model, method: str, max_ratio: float, class_names,
                    training_images) -> QualityGate:
    """The feature-space gate of ``select_model`` (a ready gate is used as it is)."""
    if isinstance(model, (FeatureDistanceGate, ClassMarginGate)):
        return model
    if method == "feature-distance":
        return FeatureDistanceGate(model, reference_images=training_images,
                                   threshold=max_ratio)
    if class_names is None:
        raise ConfigError("the class-margin gate needs `class_names`")
    return ClassMarginGate(model, reference_images=training_images, class_names=class_names)
