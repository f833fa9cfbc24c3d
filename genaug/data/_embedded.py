"""The embedded default dataset: a long-tailed image folder cut from scikit-learn's digits.

scikit-learn ships 1,797 8x8 digit images (about 180 per class). Before any cut, 20 images per
class are set aside as a balanced held-out test folder. From the rest, class ``k`` (digit k)
keeps ``round(150 * 20 ** (-k / 9))`` images: 150 zeros down to 8 nines, imbalance ratio 18.75
(about 20). Images are upscaled to 32x32 grayscale PNGs and written once, so training reads
real files from disk like any user dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.data._decode import encode_png
from genaug.io import atomic_write_bytes

TEST_PER_CLASS = 20
HEAD = 150
IMBALANCE = 20.0
SIDE = 32
_DONE = ".complete"


def long_tail_counts(num_classes: int = 10, *, head: int = HEAD, ratio: float = IMBALANCE):
    """Exponential long-tail profile: ``head`` images for class 0 down to ``head / ratio``."""
    return [int(round(head * ratio ** (-k / (num_classes - 1)))) for k in range(num_classes)]


def default_data_home() -> Path:
    return Path(os.environ.get("GENAUG_DATA_HOME", Path.home() / ".cache" / "genaug"))


def digits_longtail(root=None) -> tuple[Path, Path]:
    """Write (once) and return ``(train_dir, test_dir)`` of the embedded dataset."""
    root = Path(root) if root is not None else default_data_home() / "digits_longtail"
    train_dir, test_dir = root / "train", root / "test"
    if (root / _DONE).exists():
        return train_dir, test_dir
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    keep = long_tail_counts()
    for label in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == label))
        test, train = members[:TEST_PER_CLASS], members[TEST_PER_CLASS:][: keep[label]]
        for folder, chosen in ((test_dir, test), (train_dir, train)):
            for i in chosen:
                pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
                image = Image.fromarray(pixels, "L").resize((SIDE, SIDE),
                                                             Image.Resampling.BILINEAR)
                atomic_write_bytes(folder / str(label) / f"digit_{i:04d}.png",
                                   encode_png(image))
    (root / _DONE).write_text("ok\n")
    return train_dir, test_dir
