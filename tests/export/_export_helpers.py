"""Helpers of the export tests (plain functions: every test package has a conftest, so
``from conftest import ...`` picks whichever was imported first)."""

from __future__ import annotations

import numpy as np

from genaug.cache import CacheWriter

COUNTS = {"cat": 20, "dog": 4, "snake": 10}


def write_cache(root, counts: dict[str, int], *, source_ids: dict[str, list[str]] | None = None,
                seed: int = 1):
    """``counts[name]`` plain synthetic images per class, plus one image per entry of
    ``source_ids[name]`` derived from that real image id."""
    rng = np.random.default_rng(seed)
    with CacheWriter(root) as writer:
        for name, count in counts.items():
            for i in range(count):
                writer.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), class_name=name,
                           record_id=f"{name}-{i:03d}",
                           generator={"backend": "test", "model": "tiny"},
                           prompt_set_sha256="abc123")
            for i, source_id in enumerate((source_ids or {}).get(name, ())):
                writer.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), class_name=name,
                           record_id=f"leak-{name}-{i:03d}", source_id=source_id,
                           generator={"backend": "test", "model": "tiny"},
                           prompt_set_sha256="abc123")
    return root
