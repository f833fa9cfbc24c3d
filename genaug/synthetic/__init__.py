"""Synthetic samples: the provenance cache, the ramp schedule and class-aware mixing."""

from genaug._io import atomic_write_bytes, write_json
from genaug.synthetic._cache import (
    META_CSV,
    META_JSONL,
    CacheProblems,
    CacheWriter,
    SyntheticCache,
    encode_png,
)
from genaug.synthetic._mixer import MixedEpoch, SyntheticMixer, check_ratio
from genaug.synthetic._schedule import RampSchedule

__all__ = [
    "META_CSV",
    "META_JSONL",
    "CacheProblems",
    "CacheWriter",
    "MixedEpoch",
    "RampSchedule",
    "SyntheticCache",
    "SyntheticMixer",
    "atomic_write_bytes",
    "check_ratio",
    "encode_png",
    "write_json",
]
