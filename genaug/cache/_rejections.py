"""The rejections log: the candidates the quality gates turned down, beside the cache's records.

``genaug generate`` appends one JSON line per rejected attempt (``id``, ``class``,
``plan_index``, ``attempt``, ``seed``, ``quality``, ``exhausted``); the generation summary and
:func:`genaug.evidence.measure_quality` read it back. A resumed run may log an attempt again,
so readers keep the first line of each ``(id, attempt)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from genaug.exceptions import CacheError

REJECTIONS_LOG = "generation_rejections.jsonl"


def read_rejections(cache_dir) -> list[dict]:
    """The rejected candidates logged in a cache, one per id and attempt, in logged order.

    Lines torn by a crash are skipped; a cache without a log has none.
    """
    path = Path(cache_dir) / REJECTIONS_LOG
    if not path.is_file():
        return []
    seen, entries = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "id" not in entry or "attempt" not in entry:
            continue
        key = (entry["id"], entry["attempt"])
        if key not in seen:
            seen.add(key)
            entries.append(entry)
    return entries


class RejectionLog:
    """The rejections log of ``cache_dir``, appended one fsynced line at a time.

    Attributes
    ----------
    entries : list of dict
        What was logged before (:func:`read_rejections`), then each appended entry.
    """

    def __init__(self, cache_dir):
        self.path = Path(cache_dir) / REJECTIONS_LOG
        self.entries = read_rejections(cache_dir)
        self._handle = None

    def append(self, entry: dict) -> None:
        if self._handle is None:
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    torn = handle.read(1) != b"\n"
                if torn:
                    with open(self.path, "ab") as handle:
                        handle.write(b"\n")
            self._handle = open(self.path, "ab", buffering=0)
        size = os.fstat(self._handle.fileno()).st_size
        try:
            self._handle.write((json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(self._handle.fileno())
        except OSError as error:  # a full disk: no part of the line stays
            os.ftruncate(self._handle.fileno(), size)
            raise CacheError(f"cannot write {self.path}: {error.strerror or error}") from None
        self.entries.append(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

