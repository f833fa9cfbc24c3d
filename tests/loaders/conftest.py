"""Fixtures of the loader tests: a manifest with a split column, a folder with broken files,
and a tiny synthetic cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from genaug.cache import CacheWriter

SPLIT_COUNTS = {"cat": 16, "dog": 8}


@pytest.fixture
def split_manifest(image_folder_factory, tmp_path):
    """``m.csv`` over cat 16 / dog 8: per class 3 test rows, 2 validation rows, one row without
    a split, the rest train rows. Returns ``(manifest, {split: set of paths})``."""
    root = image_folder_factory(SPLIT_COUNTS, root=tmp_path / "images")
    rows, by_split = ["path,label,split"], {"train": set(), "validation": set(), "test": set()}
    for name, n in SPLIT_COUNTS.items():
        for i in range(n):
            split = "test" if i < 3 else "validation" if i < 5 else "" if i == 5 else "train"
            rows.append(f"images/{name}/{name}_{i:03d}.png,{name},{split}")
            by_split[split or "train"].add(str((root / name / f"{name}_{i:03d}.png").resolve()))
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, by_split


@pytest.fixture
def broken_folder(image_folder_factory):
    """A folder of a 10 / b 6 readable PNGs plus a corrupt PNG, a truncated PNG, a broken
    symlink and a README.txt (3 unreadable files, 1 that is not an image)."""
    root = image_folder_factory({"a": 10, "b": 6})
    (root / "a" / "corrupt.png").write_bytes(b"garbage")
    whole = (root / "a" / "a_000.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    os.symlink(root / "nowhere.png", root / "b" / "dangling.png")
    (root / "a" / "README.txt").write_text("notes")
    return root


def write_cache(root, per_class, *, size=16, source_ids=None, value=255):
    """``per_class[name]`` plain images of ``value`` per class; ``source_ids[name]`` gives the
    ``source_id`` of each class's first record."""
    with CacheWriter(root) as writer:
        for name, n in per_class.items():
            for i in range(n):
                source = (source_ids or {}).get(name) if i == 0 else None
                writer.add(np.full((size, size, 3), value, np.uint8), class_name=name,
                           record_id=f"{name}-{i}", source_id=source)
    return root


@pytest.fixture
def make_cache():
    """:func:`write_cache`, as a fixture."""
    return write_cache
