"""Synthetic samples: the provenance cache, the ramp schedule and class-aware mixing."""

from genaug.synthetic._cache import (
    META_CSV,
    META_JSONL,
    CacheProblems,
    CacheWriter,
    SyntheticCache,
    atomic_write_bytes,
)

__all__ = [
    "META_CSV",
    "META_JSONL",
    "CacheProblems",
    "CacheWriter",
    "SyntheticCache",
    "atomic_write_bytes",
]
