"""Held-out scores (genaug.evidence.classification_metrics): edge cases."""

import json

import numpy as np
import pytest

from genaug.evidence import classification_metrics


def test_metrics_over_all_classes_including_absent_ones():
    metrics = classification_metrics([0, 0, 1, 1], [0, 1, 1, 2], ["a", "b", "c"])
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    # over the classes in the test set: F1 of a is 2/3, of b 1/2; c is left out
    assert metrics["macro_f1"] == pytest.approx(7 / 12)


def test_single_class_test_set_gives_valid_json():
    # Bug fixed: Cohen's kappa is 0/0 when every true and predicted label is one class;
    # scikit-learn returned NaN and metrics.json held the non-JSON token NaN.
    metrics = classification_metrics(np.array([1, 1, 1]), np.array([1, 1, 1]), ["a", "b"])
    assert metrics["cohen_kappa"] == 1.0 and metrics["accuracy"] == 1.0
    json.dumps(metrics, allow_nan=False)
