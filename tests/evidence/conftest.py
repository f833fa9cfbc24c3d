"""Tiny image datasets and synthetic caches for the evidence tests (16x16 PNGs)."""

from __future__ import annotations

import pytest
from _evidence_helpers import make_cache, make_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Three imbalanced classes (24 / 10 / 6 images)."""
    return make_dataset(tmp_path_factory.mktemp("data"), {"cat": 24, "dog": 10, "fox": 6})


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """Synthetic images for the two rare classes; every 4th needed a second attempt."""
    return make_cache(tmp_path_factory.mktemp("cache"), {"dog": 8, "fox": 12},
                      rejected_every=4)
