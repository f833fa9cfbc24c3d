"""Image scores of the quality gates, computed for a whole batch at once.

Each function takes a batch of same-sized uint8 images ``(N, H, W, C)`` (or a list of
``HxWxC`` arrays) and returns one value per image, equal to what the one-image definition
gives: the Laplacian variance (blur), the neighbour-pixel correlation (structure) and the
64-bit perceptual hash (near-duplicates; the same bits as ``imagehash.phash``, whose DCT
step is applied to the whole stack instead of image by image), and the pixel statistics of a
class's look: the mean of the border pixels (the background level) and the intensity
histogram.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

PHASH_SIZE = 8
PHASH_HIGHFREQ_FACTOR = 4  # imagehash's default: the DCT of a 32x32 thumbnail


def _stack(images) -> np.ndarray:
    """``(N, H, W, C)`` from a batch or a list of ``HxWxC`` (or ``HxW``) images."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return images
    arrays = [np.asarray(image) for image in images]
    arrays = [a[:, :, None] if a.ndim == 2 else a for a in arrays]
    return np.stack(arrays) if arrays else np.zeros((0, 1, 1, 1), np.uint8)


def _grey(x: np.ndarray) -> np.ndarray:
    """Mean of the colour channels (alpha left out), float64 ``(N, H, W)``."""
    x = np.asarray(x, dtype=np.float64)
    return x[..., :3].mean(axis=3) if x.shape[3] >= 3 else x[..., 0]


#: Intensity histogram bins over 0-255.
HISTOGRAM_BINS = 16


def border_width(height: int, width: int) -> int:
    """Pixels of the border ring whose mean is the background level: a tenth of the shorter
    side, at least 1 (3 at 28 px)."""
    return max(1, round(min(height, width) / 10))


def border_means(images) -> np.ndarray:
    """Mean grey level (0-255) of each image's border ring (:func:`border_width` wide)."""
    x = _grey(_stack(images))
    if not len(x):
        return np.zeros(0)
    w = border_width(*x.shape[1:3])
    ring = np.ones(x.shape[1:3], bool)
    ring[w:-w, w:-w] = False
    return x[:, ring].mean(axis=1)


def intensity_histograms(images, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Each image's grey-level histogram over 0-255 in ``bins`` equal bins, summing to 1."""
    x = _grey(_stack(images))
    if not len(x):
        return np.zeros((0, bins))
    index = np.clip((x.reshape(len(x), -1) * bins / 256.0).astype(np.int64), 0, bins - 1)
    counts = np.stack([np.bincount(row, minlength=bins) for row in index])
    return counts / counts.sum(axis=1, keepdims=True)


def histogram_distances(histograms: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Total-variation distance (half the L1 distance, 0 to 1) of each histogram to
    ``reference``."""
    return 0.5 * np.abs(np.asarray(histograms) - np.asarray(reference)[None]).sum(axis=1)


def laplacian_variances(images) -> np.ndarray:
    """Variance of the Laplacian of each grey-level image (0-255 units): low means blurry or
    flat. ``scipy.ndimage.laplace`` with reflected borders, applied over the two image axes
    of the whole stack."""
    from scipy import ndimage

    grey = _grey(_stack(images))
    laplace = ndimage.correlate1d(grey, [1.0, -2.0, 1.0], axis=1, mode="reflect")
    laplace += ndimage.correlate1d(grey, [1.0, -2.0, 1.0], axis=2, mode="reflect")
    return laplace.reshape(len(grey), -1).var(axis=1)


def laplacian_variance(image: np.ndarray) -> float:
    """:func:`laplacian_variances` of one image."""
    return float(laplacian_variances([image])[0])


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of each row of ``a`` with the same row of ``b`` (1.0 for a flat row)."""
    sa, sb = a.std(axis=1), b.std(axis=1)
    centred = (a - a.mean(axis=1, keepdims=True)) * (b - b.mean(axis=1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = centred.mean(axis=1) / (sa * sb)
    return np.where((sa < 1e-6) | (sb < 1e-6), 1.0, corr)


def neighbour_pairs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's horizontally then vertically neighbouring pixel pairs, as two ``(N, M)``
    arrays (``x``: ``(N, H, W, C)`` floats)."""
    n = len(x)
    a = np.concatenate([x[:, :, :-1].reshape(n, -1), x[:, :-1, :].reshape(n, -1)], axis=1)
    b = np.concatenate([x[:, :, 1:].reshape(n, -1), x[:, 1:, :].reshape(n, -1)], axis=1)
    return a, b


def neighbour_correlations(images) -> np.ndarray:
    """Correlation of neighbouring pixels of each image: 0.7-0.95 for photographs, drawings
    and scans, about 0 for noise."""
    x = _stack(images).astype(np.float64) / 255.0
    return pearson_rows(*neighbour_pairs(x))


def phash_batch(images, hash_size: int = PHASH_SIZE) -> np.ndarray:
    """The perceptual hash of each image as a ``uint64`` (the bits of ``imagehash.phash``,
    first bit most significant)."""
    import scipy.fftpack

    if hash_size != PHASH_SIZE:
        raise ValueError("only 8x8 hashes fit a uint64")
    side = hash_size * PHASH_HIGHFREQ_FACTOR
    thumbnails = []
    for image in images:
        array = np.asarray(image)
        if array.ndim == 3:
            array = array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3]
        thumb = Image.fromarray(array).convert("L").resize((side, side),
                                                           Image.Resampling.LANCZOS)
        thumbnails.append(np.asarray(thumb))
    if not thumbnails:
        return np.zeros(0, np.uint64)
    pixels = np.stack(thumbnails)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    low = dct[:, :hash_size, :hash_size].reshape(len(pixels), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def phash_bits(image: np.ndarray, hash_size: int = PHASH_SIZE) -> np.uint64:
    """:func:`phash_batch` of one image."""
    return phash_batch([image], hash_size)[0]


def hamming(hashes: np.ndarray, value: np.uint64) -> np.ndarray:
    """Hamming distances between ``value`` and every entry of ``hashes`` (uint64)."""
    xor = np.bitwise_xor(np.asarray(hashes, np.uint64), np.uint64(value))
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(xor).astype(np.int64)
    return np.unpackbits(xor.view(np.uint8)).reshape(len(xor), 64).sum(axis=1)


class HashSet:
    """A growing per-class set of hashes, compared with one numpy operation."""

    def __init__(self, initial: Sequence[np.uint64] = ()):
        self._hashes = np.asarray(initial, np.uint64)
        self._count = len(self._hashes)

    def __len__(self) -> int:
        return self._count

    def nearest(self, value: np.uint64) -> int | None:
        """Smallest Hamming distance from ``value`` to the set (None when empty)."""
        return int(hamming(self._hashes[:self._count], value).min()) if self._count else None

    def add(self, values) -> None:
        values = np.atleast_1d(np.asarray(values, np.uint64))
        need = self._count + len(values)
        if need > len(self._hashes):
            grown = np.zeros(max(need, 2 * len(self._hashes), 64), np.uint64)
            grown[:self._count] = self._hashes[:self._count]
            self._hashes = grown
        self._hashes[self._count:need] = values
        self._count = need
