"""Shared fixtures: small long-tailed image folders written on the fly.

``image_folder_factory`` writes ``root/<class>/<class>_NNN.<ext>`` images whose classes differ
in colour (so a tiny CNN can tell them apart) and whose pixels are seeded noise (so no two
images are identical). Keep fixture names stable: other test packages use them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# One distinct colour per class, cycled for more classes.
_PALETTE = [(210, 50, 50), (50, 200, 60), (60, 70, 220), (220, 200, 40), (200, 60, 210),
            (40, 200, 200), (130, 130, 130), (240, 140, 40)]
_counter = itertools.count()


def make_image(
    class_index: int,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (16, 16),
    mode: str = "RGB",
) -> Image.Image:
    """One noisy, class-coloured image of ``size`` (width, height) in PIL ``mode``.

    Supported modes: ``RGB``, ``RGBA``, ``L``, ``P`` (palette), ``I;16`` (16-bit grey) and
    ``1``; anything else PIL can ``convert`` to from RGB works too.
    """
    width, height = size
    base = np.asarray(_PALETTE[class_index % len(_PALETTE)], dtype=np.float64)
    pixels = base + rng.normal(0.0, 20.0, (height, width, 3))
    bar = int(rng.integers(0, max(height - 2, 1)))
    pixels[bar:bar + 2] += 50.0
    rgb = np.clip(pixels, 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode == "RGB":
        return image
    if mode == "RGBA":
        alpha = np.full((height, width, 1), 255, np.uint8)
        alpha[: height // 2] = 128
        return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    if mode == "P":
        return image.quantize(colors=16)
    if mode in ("I;16", "I;16B", "I;16L"):
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        return Image.fromarray(grey)  # uint16 -> mode I;16
    return image.convert(mode)


def make_image_folder(
    root,
    counts: dict[str, int],
    *,
    size: tuple[int, int] = (16, 16),
    mode: str = "RGB",
    ext: str = "png",
    seed: int = 0,
) -> Path:
    """Write ``counts[name]`` images into ``root/<name>/``; return ``root``.

    A count of 0 creates an empty class folder. ``size`` is (width, height).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for class_index, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = make_image(class_index, rng, size=size, mode=mode)
            if ext.lower() in ("jpg", "jpeg") and image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            image.save(folder / f"{name}_{i:03d}.{ext}")
    return root


@pytest.fixture(scope="session")
def image_folder_writer():
    """The plain :func:`make_image_folder` function, for session- or module-scoped fixtures
    (``image_folder_writer(tmp_path_factory.mktemp("data"), {"a": 5})``)."""
    return make_image_folder


@pytest.fixture
def image_folder_factory(tmp_path):
    """A factory ``(counts, size=(16, 16), mode="RGB", root=None, *, ext="png", seed=0) -> Path``.

    Without ``root`` every call writes a fresh folder under ``tmp_path``.
    """

    def factory(counts: dict[str, int], size=(16, 16), mode: str = "RGB", root=None, *,
                ext: str = "png", seed: int = 0) -> Path:
        if root is None:
            root = tmp_path / f"images_{next(_counter)}"
        return make_image_folder(root, counts, size=tuple(size), mode=mode, ext=ext, seed=seed)

    return factory


@pytest.fixture
def small_dataset(image_folder_factory) -> Path:
    """A long-tailed 16x16 RGB folder: cat 20, dog 4, snake 10 images."""
    return image_folder_factory({"cat": 20, "dog": 4, "snake": 10})


@pytest.fixture
def genaug_data_home(tmp_path, monkeypatch) -> Path:
    """Point ``GENAUG_DATA_HOME`` at a temporary folder (the embedded dataset lands there)."""
    home = tmp_path / "genaug_home"
    monkeypatch.setenv("GENAUG_DATA_HOME", str(home))
    return home


def damage_pixel_data(path):
    """Keep a PNG's header and end marker, overwrite its pixel data: the loaders' header check
    at indexing accepts the file, only a decode finds it broken."""
    whole = bytearray(open(path, "rb").read())
    whole[41:-20] = b"\x55" * (len(whole) - 61)
    open(path, "wb").write(bytes(whole))


@pytest.fixture
def corrupt_pixel_data():
    """:func:`damage_pixel_data`, as a fixture."""
    return damage_pixel_data
