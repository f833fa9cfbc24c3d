"""Structural similarity (SSIM, Wang et al. 2004) and nearest-real-image search.

The implementation follows the paper's settings, the same as
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)``: an 11x11 Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, and the mean taken away from the window's half-width border. It works on
a whole stack of images at once, which makes the nearest-image search cheap.
"""

from __future__ import annotations

import numpy as np

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03


def ssim(a, b, *, data_range: float = 255.0) -> float:
    """SSIM between two grayscale images of equal shape ``(H, W)`` (or ``(H, W, 1)``)."""
    return float(ssim_many(a, np.asarray(b)[None], data_range=data_range)[0])


def ssim_many(image, others, *, data_range: float = 255.0) -> np.ndarray:
    """SSIM of one grayscale ``image`` (H, W) against each of ``others`` (N, H, W).

    Returns
    -------
    ndarray of float, shape (N,)
    """
    from scipy.ndimage import gaussian_filter

    x = np.asarray(image, dtype=np.float64)
    ys = np.asarray(others, dtype=np.float64)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if ys.ndim == 4 and ys.shape[-1] == 1:
        ys = ys[..., 0]
    if x.ndim != 2 or ys.ndim != 3 or ys.shape[1:] != x.shape:
        raise ValueError(f"expected an (H, W) image and (N, H, W) others of the same size, got "
                         f"{x.shape} and {ys.shape}")
    if len(ys) == 0:
        return np.zeros(0)
    xs = np.broadcast_to(x, ys.shape)

    def smooth(array):
        return gaussian_filter(array, sigma=(0, SIGMA, SIGMA), truncate=TRUNCATE, mode="reflect")

    ux, uy = smooth(x[None])[0], smooth(ys)
    vx = smooth((x * x)[None])[0] - ux * ux
    vy = smooth(ys * ys) - uy * uy
    vxy = smooth(xs * ys) - ux * uy
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = int(TRUNCATE * SIGMA + 0.5)
    if x.shape[0] > 2 * pad and x.shape[1] > 2 * pad:
        s = s[:, pad:-pad, pad:-pad]
    return s.reshape(len(ys), -1).mean(axis=1)


def nearest_ssim(images, references, *, candidates: int = 10) -> np.ndarray:
    """For each image, the highest SSIM to any reference image (its "nearest real image").

    To keep the cost linear, SSIM is computed only against the ``candidates`` references that
    are closest in pixel (L2) distance; the nearest image by SSIM is almost always among them.

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        Grayscale images (e.g. synthetic).
    references : array_like, shape (M, H, W)
        Grayscale reference images (e.g. real ones of the same class).
    candidates : int
        Shortlist size per image.

    Returns
    -------
    ndarray, shape (N,)
        NaN for every image when there is no reference.
    """
    images = np.asarray(images, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    if len(references) == 0 or len(images) == 0:
        return np.full(len(images), np.nan)
    flat_i = images.reshape(len(images), -1)
    flat_r = references.reshape(len(references), -1)
    squared = ((flat_i ** 2).sum(1)[:, None] + (flat_r ** 2).sum(1)[None, :]
               - 2.0 * flat_i @ flat_r.T)
    k = min(int(candidates), len(references))
    shortlist = np.argpartition(squared, k - 1, axis=1)[:, :k]
    return np.asarray([ssim_many(image, references[rows]).max()
                       for image, rows in zip(images, shortlist, strict=True)])
