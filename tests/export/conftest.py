"""A long-tailed image folder and a synthetic cache for the export tests.

Cache records are named ``<class>-<n>`` and ``leak-<class>-<n>``; the latter have the
``source_id`` of a real image, for the leakage rule.
"""

from __future__ import annotations

import pytest
from _export_helpers import COUNTS, write_cache


@pytest.fixture
def data(image_folder_factory):
    """cat 20, dog 4, snake 10 real 16x16 images."""
    return image_folder_factory(COUNTS)


@pytest.fixture
def cache(tmp_path, data):
    """30 synthetic images per class, and one derived from every real dog image."""
    dogs = sorted(p.relative_to(data).as_posix() for p in (data / "dog").iterdir())
    return write_cache(tmp_path / "cache", {name: 30 for name in COUNTS},
                       source_ids={"dog": dogs})
