"""Feature-space selection of synthetic images: keep those near their class's real images.

DiffuLT (NeurIPS 2024) embeds real and synthetic images with a feature extractor trained with
balanced sampling and, per class, measures each synthetic image's distance to the class
centre (the mean real feature) against the real images' own radius ``d_f``: images within
``d_f`` are "in distribution", those within ``2 d_f`` "approximately in distribution" (the
ones that help most) and the rest are dropped. Pure numpy: the features come from elsewhere
(``genaug.classifier.FeatureExtractor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from genaug.exceptions import ConfigError

#: The bands, by a synthetic image's distance ``d`` to its class centre: ``in`` d <= d_f,
#: ``near`` d_f < d <= 2 d_f, ``far`` d > 2 d_f.
BANDS = ("in", "near", "far")
DEFAULT_KEEP_BANDS = ("in", "near")
#: A class needs this many real images for a centre and a radius.
MIN_REAL_IMAGES = 2


def check_keep_bands(keep_bands) -> tuple[str, ...]:
    """Validate ``keep_bands``: a non-empty subset of :data:`BANDS` (or ``"in,near"``)."""
    if isinstance(keep_bands, str):
        keep_bands = [b.strip() for b in keep_bands.split(",") if b.strip()]
    bands = tuple(dict.fromkeys(str(b) for b in keep_bands))
    unknown = [b for b in bands if b not in BANDS]
    if unknown or not bands:
        raise ConfigError(f"keep_bands must name some of {', '.join(BANDS)}, "
                          f"got {', '.join(bands) or 'none'}")
    return tuple(b for b in BANDS if b in bands)


@dataclass(frozen=True)
class ClassPrototypes:
    """Per class, the centre of the real features and the real images' radius ``d_f``.

    Attributes
    ----------
    centres : ndarray (K, D)
        Mean real feature per class (NaN for a class with fewer than 2 real images).
    radii : ndarray (K,)
        ``radius_quantile`` quantile of the real images' distances to the centre (NaN where
        there is no centre).
    real_counts : ndarray (K,)
    radius_quantile : float
    """

    centres: np.ndarray
    radii: np.ndarray
    real_counts: np.ndarray
    radius_quantile: float

    @classmethod
    def fit(cls, features, labels, *, num_classes: int,
            radius_quantile: float = 0.95) -> ClassPrototypes:
        """Centres and radii from real ``features`` (N, D) and their ``labels`` (N,)."""
        features, labels = _check_features(features, labels, name="real")
        if not 0.0 < float(radius_quantile) <= 1.0:
            raise ConfigError(f"radius_quantile must be in (0, 1], got {radius_quantile}")
        dim = features.shape[1]
        centres = np.full((num_classes, dim), np.nan)
        radii = np.full(num_classes, np.nan)
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        for c in np.flatnonzero(counts >= MIN_REAL_IMAGES):
            members = features[labels == c]
            centres[c] = members.mean(axis=0)
            distances = np.linalg.norm(members - centres[c], axis=1)
            radii[c] = float(np.quantile(distances, float(radius_quantile)))
        return cls(centres=centres, radii=radii, real_counts=counts.astype(np.int64),
                   radius_quantile=float(radius_quantile))

    def ratios(self, features, labels) -> np.ndarray:
        """Each image's distance to its class centre over the class radius (``d / d_f``);
        NaN for a class without a centre. A radius of 0 (identical real features) makes any
        other distance infinite."""
        features, labels = _check_features(features, labels, name="synthetic",
                                           dimension=self.centres.shape[1])
        if len(labels) and labels.max() >= len(self.radii):
            raise ConfigError(f"a synthetic label ({labels.max()}) is not one of the "
                              f"{len(self.radii)} classes")
        distances = np.linalg.norm(features - self.centres[labels], axis=1)
        radii = self.radii[labels]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(distances == 0, 0.0, distances / radii)


def bands_of(ratios) -> np.ndarray:
    """Band index (into :data:`BANDS`) of each ``d / d_f``; -1 for NaN (no centre)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    bands = np.where(ratios <= 1.0, 0, np.where(ratios <= 2.0, 1, 2))
    return np.where(np.isnan(ratios), -1, bands)


@dataclass(frozen=True)
class _Admission:
    """What both selections share: which synthetic images are kept, and the counts."""

    keep: np.ndarray

    @property
    def kept(self) -> int:
        return int(self.keep.sum())

    @property
    def dropped(self) -> int:
        return int(len(self.keep) - self.keep.sum())


@dataclass(frozen=True)
class FeatureSelection(_Admission):
    """The outcome of :func:`select_by_feature_distance`.

    Attributes
    ----------
    keep : ndarray of bool (M,)
        Which synthetic images are kept.
    bands : ndarray of int (M,)
        Band index (into :data:`BANDS`) per synthetic image; -1 where the class had fewer than
        2 real images (kept unexamined).
    ratios : ndarray (M,)
        Distance to the class centre over the class radius.
    per_class : dict
        ``{class: {"real_images", "radius", "in", "near", "far", "kept", "dropped",
        "note"}}``.
    radius_quantile : float
    keep_bands : tuple of str
    """

    bands: np.ndarray
    ratios: np.ndarray
    per_class: dict = field(default_factory=dict)
    radius_quantile: float = 0.95
    keep_bands: tuple[str, ...] = DEFAULT_KEEP_BANDS

    def to_dict(self) -> dict:
        """For ``status.json`` and ``metrics.json``."""
        return {"method": "feature-distance", "radius_quantile": self.radius_quantile,
                "keep_bands": list(self.keep_bands), "kept": self.kept,
                "dropped": self.dropped, "per_class": self.per_class}


def select_by_feature_distance(
    real_features,
    real_labels,
    synthetic_features,
    synthetic_labels,
    *,
    class_names: Sequence[str],
    radius_quantile: float = 0.95,
    keep_bands: Sequence[str] = DEFAULT_KEEP_BANDS,
) -> FeatureSelection:
    """Keep the synthetic images whose feature lies within a band of their class's real images.

    Per class: centre = mean real feature, ``d_f`` = the ``radius_quantile`` quantile of the
    real images' distances to it (1.0: the largest). A synthetic image at distance ``d`` is
    ``in`` (d <= d_f), ``near`` (d_f < d <= 2 d_f) or ``far`` (d > 2 d_f); those in
    ``keep_bands`` are kept. A class with fewer than 2 real images has no radius: its
    synthetic images are all kept, and the result says so.

    Parameters
    ----------
    real_features : array (N, D)
        Features of real **training** images (never validation or test images).
    real_labels : array of int (N,)
    synthetic_features : array (M, D)
    synthetic_labels : array of int (M,)
    class_names : sequence of str
        Class of each label index.
    radius_quantile : float in (0, 1], default 0.95
    keep_bands : sequence of {"in", "near", "far"}, default ("in", "near")

    Returns
    -------
    FeatureSelection

    Examples
    --------
    >>> import numpy as np
    >>> real = np.array([[-1.0, 0], [1, 0], [0, -1], [0, 1]])
    >>> synthetic = np.array([[0.5, 0], [1.5, 0], [3.0, 0]])
    >>> result = select_by_feature_distance(real, [0, 0, 0, 0], synthetic, [0, 0, 0],
    ...                                     class_names=["a"], radius_quantile=1.0)
    >>> result.keep.tolist(), result.per_class["a"]["far"]
    ([True, True, False], 1)
    """
    keep_bands = check_keep_bands(keep_bands)
    names = list(class_names)
    prototypes = ClassPrototypes.fit(real_features, real_labels, num_classes=len(names),
                                     radius_quantile=radius_quantile)
    synthetic_labels = np.asarray(synthetic_labels, dtype=np.int64).reshape(-1)
    ratios = prototypes.ratios(synthetic_features, synthetic_labels)
    bands = bands_of(ratios)
    kept_band = np.isin(bands, [BANDS.index(b) for b in keep_bands])
    keep = (bands == -1) | kept_band
    per_class = {}
    for c, name in enumerate(names):
        mine = synthetic_labels == c
        radius = prototypes.radii[c]
        row = {"real_images": int(prototypes.real_counts[c]),
               "radius": None if np.isnan(radius) else round(float(radius), 6),
               **{band: int((bands[mine] == i).sum()) for i, band in enumerate(BANDS)},
               "kept": int(keep[mine].sum()), "dropped": int((~keep[mine]).sum()),
               "note": None}
        if np.isnan(radius) and mine.any():
            row["note"] = (f"fewer than {MIN_REAL_IMAGES} real images: no centre, all "
                           "synthetic images kept")
        per_class[name] = row
    return FeatureSelection(keep=keep, bands=bands, ratios=ratios, per_class=per_class,
                            radius_quantile=prototypes.radius_quantile, keep_bands=keep_bands)


def _check_features(features, labels, *, name: str, dimension: int | None = None):
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if features.ndim != 2 and not (features.ndim == 1 and len(features) == 0):
        raise ConfigError(f"{name}_features must be 2-D (images, dimensions), got shape "
                          f"{features.shape}")
    features = features.reshape(len(features), -1) if features.ndim == 2 else \
        features.reshape(0, dimension or 0)
    if len(features) != len(labels):
        raise ConfigError(f"{name}_features has {len(features)} rows but {name}_labels "
                          f"{len(labels)}")
    if dimension is not None and len(features) and features.shape[1] != dimension:
        raise ConfigError(f"{name}_features has {features.shape[1]} dimensions, the real "
                          f"features {dimension}")
    if len(labels) and labels.min() < 0:
        raise ConfigError(f"{name}_labels must be non-negative class indices")
    return features, labels


#: A class's radius is raised to at least this fraction of the median class radius, so a
#: rare class whose few real images sit tightly together keeps images only slightly off them.
DEFAULT_RADIUS_FLOOR = 0.5


@dataclass(frozen=True)
class MarginSelection(_Admission):
    """The outcome of :func:`select_by_class_margin`.

    Attributes
    ----------
    keep : ndarray of bool (M,)
        Which synthetic images are admitted.
    nearest : ndarray of int (M,)
        The class whose radius-scaled distance is smallest (-1 where no class has a centre).
    per_class : dict
        ``{class: {"real_images", "radius", "kept", "dropped", "nearer_to"}}``;
        ``nearer_to`` counts the dropped images by the class they lay nearer to.
    radius_floor : float
    """

    nearest: np.ndarray
    per_class: dict = field(default_factory=dict)
    radius_floor: float = DEFAULT_RADIUS_FLOOR

    def to_dict(self) -> dict:
        """For ``status.json`` and ``metrics.json``."""
        return {"method": "class-margin", "radius_floor": self.radius_floor,
                "kept": self.kept, "dropped": self.dropped,
                "per_class": self.per_class}


@dataclass(frozen=True)
class ClassMargins:
    """Every class's centre and floored radius, for asking whether an image's own class ranks
    first. One rule for the train-time selection (:func:`select_by_class_margin`) and the
    generation gate (``genaug.generation.ClassMarginGate``).

    Attributes
    ----------
    prototypes : ClassPrototypes
        The real images' centres and radii.
    radii : ndarray (K,)
        The radii raised to at least ``radius_floor`` times the median radius (NaN where a
        class has no centre).
    radius_floor : float
    """

    prototypes: ClassPrototypes
    radii: np.ndarray
    radius_floor: float

    @classmethod
    def fit(cls, features, labels, *, num_classes: int, radius_quantile: float = 0.95,
            radius_floor: float = DEFAULT_RADIUS_FLOOR) -> ClassMargins:
        """Centres and floored radii from real **training** ``features`` and ``labels``."""
        if not float(radius_floor) >= 0.0:
            raise ConfigError(f"radius_floor must be >= 0, got {radius_floor}")
        prototypes = ClassPrototypes.fit(features, labels, num_classes=num_classes,
                                         radius_quantile=radius_quantile)
        has_centre = ~np.isnan(prototypes.radii)
        radii = prototypes.radii.copy()
        if has_centre.any():
            floor = float(radius_floor) * float(np.median(radii[has_centre]))
            radii[has_centre] = np.maximum(radii[has_centre], floor)
        return cls(prototypes=prototypes, radii=radii, radius_floor=float(radius_floor))

    @property
    def has_centre(self) -> np.ndarray:
        return ~np.isnan(self.radii)

    def margins(self, features, labels) -> tuple[np.ndarray, np.ndarray]:
        """Per image, its radius-scaled distance to its own class over the smallest one to
        another class (admitted when <= 1; 0 when no other class has a centre; NaN when its
        own class has none) and the class whose scaled distance is smallest (-1: none)."""
        features, labels = _check_features(features, labels, name="synthetic",
                                           dimension=self.prototypes.centres.shape[1])
        if len(labels) and labels.max() >= len(self.radii):
            raise ConfigError(f"a synthetic label ({labels.max()}) is not one of the "
                              f"{len(self.radii)} classes")
        if not len(features):
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        distances = np.linalg.norm(features[:, None, :] - self.prototypes.centres[None], axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.where(distances == 0, 0.0, distances / self.radii[None])
        scaled = np.where(self.has_centre[None], scaled, np.inf)
        rows = np.arange(len(labels))
        own = scaled[rows, labels]
        others = scaled.copy()
        others[rows, labels] = np.inf
        nearest_other = others.min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(own == 0, 0.0, own / nearest_other)
        ratios = np.where(np.isinf(own), np.inf, ratios)  # off a class of radius 0
        ratios = np.where(self.has_centre[labels], ratios, np.nan)
        nearest = np.where(self.has_centre.any(), np.argmin(scaled, axis=1), -1)
        return ratios, nearest


def select_by_class_margin(
    real_features,
    real_labels,
    synthetic_features,
    synthetic_labels,
    *,
    class_names: Sequence[str],
    radius_quantile: float = 0.95,
    radius_floor: float = DEFAULT_RADIUS_FLOOR,
) -> MarginSelection:
    """Admit a synthetic image only when its own class ranks first in feature space.

    Each class has a centre and a radius (:class:`ClassPrototypes`); a class's radius is
    raised to at least ``radius_floor`` times the median radius (:class:`ClassMargins`). An
    image is admitted when its distance to its own centre over its own radius is no larger
    than any other class's. A class with fewer than 2 real images has no centre: its images
    are admitted.

    Parameters
    ----------
    real_features : array (N, D)
        Features of real **training** images.
    real_labels : array of int (N,)
    synthetic_features : array (M, D)
    synthetic_labels : array of int (M,)
    class_names : sequence of str
    radius_quantile : float in (0, 1], default 0.95
    radius_floor : float >= 0, default 0.5

    Returns
    -------
    MarginSelection

    Examples
    --------
    >>> import numpy as np
    >>> real = np.array([[0.0, 0], [0.2, 0], [4.0, 0], [4.2, 0]])
    >>> result = select_by_class_margin(real, [0, 0, 1, 1], [[0.5, 0], [3.5, 0]], [0, 0],
    ...                                 class_names=["a", "b"])
    >>> result.keep.tolist()
    [True, False]
    """
    names = list(class_names)
    margins = ClassMargins.fit(real_features, real_labels, num_classes=len(names),
                               radius_quantile=radius_quantile, radius_floor=radius_floor)
    synthetic_labels = np.asarray(synthetic_labels, dtype=np.int64).reshape(-1)
    ratios, nearest = margins.margins(synthetic_features, synthetic_labels)
    keep = ~(ratios > 1.0)  # NaN (no centre of its own) is admitted
    per_class = {}
    for c, name in enumerate(names):
        mine = synthetic_labels == c
        dropped_to = nearest[mine & ~keep]
        per_class[name] = {
            "real_images": int(margins.prototypes.real_counts[c]),
            "radius": None if np.isnan(margins.radii[c]) else round(float(margins.radii[c]), 6),
            "kept": int(keep[mine].sum()), "dropped": int((~keep[mine]).sum()),
            "nearer_to": {names[o]: int((dropped_to == o).sum())
                          for o in np.unique(dropped_to)}}
    return MarginSelection(keep=keep, nearest=nearest, per_class=per_class,
                           radius_floor=margins.radius_floor)
