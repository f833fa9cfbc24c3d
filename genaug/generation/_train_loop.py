"""The optimisation loop both of genaug's trainers share (the DDPM and the LoRA adapter): steps
until a step or time budget or Ctrl-C, a loss log that costs one host synchronisation per
``log_every`` steps, a progress bar, and a clear stop on divergence."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genaug.exceptions import ConfigError
from genaug.generation._utils import progress_bar


def check_budget(max_steps, max_seconds) -> None:
    """Reject a training budget that would never stop or never start."""
    if max_steps is None and max_seconds is None:
        raise ConfigError("give `max_steps` or `max_seconds` (or both)")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"`max_steps` must be at least 1, got {max_steps}")
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"`max_seconds` must be positive, got {max_seconds}")


@dataclass
class TrainingResult:
    """What one of genaug's trainers did and where it saved the result (the fields both
    :class:`~genaug.generation.FitResult` and :class:`~genaug.generation.LoraFitResult`
    share)."""

    path: Path
    steps: int
    seconds: float
    final_loss: float
    device: str
    precision: str
    interrupted: bool

    def _run_text(self) -> str:
        stop = " (interrupted)" if self.interrupted else ""
        return (f"for {self.steps} steps in {self.seconds:.0f} s on {self.device} "
                f"({self.precision}){stop}; final loss {self.final_loss:.4f}")


@dataclass(frozen=True)
class LoopResult:
    """What a training loop did: steps, seconds, the last logged loss (the mean since the
    previous log row), whether Ctrl-C stopped it, and the loss log as CSV text."""

    steps: int
    seconds: float
    last_loss: float
    interrupted: bool
    loss_log: str

    @property
    def final_loss(self) -> float | None:
        """The last loss, or None when it is not a number (for JSON)."""
        return self.last_loss if math.isfinite(self.last_loss) else None


def train_steps(step: Callable[[], object], *, max_steps: int | None,
                max_seconds: float | None, batch_size: int,
                learning_rate: Callable[[], float], log_every: int, desc: str,
                progress: bool) -> LoopResult:
    """Call ``step()`` until ``max_steps``, ``max_seconds`` or Ctrl-C.

    ``step()`` runs one optimisation step and returns its loss as a device tensor; losses are
    averaged and read back every ``log_every`` steps only, so the device never waits for the
    host in between. A non-finite mean loss stops training with :class:`ConfigError`; so does
    an interrupt before the first step (there is nothing to save). Ctrl-C after that ends the
    loop normally with ``interrupted=True``, so the caller saves what was learned.
    """
    import torch

    log = io.StringIO()
    log.write("step,loss,lr,seconds,images_seen\n")
    steps, losses, last_loss, interrupted = 0, [], float("nan"), False
    start = time.perf_counter()

    def log_losses() -> float:
        loss = float(torch.stack(losses).mean())
        log.write(f"{steps},{loss:.6f},{learning_rate():.3e},"
                  f"{time.perf_counter() - start:.2f},{steps * batch_size}\n")
        return loss

    bar = progress_bar(total=max_steps, desc=desc, unit="step", enabled=progress)
    try:
        while max_steps is None or steps < max_steps:
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            losses.append(step())
            steps += 1
            if steps % log_every == 0 or steps == max_steps:
                last_loss, losses = log_losses(), []  # the loop's only host sync
                if not math.isfinite(last_loss):
                    raise ConfigError(f"training diverged before step {steps} (loss "
                                      f"{last_loss}); lower `learning_rate`")
                bar.set_postfix(loss=f"{last_loss:.4f}")
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if losses:
        last_loss = log_losses()
    if steps == 0:
        raise ConfigError("training stopped before the first step; nothing was saved")
    return LoopResult(steps=steps, seconds=time.perf_counter() - start, last_loss=last_loss,
                      interrupted=interrupted, loss_log=log.getvalue())
