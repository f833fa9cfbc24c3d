"""The synthetic cache: its format, writer and import, and the training status layout.

The contract between the side that produces images (generation, live) and the side that
trains on them (sources, sampling, loaders).
"""

from genaug.cache._cache import (
    ENV_REPORT,
    GENERATION_RUN,
    GENERATION_SUMMARY,
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
from genaug.cache._import import import_folder
from genaug.cache._rejections import REJECTIONS_LOG, RejectionLog, read_rejections
from genaug.cache._status import STATUS_FILE, TrainingStatus

__all__ = [
    "CacheProblems",
    "CacheWriter",
    "ENV_REPORT",
    "GENERATION_RUN",
    "GENERATION_SUMMARY",
    "LOCK_FILE",
    "META_CSV",
    "META_JSONL",
    "REJECTIONS_LOG",
    "RejectionLog",
    "STATUS_FILE",
    "SyntheticCache",
    "TrainingStatus",
    "cache_in_use",
    "import_folder",
    "lock_cache",
    "read_rejections",
    "repair_cache",
]
