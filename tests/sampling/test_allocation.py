"""Confusion-directed allocation: per-class synthetic caps from a validation confusion."""

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import (
    SYNTHETIC,
    BalancePlan,
    SyntheticMixer,
    allocate_by_confusion,
    class_caps,
)

NAMES = ("bag", "coat", "shirt", "tshirt")


def confusion(correct, images):
    """A confusion matrix with ``correct[c]`` of ``images[c]`` right, the rest on class 0."""
    matrix = np.zeros((len(correct), len(correct)), dtype=int)
    for c, (right, n) in enumerate(zip(correct, images)):
        matrix[c, c] = right
        matrix[c, 0 if c else 1] += n - right
    return matrix


def test_classes_the_model_gets_wrong_get_more_than_the_cap_and_right_ones_less():
    allocation = allocate_by_confusion(confusion([50, 45, 20, 10], [50, 50, 50, 50]),
                                       class_names=NAMES, cap=0.6,
                                       eligible=[False, True, True, True])
    caps = dict(zip(NAMES, allocation.caps))
    assert caps["tshirt"] > caps["shirt"] > 0.6 > caps["coat"] > 0
    # the eligible classes' caps average to the recipe's cap (none reached 1 here)
    assert np.mean(allocation.caps[1:]) == pytest.approx(0.6)
    assert caps["bag"] == 0.6  # no synthetic images: its cap is never used
    assert allocation.as_cap() == {name: float(cap) for name, cap in caps.items()}


def test_equal_errors_keep_every_cap_and_caps_never_exceed_one():
    even = allocate_by_confusion(confusion([5, 5, 5, 5], [10, 10, 10, 10]), class_names=NAMES,
                                 cap=0.6, eligible=[True] * 4)
    np.testing.assert_allclose(even.caps, 0.6)
    skewed = allocate_by_confusion(confusion([100, 100, 100, 0], [100, 100, 100, 100]),
                                   class_names=NAMES, cap=0.9, eligible=[True] * 4)
    assert skewed.caps.max() == 1.0 and (skewed.caps >= 0).all()


def test_tiny_validation_classes_are_smoothed_towards_half_right():
    allocation = allocate_by_confusion(confusion([40, 0, 2, 0], [40, 2, 2, 0]),
                                       class_names=NAMES, cap=0.6, eligible=[True] * 4)
    recall = dict(zip(NAMES, allocation.recall))
    assert recall["tshirt"] == 0.5  # no validation image: no evidence either way
    assert recall["coat"] == 0.25 and recall["shirt"] == 0.75  # 0 of 2 and 2 of 2
    row = allocation.to_dict()["per_class"]["tshirt"]
    assert row == {"validation_images": 0, "recall": 0.5, "receives_synthetic": True,
                   "synthetic_cap": round(float(allocation.caps[3]), 4)}


def test_a_confusion_of_the_wrong_shape_is_refused():
    with pytest.raises(ConfigError, match="4x4"):
        allocate_by_confusion(np.eye(3), class_names=NAMES, cap=0.6, eligible=[True] * 4)


def test_class_caps_take_a_share_or_a_dict_with_the_default_for_the_rest():
    np.testing.assert_allclose(class_caps(0.4, NAMES, default=0.6), [0.4] * 4)
    np.testing.assert_allclose(class_caps({"shirt": 0.9}, NAMES, default=0.6),
                               [0.6, 0.6, 0.9, 0.6])
    with pytest.raises(ConfigError, match="not in the dataset: hat"):
        class_caps({"hat": 0.5}, NAMES, default=0.6)
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        class_caps({"shirt": 1.5}, NAMES, default=0.6)


def test_the_mixer_holds_each_class_to_its_own_cap():
    real = np.array([0] * 60 + [1] * 6 + [2] * 6)
    pool = np.array([1] * 50 + [2] * 50)
    plan = BalancePlan(real, num_classes=3, mode="oversample", batch_size=12, seed=0)
    mixer = SyntheticMixer(pool, real, eligible=[False, True, True], caps=[0.6, 0.2, 0.8],
                           seed=0)
    for epoch in range(3):
        mixed = mixer.mix(plan.epoch(epoch))
        for c, cap in ((1, 0.2), (2, 0.8)):
            slots = mixed.labels == c
            share = (mixed.source[slots] == SYNTHETIC).mean()
            assert share <= cap and share >= cap - 0.1  # filled up to its cap, not beyond
    with pytest.raises(ConfigError, match="one per class"):
        SyntheticMixer(pool, real, eligible=[False, True, True], caps=[0.6, 0.2])
