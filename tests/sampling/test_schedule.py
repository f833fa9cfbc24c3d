import pytest

from genaug.exceptions import ConfigError
from genaug.sampling import RampSchedule


def test_zero_during_warmup_then_linear_ramp_over_the_fraction_of_epochs():
    schedule = RampSchedule(epochs=20, warmup_epochs=2, ramp_fraction=0.25)
    factors = [schedule.factor(e) for e in range(20)]
    assert factors[:2] == [0.0, 0.0]
    assert factors[2:7] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[7:] == [1.0] * 13


def test_default_ramp_is_a_quarter_of_the_epochs_from_the_start():
    schedule = RampSchedule(epochs=8)
    assert [schedule.factor(e) for e in range(4)] == pytest.approx([0.5, 1.0, 1.0, 1.0])


def test_no_ramp_means_full_ratio_after_warmup():
    schedule = RampSchedule(epochs=5, warmup_epochs=1, ramp_fraction=0.0)
    assert [schedule.factor(e) for e in range(3)] == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"epochs": 5, "warmup_epochs": -1}, "warmup_epochs must be >= 0"),
    ({"epochs": 5, "ramp_fraction": 1.5}, r"ramp_fraction must be in \[0, 1\]"),
])
def test_invalid(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RampSchedule(**kwargs)


def test_keras_callback_moves_the_loader_at_each_epoch_start():
    class Loader:
        epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    loader = Loader()
    callback = RampSchedule(epochs=3).callback(loader)
    for epoch in (0, 1, 2):
        callback.on_epoch_begin(epoch)
    assert loader.epochs == [0, 1, 2]


def test_cooldown_returns_to_zero_for_the_last_epochs():
    schedule = RampSchedule(epochs=10, warmup_epochs=1, ramp_fraction=0.2, cooldown_epochs=3)
    assert schedule.factors() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0,
                                                0.0])
    assert schedule.to_dict() == {"epochs": 10, "warmup_epochs": 1, "ramp_fraction": 0.2,
                                  "cooldown_epochs": 3, "factors": schedule.factors()}
    assert "cooldown_epochs=3" in repr(schedule)
    # Without a cool-down nothing changes, also when the warm-up covers the whole run.
    assert RampSchedule(epochs=3, warmup_epochs=3).factors() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 5, "cooldown_epochs": -1}, "cooldown_epochs must be >= 0"),
    ({"epochs": 5, "cooldown_epochs": 5}, "`cooldown_epochs`: `warmup_epochs`"),
    ({"epochs": 5, "warmup_epochs": 2, "cooldown_epochs": 3}, r"2 \+ 3 >= 5"),
])
def test_invalid_cooldown(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RampSchedule(**kwargs)
