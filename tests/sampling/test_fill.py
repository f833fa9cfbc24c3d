"""The fill threshold (``synthetic_fill_to``): which classes are filled, and up to what."""

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import (
    SYNTHETIC,
    BalancePlan,
    SyntheticMixer,
    SyntheticRecipe,
    check_fill_to,
    fill_shares,
    resolve_fill_to,
)

# Real images per class: 40, 20, 8, 4; every class has a large synthetic pool.
REAL = np.repeat(np.arange(4), [40, 20, 8, 4])
POOL = np.repeat(np.arange(4), 100)
ALL = np.ones(4, dtype=bool)


def synthetic_draws(mixed):
    return np.bincount(mixed.labels[mixed.source == SYNTHETIC], minlength=4)


def mix(epoch=0, **kwargs):
    plan = BalancePlan(REAL, num_classes=4, mode="balanced_batches", batch_size=16, seed=0)
    return SyntheticMixer(POOL, REAL, eligible=ALL, recipe=SyntheticRecipe(**kwargs),
                          seed=0).mix(plan.epoch(epoch))


def test_fill_shares_are_the_synthetic_share_of_a_class_filled_to_the_threshold():
    np.testing.assert_allclose(fill_shares([40, 20, 8, 4], 20), [0.0, 0.0, 0.6, 0.8])
    np.testing.assert_allclose(fill_shares([40, 0], None), [1.0, 1.0])


def test_fill_rules_resolve_on_the_classes_with_real_images():
    assert resolve_fill_to("mean", [40, 20, 8, 4, 0]) == 18
    assert resolve_fill_to("median", [40, 20, 8, 4, 0]) == 14
    assert resolve_fill_to(12, [1, 2]) == 12 and resolve_fill_to(None, [1]) is None
    for bad in (0, -3, "most", 2.5, True):
        with pytest.raises(ConfigError, match="synthetic_fill_to must be"):
            check_fill_to(bad)


def test_classes_at_or_above_the_threshold_get_none_and_the_others_at_most_their_fill_share():
    mixed = mix(cap=1.0, fill_to=20)
    draws = synthetic_draws(mixed)
    per_class = np.bincount(mixed.labels, minlength=4)
    assert draws[0] == draws[1] == 0  # 40 and 20 real images: not below 20
    assert 0 < draws[2] <= np.floor(0.6 * per_class[2])
    assert 0 < draws[3] <= np.floor(0.8 * per_class[3])
    # Without the threshold every class with repeated draws is filled.
    assert synthetic_draws(mix(cap=1.0))[1] > 0


def test_the_stricter_of_cap_and_fill_wins_and_the_result_is_deterministic():
    mixed = mix(cap=0.5, fill_to=20)
    per_class = np.bincount(mixed.labels, minlength=4)
    draws = synthetic_draws(mixed)
    assert draws[2] <= np.floor(0.5 * per_class[2]) and draws[3] <= np.floor(0.5 * per_class[3])
    again = mix(cap=0.5, fill_to=20)
    np.testing.assert_array_equal(mixed.index, again.index)
    np.testing.assert_array_equal(mixed.source, again.source)
    ratio = mix(ratio=1.0, cap=1.0, fill_to=20)  # the ratio path obeys it as well
    assert synthetic_draws(ratio)[:2].tolist() == [0, 0]
    assert synthetic_draws(ratio)[3] <= np.floor(0.8 * per_class[3])
