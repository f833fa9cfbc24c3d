"""Distances between the feature distributions of real and synthetic images: FID and KID.

Both take feature matrices ``(n_samples, n_features)``; which network produced the features is
the caller's business (see :mod:`genaug.evidence._features`). The formulas are the standard
ones, so with Inception-v3 pool features they give the published FID (Heusel et al. 2017) and
KID (Binkowski et al. 2018); with any other feature network the numbers are only comparable
with each other.
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance matrix (ddof=1) of ``features`` (n, d), in float64."""
    features = _as_features(features)
    if len(features) < 2:
        raise ValueError("need at least 2 samples for a covariance")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(
        features.shape[1], features.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, with the matrix square
    root from :func:`scipy.linalg.sqrtm`. When the product is singular (fewer samples than
    feature dimensions) ``eps`` is added to both diagonals, as the reference implementation does.

    Parameters
    ----------
    mu1, mu2 : array_like, shape (d,)
    sigma1, sigma2 : array_like, shape (d, d)
    eps : float
        Diagonal offset used only when the square root is not finite.

    Returns
    -------
    float
        Never negative (round-off is clipped at 0).
    """
    from scipy import linalg

    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two distributions have different feature dimensions")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on singular input; handled just below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off on (nearly) singular covariances gives small imaginary parts; the trace of
        # the real part is the usual answer (pytorch-fid and torchmetrics do the same).
        covmean = covmean.real
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def fid(real_features, synthetic_features) -> float | None:
    """FID between two feature sets; None when either has fewer than 2 samples."""
    real, fake = _as_features(real_features), _as_features(synthetic_features)
    if len(real) < 2 or len(fake) < 2:
        return None
    return frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))


def polynomial_kernel(x, y, *, degree: int = 3, gamma: float | None = None, coef: float = 1.0):
    """``(gamma * x @ y.T + coef) ** degree``; ``gamma`` defaults to ``1 / n_features``."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef) ** degree


def mmd2_unbiased(x, y, *, degree: int = 3, gamma: float | None = None,
                  coef: float = 1.0) -> float:
    """Unbiased estimate of the squared MMD between two equal-sized samples ``x`` and ``y``.

    Uses the polynomial kernel of :func:`polynomial_kernel`; diagonal terms of the within-set
    kernels are left out (Binkowski et al. 2018, eq. 2), so the estimate can be slightly negative
    when the distributions are equal.
    """
    x, y = _as_features(x), _as_features(y)
    m = len(x)
    if len(y) != m or m < 2:
        raise ValueError("need two samples of the same size, at least 2")
    k_xx = polynomial_kernel(x, x, degree=degree, gamma=gamma, coef=coef)
    k_yy = polynomial_kernel(y, y, degree=degree, gamma=gamma, coef=coef)
    k_xy = polynomial_kernel(x, y, degree=degree, gamma=gamma, coef=coef)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(
    real_features,
    synthetic_features,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float, int] | tuple[None, None, int]:
    """Kernel Inception Distance: mean and standard deviation of the unbiased MMD over subsets.

    Each of ``subsets`` rounds draws ``m = min(subset_size, n_real, n_synthetic)`` samples
    without replacement from each set and computes :func:`mmd2_unbiased`, as torchmetrics'
    ``KernelInceptionDistance`` does (its standard deviation is the population one, ddof=0).

    Returns
    -------
    (mean, std, m)
        ``(None, None, m)`` when ``m < 2``.
    """
    real, fake = _as_features(real_features), _as_features(synthetic_features)
    m = int(min(subset_size, len(real), len(fake)))
    if m < 2:
        return None, None, m
    rng = np.random.default_rng(seed)
    scores = [
        mmd2_unbiased(real[rng.choice(len(real), m, replace=False)],
                      fake[rng.choice(len(fake), m, replace=False)],
                      degree=degree, gamma=gamma, coef=coef)
        for _ in range(max(1, int(subsets)))
    ]
    return float(np.mean(scores)), float(np.std(scores)), m


def mean_pairwise_distance(features, *, max_samples: int = 1000, seed: int = 0) -> float | None:
    """Mean Euclidean distance between all pairs of rows (a random ``max_samples`` if more)."""
    from scipy.spatial.distance import pdist

    features = _as_features(features)
    if len(features) < 2:
        return None
    if len(features) > max_samples:
        rng = np.random.default_rng(seed)
        features = features[rng.choice(len(features), max_samples, replace=False)]
    value = float(pdist(features).mean())
    return value if math.isfinite(value) else None


def _as_features(features) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"features must be (n_samples, n_features), got shape {array.shape}")
    return array
