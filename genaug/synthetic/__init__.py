"""Synthetic samples: the provenance cache, the ramp schedule and class-aware mixing."""

from genaug._io import atomic_write_bytes, write_json
from genaug.synthetic._cache import (
    META_CSV,
    META_JSONL,
    CacheProblems,
    CacheWriter,
    SyntheticCache,
)
from genaug.synthetic._import import import_folder
from genaug.synthetic._mixer import REAL, SYNTHETIC, MixedEpoch, SyntheticMixer, check_ratio
from genaug.synthetic._pool import capped_pool, check_pool_cap, pool_limits, quota_pool
from genaug.synthetic._schedule import RampSchedule
from genaug.synthetic._status import composition_status

__all__ = [
    "META_CSV",
    "META_JSONL",
    "REAL",
    "SYNTHETIC",
    "CacheProblems",
    "CacheWriter",
    "MixedEpoch",
    "RampSchedule",
    "SyntheticCache",
    "SyntheticMixer",
    "atomic_write_bytes",
    "capped_pool",
    "check_pool_cap",
    "check_ratio",
    "composition_status",
    "import_folder",
    "pool_limits",
    "quota_pool",
    "write_json",
]
