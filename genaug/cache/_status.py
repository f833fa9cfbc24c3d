"""The composition part of a ``status.json``: what a training set holds, per class and split.

``genaug train`` (the images a run trained on) and ``genaug export`` (the images an exported
dataset holds) write the same fields, so ``genaug report`` and a reader of either file see one
layout.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from genaug.data import DatasetSplits


def composition_status(splits: DatasetSplits, synthetic_counts, *, cache=None,
                       excluded_leakage: int = 0) -> dict:
    """The composition fields of a ``status.json``.

    Parameters
    ----------
    splits : DatasetSplits
        The real images: ``original`` counts its training part per class.
    synthetic_counts : sequence of int
        Distinct synthetic images per class, in ``splits.class_names`` order (training only).
    cache : SyntheticCache, optional
        Where the synthetic images come from: its generators, prompt-set hashes and quality
        thresholds are recorded.
    excluded_leakage : int, default 0
        Synthetic images left out because they derive from a validation or test image.

    Returns
    -------
    dict
        ``total_images``, ``original``, ``synthetic``, ``synthetic_share_of_images``,
        ``per_class`` (``original``, ``synthetic``, ``total``, ``synthetic_share_of_images``),
        ``per_split`` (``train``, ``validation``, ``test``: ``original`` and ``synthetic``
        per class), ``excluded_for_leakage``, ``generators``, ``prompt_set_sha256``,
        ``quality_thresholds`` and ``created``.
    """
    names = splits.class_names
    original_counts = splits.train.counts().tolist()
    synthetic_counts = np.asarray(synthetic_counts, dtype=np.int64).tolist()
    per_class = {}
    for name, original, synthetic in zip(names, original_counts, synthetic_counts):
        total = original + synthetic
        per_class[name] = {"original": original, "synthetic": synthetic, "total": total,
                           "synthetic_share_of_images": synthetic / total if total else 0.0}
    original, synthetic = sum(original_counts), sum(synthetic_counts)

    def counts(part) -> dict:
        return dict(zip(names, part.counts().tolist())) if part is not None else {}

    provenance = cache.provenance() if cache is not None else {
        "generators": [], "prompt_set_sha256": [], "quality_thresholds": {}}
    return {
        "total_images": original + synthetic,
        "original": original,
        "synthetic": synthetic,
        "synthetic_share_of_images": (synthetic / (original + synthetic)
                                      if original + synthetic else 0.0),
        "per_class": per_class,
        "per_split": {
            "train": {"original": counts(splits.train),
                      "synthetic": dict(zip(names, synthetic_counts))},
            "validation": {"original": counts(splits.validation), "synthetic": {}},
            "test": {"original": counts(splits.test), "synthetic": {}},
        },
        "excluded_for_leakage": int(excluded_leakage),
        "generators": provenance["generators"],
        "prompt_set_sha256": provenance["prompt_set_sha256"],
        "quality_thresholds": provenance["quality_thresholds"],
        "created": datetime.now(timezone.utc).isoformat(),
    }
