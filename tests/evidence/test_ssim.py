"""SSIM against its definition and scikit-image, and the nearest-real-image search."""

import numpy as np
import pytest

from genaug.evidence import ssim
from genaug.evidence._ssim import nearest_ssim, ssim_many


def test_identical_images_have_ssim_one():
    image = np.random.default_rng(0).integers(0, 256, (20, 20)).astype(np.uint8)
    assert ssim(image, image) == pytest.approx(1.0)


def test_constant_images_follow_the_luminance_term():
    # No variance: SSIM reduces to (2 a b + C1) / (a^2 + b^2 + C1).
    a, b = np.full((16, 16), 100.0), np.full((16, 16), 150.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))


def test_noise_lowers_ssim_monotonically():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32)).astype(np.float64)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255) for s in (5, 20, 60)]
    values = ssim_many(image, np.stack(noisy))
    assert values[0] > values[1] > values[2]


def test_matches_scikit_image_when_installed():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    for shape in ((16, 16), (48, 40)):
        a = rng.integers(0, 256, shape).astype(np.uint8)
        b = np.clip(a + rng.integers(-50, 50, shape), 0, 255).astype(np.uint8)
        expected = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                                 use_sample_covariance=False, data_range=255)
        assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_nearest_ssim_finds_the_copy_among_references():
    rng = np.random.default_rng(3)
    references = rng.integers(0, 256, (30, 16, 16)).astype(np.float64)
    images = np.stack([references[7], rng.integers(0, 256, (16, 16))])
    best = nearest_ssim(images, references, candidates=5)
    assert best[0] == pytest.approx(1.0)
    assert best[1] < 0.5
    assert np.isnan(nearest_ssim(images, references[:0])).all()


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same size"):
        ssim_many(np.zeros((8, 8)), np.zeros((2, 9, 9)))
