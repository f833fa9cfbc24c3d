"""Synthetic samples: the provenance cache, the ramp schedule and class-aware mixing."""

from genaug._io import atomic_write_bytes, write_json
from genaug.synthetic._allocation import (
    ConfusionAllocation,
    allocate_by_confusion,
    check_cap,
    class_caps,
)
from genaug.synthetic._cache import (
    LOCK_FILE,
    META_CSV,
    META_JSONL,
    CacheProblems,
    CacheWriter,
    SyntheticCache,
    cache_in_use,
    lock_cache,
    repair_cache,
)
from genaug.synthetic._fill import FILL_RULES, check_fill_to, fill_shares, resolve_fill_to
from genaug.synthetic._import import import_folder
from genaug.synthetic._mixer import (
    DEFAULT_CAP,
    REAL,
    SYNTHETIC,
    MixedEpoch,
    SyntheticMixer,
    check_ratio,
)
from genaug.synthetic._pool import capped_pool, check_pool_cap, pool_limits, quota_pool
from genaug.synthetic._schedule import RampSchedule
from genaug.synthetic._selection import (
    BANDS,
    DEFAULT_RADIUS_FLOOR,
    ClassMargins,
    ClassPrototypes,
    FeatureSelection,
    MarginSelection,
    bands_of,
    check_keep_bands,
    select_by_class_margin,
    select_by_feature_distance,
)
from genaug.synthetic._status import composition_status

__all__ = [
    "BANDS",
    "DEFAULT_CAP",
    "DEFAULT_RADIUS_FLOOR",
    "META_CSV",
    "META_JSONL",
    "REAL",
    "SYNTHETIC",
    "FILL_RULES",
    "LOCK_FILE",
    "CacheProblems",
    "CacheWriter",
    "ConfusionAllocation",
    "ClassMargins",
    "ClassPrototypes",
    "FeatureSelection",
    "MarginSelection",
    "MixedEpoch",
    "RampSchedule",
    "SyntheticCache",
    "SyntheticMixer",
    "allocate_by_confusion",
    "atomic_write_bytes",
    "bands_of",
    "cache_in_use",
    "capped_pool",
    "class_caps",
    "check_cap",
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
    "select_by_class_margin",
    "select_by_feature_distance",
    "lock_cache",
    "repair_cache",
    "write_json",
]
