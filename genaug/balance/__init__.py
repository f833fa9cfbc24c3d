"""Balancing: the per-epoch sampling plan and class weights."""

from genaug.balance._plan import (
    BALANCE_MODES,
    Balance,
    BalancePlan,
    Batched,
    EpochPlan,
    largest_remainder,
    resolve_seed,
    rng_for,
    stream_take,
)
from genaug.balance._weights import compute_class_weights, delivered_class_weights

__all__ = [
    "BALANCE_MODES",
    "Balance",
    "BalancePlan",
    "Batched",
    "EpochPlan",
    "compute_class_weights",
    "delivered_class_weights",
    "largest_remainder",
    "resolve_seed",
    "rng_for",
    "stream_take",
]
