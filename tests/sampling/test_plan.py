import math

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import (
    BalancePlan,
    Stream,
    real_image_stream,
    rng_for,
    stream_take,
    synthetic_image_stream,
)

LABELS = np.array([0] * 40 + [1] * 3 + [2] * 11)


def batch_counts(epoch, k):
    return [np.bincount(epoch.labels[epoch.batch_slice(b)], minlength=k)
            for b in range(epoch.num_batches)]


def test_same_seed_same_batches_different_seed_different():
    a = BalancePlan(LABELS, num_classes=3, seed=7).epoch(0)
    b = BalancePlan(LABELS, num_classes=3, seed=7).epoch(0)
    c = BalancePlan(LABELS, num_classes=3, seed=8).epoch(0)
    np.testing.assert_array_equal(a.real_index, b.real_index)
    assert not np.array_equal(a.real_index, c.real_index)


def test_each_epoch_reshuffles_and_is_rebuilt_from_seed_and_epoch_alone():
    plan = BalancePlan(LABELS, num_classes=3, seed=3)
    first, second = plan.epoch(0), plan.epoch(1)
    assert not np.array_equal(first.real_index, second.real_index)
    again = BalancePlan(LABELS, num_classes=3, seed=3).epoch(1)
    np.testing.assert_array_equal(second.real_index, again.real_index)


def test_oversampling_reaches_exact_target_with_ceil_factor():
    plan = BalancePlan(LABELS, num_classes=3, mode="oversample", seed=0)
    epoch = plan.epoch(0)
    assert plan.targets.tolist() == [40, 40, 40]
    for c, count in enumerate([40, 3, 11]):
        draws = epoch.real_index[epoch.labels == c]
        assert len(draws) == 40
        uses = np.bincount(draws, minlength=len(LABELS))[LABELS == c]
        # every image of the class is used floor or ceil(target / count) times
        assert uses.max() == math.ceil(40 / count)
        assert uses.min() == 40 // count
        assert epoch.duplicate[epoch.labels == c].sum() == 40 - count


def test_epoch_size_splits_equally_and_undersampled_class_rotates_through_all_images():
    plan = BalancePlan(LABELS, num_classes=3, mode="oversample", epoch_size=len(LABELS),
                       seed=0)
    assert plan.epoch_size == len(LABELS)
    assert sorted(plan.targets.tolist()) == [18, 18, 18]
    seen = set()
    for e in range(3):
        epoch = plan.epoch(e)
        seen.update(epoch.real_index[epoch.labels == 0].tolist())
    assert seen == set(np.flatnonzero(LABELS == 0).tolist())


def test_balanced_batches_have_equal_class_counts():
    plan = BalancePlan(LABELS, num_classes=3, mode="balanced_batches", batch_size=8,
                       epoch_size=100, seed=1)
    epoch = plan.epoch(0)
    assert len(epoch) == 100
    for counts in batch_counts(epoch, 3):
        assert counts.max() - counts.min() <= 1
    assert len(plan) == math.ceil(100 / 8)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_run_of_consecutive_slots_in_a_balanced_batch_is_balanced(shuffle):
    """A distribution strategy gives each replica consecutive slots of the global batch (a
    half of it on 2 replicas): every such share holds each class equally (+-1) too."""
    labels = np.repeat(np.arange(5), [40, 3, 11, 7, 20])
    plan = BalancePlan(labels, num_classes=5, mode="balanced_batches", batch_size=22,
                       epoch_size=300, shuffle=shuffle, seed=3)
    for epoch in (plan.epoch(0), plan.epoch(1)):
        for b in range(epoch.num_batches):
            batch = epoch.labels[epoch.batch_slice(b)]
            assert np.ptp(np.bincount(batch, minlength=5)) <= 1
            for start in range(len(batch)):
                for stop in range(start + 1, len(batch) + 1):
                    assert np.ptp(np.bincount(batch[start:stop], minlength=5)) <= 1, (
                        b, start, stop, batch.tolist())


def test_none_mode_uses_every_image_once():
    plan = BalancePlan(LABELS, num_classes=3, mode="none", seed=0)
    epoch = plan.epoch(0)
    assert sorted(epoch.real_index.tolist()) == list(range(len(LABELS)))
    assert not epoch.duplicate.any()


def test_class_without_images_is_not_sampled_but_extra_class_is():
    plan = BalancePlan(LABELS, num_classes=4, mode="oversample", seed=0)
    assert plan.targets[3] == 0
    plan = BalancePlan(LABELS, num_classes=4, mode="oversample", extra_classes=[3], seed=0)
    epoch = plan.epoch(0)
    assert plan.targets[3] == 40
    assert (epoch.real_index[epoch.labels == 3] == -1).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "smote"}, "balance must be one of"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"epoch_size": 2}, "epoch_size must be 'max' or an integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_invalid_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BalancePlan(LABELS, num_classes=3, **kwargs)


def test_stream_take_is_contiguous_across_calls():
    whole = stream_take(5, 0, 23, seed=1, key=9)
    parts = np.concatenate([stream_take(5, 0, 10, seed=1, key=9),
                            stream_take(5, 10, 13, seed=1, key=9)])
    np.testing.assert_array_equal(whole, parts)
    for cycle in range(4):
        assert sorted(whole[cycle * 5:(cycle + 1) * 5].tolist()) == list(range(5))


def test_per_class_stream_keys_never_collide_and_keep_their_first_layout():
    classes = range(5000)
    real = [real_image_stream(c) for c in classes]
    synthetic = [synthetic_image_stream(c) for c in classes]
    keys = real + synthetic
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {int(s) for s in Stream}
    # numpy seeds ignore trailing zeros, so the streams themselves are compared too
    first_draws = {rng_for(7, key, 0).integers(2**63) for key in keys}
    assert len(first_draws) == len(keys)
    assert real[:1000] == [1000 + c for c in range(1000)]
    assert synthetic[:1000] == [2000 + c for c in range(1000)]
