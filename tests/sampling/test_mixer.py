import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import (
    SYNTHETIC,
    BalancePlan,
    RampSchedule,
    SyntheticMixer,
    SyntheticRecipe,
    capped_pool,
    check_pool_cap,
    pool_limits,
)

REAL = np.array([0] * 60 + [1] * 6 + [2] * 12)
POOL = np.array([1] * 50 + [2] * 50 + [0] * 50)


def plan(mode="balanced_batches", **kwargs):
    return BalancePlan(REAL, num_classes=3, mode=mode, batch_size=12, seed=0, **kwargs)


def make_mixer(pool, real, *, eligible, schedule=None, seed=0, **recipe):
    """A mixer with the recipe of the given settings (``ratio=``, ``cap=``, ...)."""
    return SyntheticMixer(pool, real, eligible=eligible, recipe=SyntheticRecipe(**recipe),
                          schedule=schedule, seed=seed)


def minority():
    return np.array([False, True, True])


def synthetic_share(mixed, c):
    mask = mixed.labels == c
    return (mixed.source[mask] == SYNTHETIC).mean()


def test_class_balance_of_every_batch_is_unchanged_by_mixing():
    p = plan()
    epoch = p.epoch(0)
    mixed = make_mixer(POOL, REAL, eligible=minority(), ratio=0.5, seed=0).mix(epoch)
    np.testing.assert_array_equal(mixed.labels, epoch.labels)
    synthetic = mixed.source == SYNTHETIC
    assert synthetic.any()
    # a slot only changes source, never class
    assert (POOL[mixed.index[synthetic]] == mixed.labels[synthetic]).all()
    assert (REAL[mixed.index[~synthetic]] == mixed.labels[~synthetic]).all()


def test_minority_only_default_leaves_the_majority_real():
    mixed = make_mixer(POOL, REAL, eligible=minority(), ratio=0.5, seed=0).mix(plan().epoch(0))
    assert synthetic_share(mixed, 0) == 0.0
    assert synthetic_share(mixed, 1) > 0 and synthetic_share(mixed, 2) > 0


@pytest.mark.parametrize("ratio", [0.2, 0.9, (0.1, 0.3)])
def test_cap_is_never_exceeded_over_an_epoch(ratio):
    p = plan()
    for e in range(3):
        mixed = make_mixer(POOL, REAL, eligible=minority(), ratio=ratio, cap=0.4,
                               seed=0).mix(p.epoch(e))
        for c in (1, 2):
            assert synthetic_share(mixed, c) <= 0.4


def test_ratio_range_is_respected_per_batch():
    p = plan()
    mixer = make_mixer(POOL, REAL, eligible=np.ones(3, bool), ratio=(0.15, 0.25), cap=1.0,
                           seed=0)
    mixed = mixer.mix(p.epoch(0))
    shares = []
    for b in range(mixed.num_batches):
        part = mixed.batch_slice(b)
        size = part.stop - part.start
        share = (mixed.source[part] == SYNTHETIC).mean()
        # rounding to whole slots allows half a slot either side
        assert 0.15 - 0.5 / size <= share <= 0.25 + 0.5 / size
        shares.append(share)
    assert len(set(shares)) > 1  # batches draw their own ratio


def test_deficit_is_filled_with_synthetic_first_up_to_the_cap_then_duplicates():
    p = plan(mode="oversample")  # every class brought to 60 draws
    mixed = make_mixer(POOL, REAL, eligible=minority(), cap=0.6, seed=0).mix(p.epoch(0))
    for c, count in ((1, 6), (2, 12)):
        mask = mixed.labels == c
        synthetic = int((mixed.source[mask] == SYNTHETIC).sum())
        assert synthetic == min(60 - count, int(0.6 * 60))
        # every original image still appears: only repeats were replaced
        real = mixed.index[mask & (mixed.source != SYNTHETIC)]
        assert set(real.tolist()) == set(np.flatnonzero(REAL == c).tolist())


def test_ramp_scales_the_synthetic_share_from_zero():
    p = plan(mode="oversample")
    schedule = RampSchedule(epochs=8, warmup_epochs=1, ramp_fraction=0.25)
    mixer = make_mixer(POOL, REAL, eligible=minority(), cap=0.6, schedule=schedule, seed=0)
    counts = [int((mixer.mix(p.epoch(e)).source == SYNTHETIC).sum()) for e in range(4)]
    assert counts[0] == 0
    assert 0 < counts[1] < counts[2] == counts[3]


def test_class_with_no_real_image_is_trained_from_synthetic_alone():
    real = REAL.copy()
    pool = np.concatenate([POOL, [3] * 20])
    p = BalancePlan(real, num_classes=4, mode="balanced_batches", batch_size=12,
                    extra_classes=[3], seed=0)
    eligible = np.array([False, True, True, True])
    schedule = RampSchedule(epochs=10, warmup_epochs=3)
    mixed = make_mixer(pool, real, eligible=eligible, cap=0.6, schedule=schedule,
                           seed=0).mix(p.epoch(0))
    mask = mixed.labels == 3
    assert mask.sum() > 0
    assert (mixed.source[mask] == SYNTHETIC).all()  # exempt from cap and warm-up
    assert (pool[mixed.index[mask]] == 3).all()


def test_synthetic_weight_and_mixup():
    mixed = make_mixer(POOL, REAL, eligible=minority(), ratio=0.5, weight=0.3, mixup=True,
                           seed=0).mix(plan().epoch(0))
    synthetic = mixed.source == SYNTHETIC
    assert np.allclose(mixed.weights[synthetic], 0.3)
    assert np.allclose(mixed.weights[~synthetic], 1.0)
    assert (mixed.partner[synthetic] >= 0).all() and (mixed.partner[~synthetic] == -1).all()
    assert ((mixed.lam[synthetic] >= 0.3) & (mixed.lam[synthetic] <= 0.7)).all()
    assert (REAL[mixed.partner[synthetic]] == mixed.labels[synthetic]).all()


def test_mixing_is_deterministic():
    p = plan()
    a = make_mixer(POOL, REAL, eligible=minority(), ratio=(0.1, 0.4), seed=5).mix(p.epoch(2))
    b = make_mixer(POOL, REAL, eligible=minority(), ratio=(0.1, 0.4), seed=5).mix(p.epoch(2))
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.index, b.index)


def test_composition_accounts_for_every_draw():
    mixed = make_mixer(POOL, REAL, eligible=minority(), seed=0).mix(plan("oversample").epoch(0))
    composition = mixed.composition(["a", "b", "c"])
    for c, name in enumerate("abc"):
        row = composition[name]
        assert row["real"] + row["duplicated"] + row["synthetic"] == (mixed.labels == c).sum()


def test_composition_counts_every_real_image_drawn_once():
    # Bug fixed: when the ratio turned an image's first draw synthetic, its later real draw
    # counted as a repeat, so a class with 8 images, all drawn, reported fewer than 8.
    real = np.array([0] * 40 + [1] * 8)
    pool = np.array([1] * 30)
    for mode, ratio in (("balanced_batches", 0.25), ("oversample", 0.9)):
        p = BalancePlan(real, num_classes=2, mode=mode, batch_size=16, seed=0)
        mixer = make_mixer(pool, real, eligible=np.array([False, True]), ratio=ratio,
                               cap=0.6, seed=0)
        for epoch in range(4):
            mixed = mixer.mix(p.epoch(epoch))
            row = mixed.composition(["a", "b"])["b"]
            drawn = mixed.index[(mixed.labels == 1) & (mixed.source != SYNTHETIC)]
            assert row["real"] == len(np.unique(drawn)), (mode, epoch)
            assert row["real"] + row["duplicated"] == len(drawn)


def test_pool_limits_keep_the_cap_over_real_plus_distinct_synthetic():
    limits = pool_limits([75, 8, 3, 0], 0.6)
    assert limits.tolist() == [112, 12, 4, -1]  # -1: no real image, no limit
    for n_real, limit in zip([75, 8, 3], limits):
        assert limit / (n_real + limit) <= 0.6 < (limit + 1) / (n_real + limit + 1)


def test_capped_pool_is_a_seeded_choice_per_class():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 40)
    kept = capped_pool(labels, [10, 10, 0], 0.5, seed=3)
    assert np.bincount(labels[kept], minlength=3).tolist() == [10, 5, 40]
    np.testing.assert_array_equal(kept, capped_pool(labels, [10, 10, 0], 0.5, seed=3))
    assert not np.array_equal(kept, capped_pool(labels, [10, 10, 0], 0.5, seed=4))


@pytest.mark.parametrize("cap", [0.0, 1.0, 1.5, -0.1])
def test_invalid_pool_cap(cap):
    with pytest.raises(ConfigError, match=r"synthetic_pool_cap must be in \(0, 1\)"):
        check_pool_cap(cap)
