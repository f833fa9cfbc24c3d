"""Pixel-statistics sanity check: is a generated batch image-like, compared with the real data?

A broken sampler (e.g. DPM-Solver++ on a cosine schedule without ``lambda_min_clipped``)
returns saturated noise. Noise differs from real images in three cheap statistics: the mean,
the spread, and above all the correlation of neighbouring pixels (about 0 for noise, 0.7-0.95
for photographs, drawings and scans). The check runs on a batch before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from genaug.exceptions import GenerationError
from genaug.generation._image_metrics import pearson_rows


def pixel_statistics(images) -> dict:
    """Mean, standard deviation and neighbour correlation of uint8 images, in [0, 1] units.

    Parameters
    ----------
    images : ndarray (N, H, W, C) uint8 or a sequence of HxWxC arrays of one size
    """
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.ndim == 3:
        x = x[None]
    if x.size == 0:
        return {"count": 0, "mean": 0.0, "second_moment": 0.0, "std": 0.0, "neighbour_corr": 1.0}
    # all images' pixel pairs pooled into one row
    a = np.concatenate([x[:, :, :-1].ravel(), x[:, :-1, :].ravel()])
    b = np.concatenate([x[:, :, 1:].ravel(), x[:, 1:, :].ravel()])
    corr = float(pearson_rows(a[None], b[None])[0])
    mean = float(x.mean())
    return {"count": int(len(x)), "mean": mean, "second_moment": float((x ** 2).mean()),
            "std": float(x.std()), "neighbour_corr": corr}


def class_pixel_statistics(images, labels, class_names: Sequence[str]) -> dict:
    """``{"all": stats, "per_class": {name: stats}}`` for the training images."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    per_class = {}
    for label, name in enumerate(class_names):
        members = images[labels == label]
        if len(members):
            per_class[name] = pixel_statistics(members[:512])
    picks = np.linspace(0, len(images) - 1, num=min(len(images), 2048)).astype(int)
    return {"all": pixel_statistics(images[picks]), "per_class": per_class}


def mixture_statistics(reference: Mapping, class_names: Sequence[str]) -> dict:
    """The statistics expected of a batch with these classes, from per-class statistics."""
    per_class = reference.get("per_class") or {}
    known = [per_class[c] for c in class_names if c in per_class]
    if not known:
        return reference["all"]
    mean = float(np.mean([s["mean"] for s in known]))
    second = float(np.mean([s["second_moment"] for s in known]))
    return {"mean": mean, "std": math.sqrt(max(second - mean ** 2, 0.0)),
            "neighbour_corr": float(np.mean([s["neighbour_corr"] for s in known]))}


def check_pixel_statistics(images, reference: Mapping, *, class_names: Sequence[str] = (),
                           mean_tolerance: float = 0.25, std_factor: float = 2.0,
                           corr_drop: float = 0.4) -> dict:
    """Raise :class:`GenerationError` when a generated batch does not look like the real data.

    Parameters
    ----------
    images : ndarray (N, H, W, C) uint8
        The generated batch.
    reference : mapping
        Output of :func:`class_pixel_statistics` (or a single :func:`pixel_statistics` dict).
    class_names : sequence of str
        Class of each image (to compare with the right per-class statistics).

    Returns
    -------
    dict
        The batch statistics, the reference and ``passed`` (always True when it returns).
    """
    expected = (mixture_statistics(reference, list(class_names)) if "all" in reference
                else dict(reference))
    got = pixel_statistics(images)
    problems = []
    if abs(got["mean"] - expected["mean"]) > mean_tolerance:
        problems.append(f"mean {got['mean']:.2f} vs {expected['mean']:.2f}")
    if got["std"] > std_factor * expected["std"] + 0.05:
        problems.append(f"spread {got['std']:.2f} vs {expected['std']:.2f}")
    if expected["std"] > 0.02 and got["std"] < 0.25 * expected["std"]:
        problems.append(f"spread {got['std']:.3f} vs {expected['std']:.2f} (blank output)")
    if expected["neighbour_corr"] > 0.5 and (
            got["neighbour_corr"] < expected["neighbour_corr"] - corr_drop):
        problems.append(f"neighbour correlation {got['neighbour_corr']:.2f} vs "
                        f"{expected['neighbour_corr']:.2f} (noise-like)")
    if problems:
        raise GenerationError(
            "the generated batch does not look like the real data (" + "; ".join(problems)
            + "); nothing was written. The generator is undertrained or the sampler is "
            "misconfigured (train longer, try `sampler=ddim`, or pass `pixel_check=False` to "
            "write such images anyway)"
        )
    return {"batch": got, "reference": expected, "passed": True}
