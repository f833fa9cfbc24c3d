"""Tiny image datasets and synthetic caches for the evidence tests (16x16 PNGs)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genaug.synthetic import CacheWriter

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
               shift: float = 0.0, failed_gate_every: int = 0):
    rng = np.random.default_rng(seed)
    with CacheWriter(root) as writer:
        for name, count in counts.items():
            for i in range(count):
                passed = not (failed_gate_every and i % failed_gate_every == 0)
                writer.add(class_image(name, rng, size=size, shift=shift), class_name=name,
                           record_id=f"{name}-{i:03d}", generator={"backend": "test"},
                           prompt=f"a {name}", seed=i, attempts=2,
                           quality={"classifier": {"score": 0.9 if passed else 0.2,
                                                   "threshold": 0.5, "passed": passed}})
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Three imbalanced classes (24 / 10 / 6 images)."""
    return make_dataset(tmp_path_factory.mktemp("data"), {"cat": 24, "dog": 10, "fox": 6})


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """Synthetic images for the two rare classes; every 4th fails its (recorded) gate."""
    return make_cache(tmp_path_factory.mktemp("cache"), {"dog": 8, "fox": 12},
                      failed_gate_every=4)
