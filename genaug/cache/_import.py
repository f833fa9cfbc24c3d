"""Import images made elsewhere into a synthetic cache, one record each."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from genaug.cache._cache import CacheWriter
from genaug.data import DatasetIndex, convert_mode
from genaug.exceptions import CacheError

EXTERNAL = {"backend": "external", "model": None, "model_hash": None}


def read_source_map(path) -> dict[str, str]:
    """``file,source_id`` rows (file relative to the imported folder) -> mapping."""
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"source map not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "source_id"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows, start=1) if len(r) < 2]
    if bad:
        raise CacheError(f"{path}: rows {bad[:5]} need file,source_id")
    return {Path(r[0].strip()).as_posix(): r[1].strip() for r in rows}


def import_folder(source_dir, cache_dir, *, class_names=None, source_map=None) -> dict:
    """Copy ``source_dir/<class>/<image>`` into the cache as PNGs with ``external`` records.

    Images already in the cache (same content, hence same id) are not added twice. Returns
    counts of imported, already present and skipped (unreadable) files, and the source-map
    entries that name no imported file (``unmatched_source_map``: a typo there would silently
    disable the leakage guard for that image).
    """
    index = DatasetIndex.from_directory(source_dir, class_names=class_names)
    sources = read_source_map(source_map) if source_map else {}
    imported = present = 0
    with CacheWriter(cache_dir) as writer:
        for path, rel, label in zip(index.paths, index.ids, index.labels):
            with Image.open(path) as image:
                mode = "grayscale" if image.mode in ("L", "I;16", "I", "F", "1") else \
                    ("rgba" if image.mode in ("RGBA", "LA") else "rgb")
                record = writer.add(convert_mode(image, mode),
                                    class_name=index.class_names[label], generator=EXTERNAL,
                                    source_id=sources.get(rel), attempts=1,
                                    attributes={"imported_from": rel}, quality={})
            if record is None:
                present += 1
            else:
                imported += 1
    return {"imported": imported, "already_present": present,
            "skipped": [{"path": s.path, "reason": s.reason} for s in index.skipped],
            "unmatched_source_map": sorted(set(sources) - set(index.ids))}
