"""The learning-rate schedule: a linear warmup, then an inverse square root or a linear decay."""

from __future__ import annotations

import math

DECAYS = ("inverse_sqrt", "linear")  # what the learning rate does after the warmup (Schedule below)


class Schedule:
    """Learning-rate factor of a step (``LambdaLR``): a linear warmup to 1 over ``warmup``
    steps, then ``decay``:

    - ``inverse_sqrt``: sqrt(warmup / step), whatever the budget;
    - ``linear``: a straight line from 1 at the end of the warmup to 0 where the training
      budget ends. ``Trainer.step`` sets ``spent``, the fraction of the budget used
      before the step (0 to 1), right before every step.

    The attributes are plain values, so the scheduler's state_dict (hence a checkpoint)
    holds them and a resumed run decays from where it was.
    """

    def __init__(self, warmup: int, decay: str = "inverse_sqrt"):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, not {decay!r}")
        self.warmup, self.decay = max(1, warmup), decay
        self.spent = 0.0
        self.spent_at_warmup = None  # the budget's fraction when the warmup ended

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "inverse_sqrt":
            return math.sqrt(self.warmup / (step + 1))
        if self.spent_at_warmup is None:
            self.spent_at_warmup = min(self.spent, 0.999)
        return max(0.0, (1.0 - self.spent) / (1.0 - self.spent_at_warmup))


def inverse_sqrt(warmup: int) -> Schedule:
    """Learning-rate factor: linear warmup to 1, then decay with 1/sqrt(step)."""
    return Schedule(warmup, "inverse_sqrt")
