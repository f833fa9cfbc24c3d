"""Admission by class margin: an image is admitted only where its own class ranks first."""

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import select_by_class_margin


def _two_classes():
    rng = np.random.default_rng(0)
    wide = rng.normal(0.0, 1.0, size=(200, 2))
    tight = rng.normal(0.0, 0.01, size=(5, 2)) + [6.0, 0.0]
    return np.vstack([wide, tight]), np.array([0] * 200 + [1] * 5)


def test_drops_an_image_nearer_another_class_and_keeps_one_near_its_own():
    real, labels = _two_classes()
    result = select_by_class_margin(real, labels, [[0.3, 0.0], [5.5, 0.0]], [0, 0],
                                    class_names=["wide", "tight"])
    assert result.keep.tolist() == [True, False]
    assert result.per_class["wide"]["nearer_to"] == {"tight": 1}


def test_radius_floor_keeps_a_tight_rare_classes_images():
    real, labels = _two_classes()
    slightly_off = [[5.5, 0.0], [6.0, 0.5]]
    without_floor = select_by_class_margin(real, labels, slightly_off, [1, 1],
                                           class_names=["wide", "tight"], radius_floor=0.0)
    with_floor = select_by_class_margin(real, labels, slightly_off, [1, 1],
                                        class_names=["wide", "tight"])
    assert without_floor.keep.tolist() == [False, False]
    assert with_floor.keep.tolist() == [True, True]
    assert with_floor.to_dict()["per_class"]["tight"]["kept"] == 2


def test_a_class_without_a_centre_is_admitted_unexamined():
    result = select_by_class_margin([[0.0, 0], [1, 0], [9, 9]], [0, 0, 1], [[0.0, 0]], [1],
                                    class_names=["a", "b"])
    assert result.keep.tolist() == [True]


def test_negative_radius_floor_is_refused():
    with pytest.raises(ConfigError, match="radius_floor must be >= 0"):
        select_by_class_margin([[0.0], [1.0]], [0, 0], [[0.0]], [0], class_names=["a"],
                               radius_floor=-1)
