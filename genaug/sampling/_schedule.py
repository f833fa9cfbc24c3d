"""The ramp schedule: how much of the synthetic ratio applies at each epoch."""

from __future__ import annotations

from genaug.exceptions import ConfigError


def check_schedule(*, warmup_epochs=0, ramp_fraction=0.25, cooldown_epochs=0
                   ) -> tuple[int, float, int]:
    """Validate a schedule's settings that do not depend on the run's length: warm-up and
    cool-down epochs >= 0, a ramp fraction in [0, 1]; returns them as ``(int, float, int)``."""
    if int(warmup_epochs) < 0:
        raise ConfigError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if not 0.0 <= float(ramp_fraction) <= 1.0:
        raise ConfigError(f"ramp_fraction must be in [0, 1], got {ramp_fraction}")
    if int(cooldown_epochs) < 0:
        raise ConfigError(f"cooldown_epochs must be >= 0, got {cooldown_epochs}")
    return int(warmup_epochs), float(ramp_fraction), int(cooldown_epochs)


class RampSchedule:
    """Synthetic share multiplier per epoch: 0 during warm-up, a linear ramp to 1, a hold at 1,
    and 0 again for the cool-down (a real-only, balanced finish).

    Parameters
    ----------
    epochs : int
        Total epochs of the run (the ramp length is a fraction of it).
    warmup_epochs : int, default 0
        Epochs trained on real images only.
    ramp_fraction : float, default 0.25
        Share of ``epochs`` over which the factor rises linearly from the end of warm-up to 1.
        0 switches to the full ratio right after warm-up.
    cooldown_epochs : int, default 0
        The last epochs of the run, trained on real images only (factor 0): the classifier
        finishes on the real distribution, balanced as the loader balances it. With a
        cool-down, ``warmup_epochs + cooldown_epochs`` must leave at least one epoch.

    Examples
    --------
    >>> [round(RampSchedule(epochs=8, warmup_epochs=1, ramp_fraction=0.25).factor(e), 2)
    ...  for e in range(5)]
    [0.0, 0.5, 1.0, 1.0, 1.0]
    >>> RampSchedule(epochs=6, ramp_fraction=0, cooldown_epochs=2).factors()
    [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """

    def __init__(self, *, epochs: int, warmup_epochs: int = 0, ramp_fraction: float = 0.25,
                 cooldown_epochs: int = 0):
        if int(epochs) < 1:
            raise ConfigError(f"epochs must be at least 1, got {epochs}")
        warmup_epochs, ramp_fraction, cooldown_epochs = check_schedule(
            warmup_epochs=warmup_epochs, ramp_fraction=ramp_fraction,
            cooldown_epochs=cooldown_epochs)
        if cooldown_epochs > 0 and warmup_epochs + cooldown_epochs >= int(epochs):
            raise ConfigError(f"`cooldown_epochs`: `warmup_epochs` + `cooldown_epochs` must be "
                              f"less than `epochs`, got {warmup_epochs} + {cooldown_epochs} >= "
                              f"{epochs}")
        self.epochs = int(epochs)
        self.warmup_epochs = warmup_epochs
        self.ramp_fraction = ramp_fraction
        self.cooldown_epochs = cooldown_epochs

    @property
    def ramp_epochs(self) -> float:
        return self.ramp_fraction * self.epochs

    def factor(self, epoch: int) -> float:
        """Multiplier in [0, 1] applied to the synthetic ratio at ``epoch`` (0-based)."""
        if self.cooldown_epochs and int(epoch) >= self.epochs - self.cooldown_epochs:
            return 0.0
        steps = int(epoch) - self.warmup_epochs + 1
        if steps <= 0:
            return 0.0
        if self.ramp_epochs <= 1.0:
            return 1.0
        return min(1.0, steps / self.ramp_epochs)

    def factors(self) -> list[float]:
        """The factor of every epoch of the run."""
        return [self.factor(epoch) for epoch in range(self.epochs)]

    def callback(self, loader):
        """A Keras callback that moves ``loader`` to each epoch as it begins.

        ``loader`` is anything with ``set_epoch(epoch)`` (both genaug loaders), so a run that
        starts at ``initial_epoch`` or is resumed gets the schedule's value for that epoch.
        """
        import keras

        class RampCallback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                loader.set_epoch(epoch)

        return RampCallback()

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                "ramp_fraction": self.ramp_fraction, "cooldown_epochs": self.cooldown_epochs,
                "factors": self.factors()}

    def __repr__(self) -> str:
        return (f"RampSchedule(epochs={self.epochs}, warmup_epochs={self.warmup_epochs}, "
                f"ramp_fraction={self.ramp_fraction}, cooldown_epochs={self.cooldown_epochs})")
