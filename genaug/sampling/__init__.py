"""Sampling: what each epoch draws.

The balance plan and class weights, the synthetic recipe (every setting of the mixing, in one
frozen object), and the synthetic mixer with its schedule, fill threshold, pool cap, confusion
allocation and feature-space selection.
"""

from genaug.sampling._allocation import (
    ConfusionAllocation,
    allocate_by_confusion,
    check_cap,
    class_caps,
)
from genaug.sampling._fill import FILL_RULES, check_fill_to, fill_shares, resolve_fill_to
from genaug.sampling._mixer import REAL, SYNTHETIC, MixedEpoch, SyntheticMixer
from genaug.sampling._plan import (
    BALANCE_MODES,
    Balance,
    BalancePlan,
    Batched,
    EpochPlan,
    Stream,
    largest_remainder,
    real_image_stream,
    resolve_seed,
    rng_for,
    stream_take,
    synthetic_image_stream,
)
from genaug.sampling._pool import capped_pool, check_pool_cap, pool_limits, quota_pool
from genaug.sampling._recipe import (
    DEFAULT_CAP,
    RecipeFlag,
    RecipeOption,
    SyntheticRecipe,
    check_ratio,
)
from genaug.sampling._schedule import RampSchedule
from genaug.sampling._selection import (
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
from genaug.sampling._weights import compute_class_weights, delivered_class_weights

__all__ = [
    "BALANCE_MODES",
    "BANDS",
    "Balance",
    "BalancePlan",
    "Batched",
    "ClassMargins",
    "ClassPrototypes",
    "ConfusionAllocation",
    "DEFAULT_CAP",
    "DEFAULT_RADIUS_FLOOR",
    "EpochPlan",
    "FILL_RULES",
    "FeatureSelection",
    "MarginSelection",
    "MixedEpoch",
    "REAL",
    "RampSchedule",
    "RecipeFlag",
    "RecipeOption",
    "SYNTHETIC",
    "Stream",
    "SyntheticMixer",
    "SyntheticRecipe",
    "allocate_by_confusion",
    "bands_of",
    "capped_pool",
    "check_cap",
    "check_fill_to",
    "check_keep_bands",
    "check_pool_cap",
    "check_ratio",
    "class_caps",
    "compute_class_weights",
    "delivered_class_weights",
    "fill_shares",
    "largest_remainder",
    "pool_limits",
    "quota_pool",
    "real_image_stream",
    "resolve_fill_to",
    "resolve_seed",
    "rng_for",
    "select_by_class_margin",
    "select_by_feature_distance",
    "stream_take",
    "synthetic_image_stream",
]
