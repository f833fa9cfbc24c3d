"""Paired per-seed differences and the plain-words verdict."""

import math

import pytest

from genaug.evidence import paired_difference
from genaug.evidence._stats import HELPED, HURT, UNCLEAR, verdict_sentence


def test_consistent_gain_is_helped():
    result = paired_difference([0.70, 0.72, 0.71], [0.60, 0.61, 0.615], seeds=[0, 1, 2])
    assert result.outcome == HELPED
    assert result.n == 3 and result.positive == 3 and result.negative == 0
    assert result.mean == pytest.approx((0.10 + 0.11 + 0.095) / 3)
    assert result.ci_low > 0
    assert verdict_sentence("synthetic data", result, metric="balanced accuracy").startswith(
        "synthetic data helped (balanced accuracy +0.102")


def test_consistent_loss_is_hurt():
    result = paired_difference([0.58, 0.59, 0.585], [0.60, 0.61, 0.605])
    assert result.outcome == HURT
    assert verdict_sentence("synthetic data", result, metric="kappa").startswith(
        "synthetic data hurt (kappa -0.020")


def test_mixed_signs_is_no_clear_difference():
    result = paired_difference([0.65, 0.58, 0.61], [0.60, 0.61, 0.60])
    assert result.outcome == UNCLEAR
    assert "includes 0" in result.reason
    assert verdict_sentence("synthetic data", result, metric="m").startswith(
        "no clear difference at these seeds")


def test_tiny_but_consistent_difference_is_below_threshold():
    result = paired_difference([0.6011, 0.6012, 0.6010], [0.600, 0.600, 0.600], threshold=0.01)
    assert result.ci_low > 0  # statistically consistent ...
    assert result.outcome == UNCLEAR  # ... but practically nothing
    assert "threshold" in result.reason


def test_two_agreeing_seeds_with_noise_are_not_enough():
    # Both seeds better, but the 95 % t-interval with 1 degree of freedom is wide.
    result = paired_difference([0.65, 0.70], [0.60, 0.60])
    assert result.positive == 2
    assert result.outcome == UNCLEAR


def test_single_seed_never_decides():
    result = paired_difference([0.9], [0.1])
    assert result.outcome == UNCLEAR and result.std is None and result.ci_low is None
    assert "single seed" in result.reason


def test_failed_runs_drop_the_seed_from_both_arms():
    result = paired_difference([0.7, None, 0.72, float("nan")], [0.6, 0.6, 0.61, 0.6],
                               seeds=[0, 1, 2, 3])
    assert result.n == 2 and result.seeds == [0, 2]
    assert result.differences == pytest.approx([0.1, 0.11])


def test_t_interval_matches_textbook_value():
    # diffs 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653
    result = paired_difference([1, 2, 3], [0, 0, 0])
    half = 4.302652729911275 / math.sqrt(3)
    assert result.ci_low == pytest.approx(2 - half)
    assert result.ci_high == pytest.approx(2 + half)


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference([0.1, 0.2], [0.1])
