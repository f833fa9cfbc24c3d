"""FID and KID: known cases, same vs shifted distributions, and the reference implementation."""

import numpy as np
import pytest

from genaug.evidence import fid, kid
from genaug.evidence._distribution import frechet_distance, mean_pairwise_distance, mmd2_unbiased


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    # For diagonal covariances FID = |mu1-mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 + 1 + 4)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)


def test_frechet_distance_of_rotated_full_covariances():
    # FID is invariant to a common rotation of both distributions.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    s1, s2 = np.diag([1.0, 2.0, 3.0, 4.0]), np.diag([2.0, 2.0, 1.0, 0.5])
    mu1, mu2 = np.zeros(4), np.ones(4)
    plain = frechet_distance(mu1, s1, mu2, s2)
    rotated = frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T)
    assert rotated == pytest.approx(plain, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_fid_near_zero_for_one_distribution_and_large_for_shifted_data():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4000, 8)), rng.normal(size=(4000, 8))
    shifted = rng.normal(loc=1.0, size=(4000, 8))
    same = fid(a, b)
    assert same < 0.05
    assert fid(a, shifted) == pytest.approx(8.0, rel=0.1)  # |shift|^2 = 8
    assert fid(a, shifted) > 100 * same


def test_fid_survives_fewer_samples_than_dimensions():
    rng = np.random.default_rng(2)
    value = fid(rng.normal(size=(10, 32)), rng.normal(size=(10, 32)))
    assert np.isfinite(value) and value > 0
    assert fid(rng.normal(size=(1, 4)), rng.normal(size=(5, 4))) is None


def _naive_mmd2(x, y, degree=3, coef=1.0):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + coef) ** degree  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd_matches_the_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_naive_mmd2(x, y), rel=1e-10)


def test_linear_kernel_mmd_is_the_unbiased_squared_mean_difference():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    m = len(x)
    sx, sy = x.sum(0), y.sum(0)
    within = ((sx @ sx - (x * x).sum()) + (sy @ sy - (y * y).sum())) / (m * (m - 1))
    expected = within - 2 * (x.mean(0) @ y.mean(0))
    assert mmd2_unbiased(x, y, degree=1, gamma=1.0, coef=0.0) == pytest.approx(expected)


def test_kid_near_zero_for_one_distribution_and_larger_for_shifted_data():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    shifted = rng.normal(loc=0.5, size=(600, 16))
    same, same_std, m = kid(a, b, subsets=10, subset_size=200)
    far, far_std, _ = kid(a, shifted, subsets=10, subset_size=200)
    assert m == 200
    assert abs(same) < 3 * same_std + 1e-3
    assert far > 10 * max(abs(same), same_std)
    assert kid(a[:1], b) == (None, None, 1)


def test_kid_matches_torchmetrics_when_installed():
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(40, 6)), rng.normal(0.3, 1.0, size=(40, 6))
    reference = float(kid_module.poly_mmd(torch.tensor(x), torch.tensor(y)))
    assert mmd2_unbiased(x, y) == pytest.approx(reference, rel=1e-9)


def test_mean_pairwise_distance():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(points) == pytest.approx((5 + 0 + 5) / 3)
    assert mean_pairwise_distance(points[:1]) is None
