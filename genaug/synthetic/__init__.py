"""Synthetic samples: the provenance cache, the ramp schedule and class-aware mixing."""

from genaug._io import atomic_write_bytes, write_json
from genaug.synthetic._cache import (
    META_CSV,
    META_JSONL,
    CacheProblems,
    CacheWriter,
    SyntheticCache,
)
from genaug.synthetic._fill import FILL_RULES, check_fill_to, fill_shares, resolve_fill_to
from genaug.synthetic._import import import_folder
from genaug.synthetic._mixer import REAL, SYNTHETIC, MixedEpoch, SyntheticMixer, check_ratio
from genaug.synthetic._pool import capped_pool, check_pool_cap, pool_limits, quota_pool
from genaug.synthetic._schedule import RampSchedule
from genaug.synthetic._selection import (
    BANDS,
    ClassPrototypes,
    FeatureSelection,
    bands_of,
    check_keep_bands,
    select_by_feature_distance,
)
from genaug.synthetic._status import composition_status

__all__ = [
    "BANDS",
    "META_CSV",
    "META_JSONL",
    "REAL",
    "SYNTHETIC",
    "FILL_RULES",
    "CacheProblems",
    "CacheWriter",
    "ClassPrototypes",
    "FeatureSelection",
    "MixedEpoch",
    "RampSchedule",
    "SyntheticCache",
    "SyntheticMixer",
    "atomic_write_bytes",
    "bands_of",
    "capped_pool",
    "check_fill_to",
    "check_keep_bands",
    "check_pool_cap",
    "check_ratio",
    "composition_status",
    "fill_shares",
    "import_folder",
    "pool_limits",
    "quota_pool",
    "resolve_fill_to",
    "select_by_feature_distance",
    "write_json",
]
