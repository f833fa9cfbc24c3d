"""Paired per-seed differences between two training arms, and an honest verdict on them.

Two arms run with the same seeds see the same data split, initialisation seed and test set, so
the per-seed difference ``arm - reference`` removes most of the seed-to-seed noise. With only a
handful of seeds the verdict stays "no clear difference" unless the evidence is strong: the 95 %
paired t-interval of the mean difference must exclude 0 *and* the mean difference must exceed a
small practical threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

HELPED = "helped"
HURT = "hurt"
UNCLEAR = "no clear difference"

#: Smallest mean difference (in metric units, 0.01 = 1 point) that counts as a real effect.
DEFAULT_THRESHOLD = 0.01


@dataclass(frozen=True)
class PairedDifference:
    """Statistics of the paired differences ``arm - reference`` over seeds.

    Attributes
    ----------
    n : int
        Number of seeds where both arms finished.
    seeds : list
        Those seeds.
    differences : list of float
        ``arm - reference`` per seed.
    mean, std : float or None
        Mean and sample standard deviation (ddof=1) of the differences (std None when n < 2).
    ci_low, ci_high : float or None
        Two-sided paired t-interval of the mean difference at ``confidence`` (None when n < 2).
    confidence : float
    positive, negative : int
        Seeds where the arm was better / worse than the reference.
    threshold : float
        Practical-significance threshold used for the verdict.
    outcome : {"helped", "hurt", "no clear difference"}
    reason : str
        One sentence explaining the outcome.
    """

    n: int
    seeds: list
    differences: list
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    positive: int
    negative: int
    threshold: float
    outcome: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def paired_difference(
    arm: Sequence[float],
    reference: Sequence[float],
    *,
    seeds: Sequence | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    confidence: float = 0.95,
) -> PairedDifference:
    """Compare two arms seed by seed.

    Parameters
    ----------
    arm, reference : sequence of float
        One value per seed, in the same seed order. ``None`` or NaN entries (a failed run) drop
        that seed from both.
    seeds : sequence, optional
        Seed labels, for the record; defaults to ``0..n-1``.
    threshold : float
        The mean difference must exceed this in absolute value to count as an effect.
    confidence : float
        Level of the paired t-interval.

    Returns
    -------
    PairedDifference
    """
    if len(arm) != len(reference):
        raise ValueError("arm and reference need one value per seed each")
    seeds = list(range(len(arm))) if seeds is None else list(seeds)
    kept = [
        (s, float(a), float(r))
        for s, a, r in zip(seeds, arm, reference, strict=True)
        if a is not None and r is not None and math.isfinite(float(a)) and math.isfinite(float(r))
    ]
    diffs = np.asarray([a - r for _, a, r in kept], dtype=np.float64)
    n = len(diffs)
    mean = float(diffs.mean()) if n else None
    std = float(diffs.std(ddof=1)) if n >= 2 else None
    ci_low = ci_high = None
    if n >= 2:
        from scipy import stats

        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        ci_low, ci_high = mean - half, mean + half
    positive, negative = int((diffs > 0).sum()), int((diffs < 0).sum())
    outcome, reason = _verdict(n, mean, ci_low, ci_high, positive, negative, threshold,
                               confidence)
    return PairedDifference(
        n=n, seeds=[s for s, _, _ in kept], differences=diffs.tolist(), mean=mean, std=std,
        ci_low=ci_low, ci_high=ci_high, confidence=confidence, positive=positive,
        negative=negative, threshold=threshold, outcome=outcome, reason=reason,
    )


def _verdict(n, mean, ci_low, ci_high, positive, negative, threshold, confidence):
    level = f"{confidence:.0%}"
    if n == 0:
        return UNCLEAR, "no seed where both arms finished"
    if n == 1:
        return UNCLEAR, "a single seed cannot separate an effect from seed noise"
    tied = n - positive - negative
    agree = f"better at {positive}, worse at {negative}" + (f", tied at {tied}" if tied else "") \
        + f" of {n} seeds"
    if ci_low <= 0.0 <= ci_high:
        return UNCLEAR, f"the {level} paired interval includes 0; {agree}"
    if abs(mean) < threshold:
        return UNCLEAR, (f"the mean difference {mean:+.3f} is below the {threshold:.3f} "
                         f"threshold; {agree}")
    outcome = HELPED if mean > 0 else HURT
    return outcome, f"the {level} paired interval excludes 0; {agree}"


def describe(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation and count of the finite values in ``values``."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    return {
        "mean": float(np.mean(finite)) if n else None,
        "std": float(np.std(finite, ddof=1)) if n >= 2 else None,
        "n": n,
        "values": finite,
    }


def verdict_sentence(subject: str, result: PairedDifference, *, metric: str) -> str:
    """Plain-words verdict, e.g. ``"synthetic data hurt (balanced accuracy -0.021 ...)"``."""
    if result.mean is None:
        return f"no clear difference at these seeds ({result.reason})"
    numbers = f"{metric} {result.mean:+.3f}"
    if result.ci_low is not None:
        numbers += f", {result.confidence:.0%} CI [{result.ci_low:+.3f}, {result.ci_high:+.3f}]"
    numbers += f", n={result.n}"
    if result.outcome == UNCLEAR:
        return f"no clear difference at these seeds ({numbers}; {result.reason})"
    return f"{subject} {result.outcome} ({numbers})"
