"""``status.json``: what a training set holds, per class and split, and where it came from.

``genaug train`` (the images a run trained on), a library user's run
(:func:`genaug.loaders.write_training_status`) and ``genaug export`` (the images an exported
dataset holds) write it through :class:`TrainingStatus`; ``genaug report`` reads it back the
same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from genaug.exceptions import DatasetError

#: The file name of a training set's status, in a run's outputs and an export.
STATUS_FILE = "status.json"

#: The keys of ``status.json`` that :class:`TrainingStatus` reads into its own fields; every
#: other key is one of the producer's :attr:`TrainingStatus.details`.
_COUNT_KEYS = ("total_images", "original", "synthetic", "synthetic_share_of_images",
               "per_class", "per_split")
_PROVENANCE_KEYS = ("generators", "prompt_set_sha256", "quality_thresholds")
_FIELD_KEYS = ("excluded_for_leakage", "created", "synthetic_cap", "synthetic_pool_cap",
               "synthetic_only_classes", "seed", "skipped_files")


def _counts(values, length: int) -> tuple[int, ...]:
    counts = tuple(int(v) for v in np.asarray(values, dtype=np.int64).reshape(-1))
    if len(counts) != length:
        raise DatasetError(f"status: {len(counts)} counts for {length} classes")
    return counts


@dataclass(frozen=True)
class TrainingStatus:
    """The content of ``status.json``, validated once; :meth:`to_json` and :meth:`from_json`
    convert it.

    Attributes
    ----------
    class_names : tuple of str
    original : tuple of int
        Real training images per class.
    synthetic : tuple of int
        Distinct synthetic training images per class (those a run drew over all its epochs,
        or those an export holds).
    validation, test : tuple of int or None
        Real images per class of the held-out splits; None where there is no such split.
    share_of_draws : tuple of float or None
        Per class, the largest share over a run's epochs of its draws that were synthetic
        (what ``synthetic_cap`` bounds); None for an export.
    excluded_for_leakage : int
        Synthetic images left out because they derive from a validation or test image.
    provenance : dict
        ``generators``, ``prompt_set_sha256`` and ``quality_thresholds`` of the cache.
    created : str or None
        When the status was made (ISO 8601, UTC).
    synthetic_cap, synthetic_pool_cap : float, dict or None
        The caps on the share of a class's draws per epoch and of its distinct images.
    synthetic_only_classes : tuple of str
        Classes with no real training image.
    seed : int or None
    skipped_files : tuple of dict
        Files left out while indexing, with their ``path`` and ``reason``.
    details : dict
        What the producer adds, in its order: a run's image format, schedule, fill, selection
        and allocation; an export's plan, links and manifests.
    """

    class_names: tuple[str, ...]
    original: tuple[int, ...]
    synthetic: tuple[int, ...]
    validation: tuple[int, ...] | None = None
    test: tuple[int, ...] | None = None
    share_of_draws: tuple[float, ...] | None = None
    excluded_for_leakage: int = 0
    provenance: Mapping = field(default_factory=lambda: {
        "generators": [], "prompt_set_sha256": [], "quality_thresholds": {}})
    created: str | None = None
    synthetic_cap: object = None
    synthetic_pool_cap: float | None = None
    synthetic_only_classes: tuple[str, ...] = ()
    seed: int | None = None
    skipped_files: tuple[Mapping, ...] = ()
    details: Mapping = field(default_factory=dict)

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        k = len(self.class_names)
        set_("class_names", tuple(str(n) for n in self.class_names))
        for name in ("original", "synthetic", "validation", "test"):
            if getattr(self, name) is not None:
                set_(name, _counts(getattr(self, name), k))
        if self.share_of_draws is not None:
            set_("share_of_draws", tuple(float(v) for v in self.share_of_draws))
        set_("excluded_for_leakage", int(self.excluded_for_leakage))
        set_("synthetic_only_classes", tuple(self.synthetic_only_classes))
        set_("skipped_files", tuple(dict(item) for item in self.skipped_files))
        set_("details", dict(self.details))

    @classmethod
    def from_counts(cls, class_names: Sequence[str], *, original, synthetic, validation=None,
                    test=None, cache=None, **fields) -> TrainingStatus:
        """A status made now, its provenance from ``cache`` (a
        :class:`~genaug.cache.SyntheticCache`: its generators, prompt-set hashes and quality
        thresholds); ``fields`` are the other attributes."""
        provenance = cache.provenance() if cache is not None else {
            "generators": [], "prompt_set_sha256": [], "quality_thresholds": {}}
        return cls(tuple(class_names), original, synthetic, validation, test,
                   provenance={key: provenance[key] for key in _PROVENANCE_KEYS},
                   created=datetime.now(timezone.utc).isoformat(), **fields)

    @property
    def synthetic_share_of_images(self) -> tuple[float, ...]:
        """Per class: distinct synthetic images / (real + distinct synthetic) images (what
        ``synthetic_pool_cap`` bounds)."""
        return tuple(s / (o + s) if o + s else 0.0 for o, s in zip(self.original, self.synthetic))

    def to_json(self) -> dict:
        """The JSON object of ``status.json``."""
        names = self.class_names
        original, synthetic = sum(self.original), sum(self.synthetic)
        per_class = {}
        for c, name in enumerate(names):
            row = {"original": self.original[c], "synthetic": self.synthetic[c],
                   "total": self.original[c] + self.synthetic[c],
                   "synthetic_share_of_images": self.synthetic_share_of_images[c]}
            if self.share_of_draws is not None:
                row["synthetic_share_of_draws"] = self.share_of_draws[c]
            per_class[name] = row

        def split(counts) -> dict:
            return dict(zip(names, counts)) if counts is not None else {}

        return {
            "total_images": original + synthetic,
            "original": original,
            "synthetic": synthetic,
            "synthetic_share_of_images": (synthetic / (original + synthetic)
                                          if original + synthetic else 0.0),
            "per_class": per_class,
            "per_split": {
                "train": {"original": split(self.original), "synthetic": split(self.synthetic)},
                "validation": {"original": split(self.validation), "synthetic": {}},
                "test": {"original": split(self.test), "synthetic": {}},
            },
            "excluded_for_leakage": self.excluded_for_leakage,
            **{key: self.provenance[key] for key in _PROVENANCE_KEYS},
            "created": self.created,
            "synthetic_cap": self.synthetic_cap,
            "synthetic_pool_cap": self.synthetic_pool_cap,
            "synthetic_only_classes": list(self.synthetic_only_classes),
            "seed": self.seed,
            "skipped_files": [dict(item) for item in self.skipped_files],
            **self.details,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> TrainingStatus:
        """Read a ``status.json`` object: its ``per_class`` counts are required; a held-out
        split it does not count is None.

        Raises
        ------
        DatasetError
            When ``per_class`` is missing or not counts per class.
        """
        per_class = data.get("per_class") if isinstance(data, Mapping) else None
        if not isinstance(per_class, Mapping) or not all(
                isinstance(row, Mapping) for row in per_class.values()):
            raise DatasetError("status: no per-class counts")
        names = tuple(per_class)

        def counts(mapping, key=None):
            values = []
            for name in names:
                value = (mapping or {}).get(name, 0)
                value = value.get(key, 0) if key is not None else value
                if not isinstance(value, (int, float)):
                    raise DatasetError(f"status: the count of {name} is not a number")
                values.append(int(value))
            return values

        splits = data.get("per_split") if isinstance(data.get("per_split"), Mapping) else {}

        def held_out(split):
            entry = splits.get(split)
            original = entry.get("original") if isinstance(entry, Mapping) else None
            return counts(original) if original else None

        draws = [row.get("synthetic_share_of_draws") for row in per_class.values()]
        provenance = {key: data.get(key, [] if key != "quality_thresholds" else {})
                      for key in _PROVENANCE_KEYS}
        known = set(_COUNT_KEYS) | set(_PROVENANCE_KEYS) | set(_FIELD_KEYS)
        return cls(names, counts(per_class, "original"), counts(per_class, "synthetic"),
                   held_out("validation"), held_out("test"),
                   share_of_draws=(draws if all(isinstance(v, (int, float)) for v in draws)
                                   else None),
                   excluded_for_leakage=data.get("excluded_for_leakage") or 0,
                   provenance=provenance, created=data.get("created"),
                   synthetic_cap=data.get("synthetic_cap"),
                   synthetic_pool_cap=data.get("synthetic_pool_cap"),
                   synthetic_only_classes=data.get("synthetic_only_classes") or (),
                   seed=data.get("seed"), skipped_files=data.get("skipped_files") or (),
                   details={k: v for k, v in data.items() if k not in known})
