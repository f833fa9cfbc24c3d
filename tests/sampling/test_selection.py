"""Feature-space selection on constructed features: far images dropped, near ones kept."""

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import BANDS, ClassPrototypes, bands_of, select_by_feature_distance


def _ring(centre, radius, n=8):
    """``n`` real features on a circle of ``radius`` around ``centre`` (mean = centre)."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(centre) + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _two_classes():
    real = np.concatenate([_ring([0.0, 0.0], 1.0), _ring([10.0, 0.0], 2.0)])
    labels = np.repeat([0, 1], 8)
    # class 0 (d_f = 1): in, near, far; class 1 (d_f = 2): in, near, far, far
    synthetic = np.array([[0.5, 0], [0, 1.5], [3.0, 0],
                          [10, 1.0], [10, -3.5], [15.0, 0], [0.0, 0.0]])
    synthetic_labels = np.array([0, 0, 0, 1, 1, 1, 1])
    return real, labels, synthetic, synthetic_labels


def test_far_images_are_dropped_and_near_ones_kept():
    real, labels, synthetic, synthetic_labels = _two_classes()
    result = select_by_feature_distance(real, labels, synthetic, synthetic_labels,
                                        class_names=["a", "b"], radius_quantile=1.0)
    assert [BANDS[b] for b in result.bands] == ["in", "near", "far", "in", "near", "far",
                                                 "far"]
    assert result.keep.tolist() == [True, True, False, True, True, False, False]
    assert result.per_class["a"] == {"real_images": 8, "radius": 1.0, "in": 1, "near": 1,
                                     "far": 1, "kept": 2, "dropped": 1, "note": None}
    assert result.per_class["b"]["radius"] == 2.0
    assert (result.per_class["b"]["kept"], result.per_class["b"]["dropped"]) == (2, 2)
    report = result.to_dict()
    assert (report["kept"], report["dropped"], report["keep_bands"]) == (4, 3, ["in", "near"])


def test_keep_bands_chooses_the_bands():
    real, labels, synthetic, synthetic_labels = _two_classes()
    only_in = select_by_feature_distance(real, labels, synthetic, synthetic_labels,
                                         class_names=["a", "b"], radius_quantile=1.0,
                                         keep_bands=["in"])
    assert only_in.keep.tolist() == [True, False, False, True, False, False, False]
    near = select_by_feature_distance(real, labels, synthetic, synthetic_labels,
                                      class_names=["a", "b"], radius_quantile=1.0,
                                      keep_bands="near")
    assert near.keep.tolist() == [False, True, False, False, True, False, False]


def test_the_radius_is_a_robust_quantile():
    # one outlying real image would double the largest radius; the 0.95 quantile ignores it
    real = np.concatenate([_ring([0.0, 0.0], 1.0, n=40), [[30.0, 0.0]]])
    prototypes = ClassPrototypes.fit(real, np.zeros(41, int), num_classes=1)
    largest = ClassPrototypes.fit(real, np.zeros(41, int), num_classes=1, radius_quantile=1.0)
    assert prototypes.radii[0] < 2.0 < largest.radii[0]


def test_a_class_with_fewer_than_two_real_images_keeps_everything():
    real = np.concatenate([_ring([0.0, 0.0], 1.0), [[50.0, 50.0]]])
    labels = np.array([0] * 8 + [1])
    synthetic = np.array([[100.0, 100.0], [-100.0, 0.0], [0.2, 0.0]])
    result = select_by_feature_distance(real, labels, synthetic, [1, 1, 0],
                                        class_names=["a", "b", "c"])
    assert result.keep.tolist() == [True, True, True]
    assert result.bands.tolist()[:2] == [-1, -1]
    assert result.per_class["b"]["radius"] is None
    assert "fewer than 2 real images" in result.per_class["b"]["note"]
    assert result.per_class["c"] == {"real_images": 0, "radius": None, "in": 0, "near": 0,
                                     "far": 0, "kept": 0, "dropped": 0, "note": None}


def test_selection_is_deterministic():
    rng = np.random.default_rng(3)
    real, labels = rng.normal(size=(200, 16)), rng.integers(0, 4, 200)
    synthetic, synthetic_labels = 2 * rng.normal(size=(300, 16)), rng.integers(0, 4, 300)
    first, second = (select_by_feature_distance(real, labels, synthetic, synthetic_labels,
                                                class_names="abcd") for _ in range(2))
    assert np.array_equal(first.keep, second.keep)
    assert first.to_dict() == second.to_dict()
    assert 0 < first.kept < 300  # the wider synthetic cloud has images in all three bands


def test_bands_of_edges():
    assert bands_of([0.0, 1.0, 1.0001, 2.0, 2.0001, np.nan]).tolist() == [0, 0, 1, 1, 2, -1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(radius_quantile=0.0), "radius_quantile must be in"),
    (dict(keep_bands=["in", "middle"]), "keep_bands must name"),
    (dict(keep_bands=[]), "keep_bands must name"),
])
def test_bad_parameters_name_the_parameter(kwargs, match):
    real, labels, synthetic, synthetic_labels = _two_classes()
    with pytest.raises(ConfigError, match=match):
        select_by_feature_distance(real, labels, synthetic, synthetic_labels,
                                   class_names=["a", "b"], **kwargs)


def test_mismatched_dimensions_are_refused():
    real, labels, _, _ = _two_classes()
    with pytest.raises(ConfigError, match="3 dimensions, the real features 2"):
        select_by_feature_distance(real, labels, np.zeros((2, 3)), [0, 1],
                                   class_names=["a", "b"])
