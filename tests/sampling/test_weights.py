import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from genaug import compute_class_weights
from genaug.exceptions import DatasetError
from genaug.sampling import delivered_class_weights


def test_matches_scikit_learn_balanced_weights():
    y = np.array([0] * 30 + [1] * 5 + [2] * 12)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    weights = compute_class_weights(y, ["a", "b", "c"])
    assert list(weights) == [0, 1, 2]
    np.testing.assert_allclose(list(weights.values()), expected)


def test_accepts_class_name_labels():
    weights = compute_class_weights(["b", "a", "a", "a"], ["a", "b"])
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0})


def test_class_without_samples_is_a_clear_error():
    with pytest.raises(DatasetError, match="no samples for class.*pizza_5"):
        compute_class_weights([0, 1, 1], ["pizza_1", "pizza_2", "pizza_5"])


def test_unknown_label_name():
    with pytest.raises(DatasetError, match="labels not in class_names: zebra"):
        compute_class_weights(["zebra"], ["a"])


def test_delivered_distribution_of_a_balanced_loader_gives_equal_weights():
    weights = delivered_class_weights([50, 50, 50], ["a", "b", "c"])
    assert set(weights.values()) == {1.0}
