"""``TrainingStatus``: the one type behind every ``status.json``."""

import pytest

from genaug.cache import TrainingStatus
from genaug.exceptions import DatasetError


def test_a_status_reads_back_as_it_was_written():
    status = TrainingStatus.from_counts(
        ("cat", "dog"), original=[10, 4], synthetic=[0, 6], validation=[2, 1], test=None,
        share_of_draws=[0.0, 0.5], excluded_for_leakage=1, synthetic_cap=0.6, seed=3,
        skipped_files=[{"path": "a.png", "reason": "not an image"}],
        details={"image_size": [16, 16], "synthetic_schedule": None})
    data = status.to_json()
    assert data["per_class"]["dog"] == {"original": 4, "synthetic": 6, "total": 10,
                                        "synthetic_share_of_images": 0.6,
                                        "synthetic_share_of_draws": 0.5}
    assert data["total_images"] == 20 and data["synthetic_share_of_images"] == 0.3
    assert data["per_split"]["test"] == {"original": {}, "synthetic": {}}
    assert data["image_size"] == [16, 16] and "synthetic_schedule" in data
    assert TrainingStatus.from_json(data) == status


def test_a_partial_status_reads_with_what_it_has():
    status = TrainingStatus.from_json({"per_class": {"cat": {"original": 3, "synthetic": 0}},
                                       "target_per_class": 5})
    assert status.original == (3,) and status.validation is None
    assert status.share_of_draws is None and status.details == {"target_per_class": 5}
    with pytest.raises(DatasetError, match="no per-class counts"):
        TrainingStatus.from_json({"per_split": {}})
    with pytest.raises(DatasetError, match="count of cat is not a number"):
        TrainingStatus.from_json({"per_class": {"cat": {"original": "many"}}})
