"""Dataset analysis: class balance, unusable files, image modes and sizes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from genaug.data._index import DatasetIndex

TINY_SIDE = 16
HUGE_PIXELS = 40_000_000
#: PIL modes of single-channel images (with or without alpha).
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def infer_color_mode(index: DatasetIndex) -> str:
    """The colour mode ``auto`` stands for: ``grayscale`` when most images of ``index`` are
    single-channel, else ``rgb`` (also when the index was not validated and has no modes)."""
    modes = Counter(index.modes or ())
    gray = sum(n for mode, n in modes.items() if mode in GRAY_MODES)
    return "grayscale" if gray * 2 > sum(modes.values()) else "rgb"


def verify_class_balance(data_dir, class_names: Sequence[str] | None = None) -> dict[str, int]:
    """Per-class image counts of ``data_dir`` (a folder or CSV manifest), zeros included.

    Corrupt and non-image files are not counted.
    """
    index = DatasetIndex.load(data_dir, class_names=class_names)
    return dict(zip(index.class_names, index.counts().tolist()))


def analyze_dataset(index: DatasetIndex) -> dict:
    """Everything ``genaug analyze`` reports about an index, as a JSON-ready dict."""
    counts = index.counts()
    total = int(counts.sum())
    nonzero = counts[counts > 0]
    modes = Counter(index.modes or ())
    sizes = Counter(index.sizes or ())
    widths = [w for w, _ in index.sizes or ()]
    heights = [h for _, h in index.sizes or ()]
    small = [p for p, (w, h) in zip(index.paths, index.sizes or ()) if min(w, h) < TINY_SIDE]
    large = [p for p, (w, h) in zip(index.paths, index.sizes or ()) if w * h > HUGE_PIXELS]
    return {
        "root": str(index.root),
        "num_images": total,
        "num_classes": index.num_classes,
        "classes": {
            name: {"count": int(n), "share": (float(n) / total) if total else 0.0}
            for name, n in zip(index.class_names, counts)
        },
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else None,
        "empty_classes": [n for n, c in zip(index.class_names, counts) if c == 0],
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in index.skipped],
        "modes": dict(modes),
        "sizes": {
            "distinct": len(sizes),
            "most_common": [{"width": w, "height": h, "count": c}
                            for (w, h), c in sizes.most_common(5)],
            "min": [int(np.min(widths)), int(np.min(heights))] if widths else None,
            "max": [int(np.max(widths)), int(np.max(heights))] if widths else None,
        },
        "tiny_images": small,
        "huge_images": large,
        "splits": (dict(Counter(index.splits)) if index.splits is not None else None),
    }
