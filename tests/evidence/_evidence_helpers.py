"""Tiny image datasets and synthetic caches for the evidence tests (16x16 PNGs).

Plain helpers live here rather than in conftest.py: every test package has a conftest, so
``from conftest import ...`` picks whichever was imported first.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from genaug.cache import REJECTIONS_LOG, CacheWriter

CLASS_COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}


def class_image(name: str, rng, *, size: int = 16, shift: float = 0.0) -> np.ndarray:
    """A noisy, class-coloured square with a bright bar whose position varies."""
    base = np.asarray(CLASS_COLOURS[name], dtype=np.float64)
    image = base + rng.normal(0, 25, (size, size, 3)) + shift
    row = rng.integers(2, size - 4)
    image[row:row + 2, :, :] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dataset(root, counts: dict[str, int], *, seed: int = 0, size: int = 16):
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(class_image(name, rng, size=size)).save(folder / f"{name}_{i:03d}.png")
    return root


def make_cache(root, counts: dict[str, int], *, seed: int = 1, size: int = 16,
               shift: float = 0.0, rejected_every: int = 0):
    """A synthetic cache as ``genaug generate`` leaves it; every ``rejected_every``-th image
    was accepted at the second attempt, its first candidate logged as rejected."""
    rng = np.random.default_rng(seed)
    rejections = []
    with CacheWriter(root) as writer:
        for name, count in counts.items():
            for i in range(count):
                retried = bool(rejected_every) and i % rejected_every == 0
                record_id = f"{name}-{i:03d}"
                if retried:
                    rejections.append({"id": record_id, "class": name, "attempt": 1,
                                       "quality": {"classifier": {"score": 0.2, "threshold": 0.5,
                                                                  "passed": False}},
                                       "exhausted": False})
                writer.add(class_image(name, rng, size=size, shift=shift), class_name=name,
                           record_id=record_id, generator={"backend": "test"},
                           prompt=f"a {name}", seed=i, attempts=2 if retried else 1,
                           quality={"classifier": {"score": 0.9, "threshold": 0.5,
                                                   "passed": True}})
    if rejections:
        lines = "".join(json.dumps(entry) + "\n" for entry in rejections)
        (root / REJECTIONS_LOG).write_text(lines)
    return root


def make_variation_cache(root, counts: dict[str, int], *, strength: float = 0.5,
                         seed: int = 2, size: int = 16):
    """A cache of variations as ``genaug generate`` leaves it from a plan made with
    ``--variation-strength``: each record names the real image it varies (``source_id``, the
    ``i``-th image of :func:`make_dataset`'s class folder, in turn) and its ``strength``."""
    rng = np.random.default_rng(seed)
    with CacheWriter(root) as writer:
        for name, count in counts.items():
            for i in range(count):
                writer.add(class_image(name, rng, size=size), class_name=name,
                           record_id=f"variation-{name}-{i:03d}",
                           generator={"backend": "test"}, seed=i, attempts=1,
                           source_id=f"{name}/{name}_{i:03d}.png", strength=strength)
    return root
