"""Where training stands (``Progress``, saved in every checkpoint), the budgets that end it,
and why a run stopped (``Stop``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seq2seq.checkpoints.checkpointer import Saved
from seq2seq.checkpoints.format import run_dir_of


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch's order already done (by all processes)
    best_bleu: float = -1.0
    bad_evals: int = 0  # validations in a row without a better BLEU
    validated_step: int = 0  # the step of the last validation
    elapsed: float = 0.0  # seconds spent in the training loop, across resumes


@dataclass(frozen=True)
class Stop:
    """Why training ended. ``kind``: ``budget`` (a ``trainer.max_*`` key or
    ``trainer.patience`` reached), ``signal`` (SIGINT/SIGTERM: the step finished, then a
    save) or ``second signal`` (stopped at once, the last save kept); ``text``: what the
    trainer's final log line says after ``stopped:``."""

    kind: Literal["budget", "signal", "second signal"]
    text: str

    @classmethod
    def budget(cls, key: str) -> Stop:
        """The budget ``key`` (as ``budget_spent`` names it) was reached."""
        return cls("budget", key)

    @classmethod
    def signal(cls, name: str) -> Stop:
        """A first signal ``name`` (e.g. SIGTERM): saved, then stopped."""
        return cls("signal", f"stopped by {name}")

    @classmethod
    def second_signal(cls, name: str) -> Stop:
        """A second signal ``name`` stopped training at once."""
        return cls("second signal", f"stopped at once by a second {name}; the last save is kept")


def budget_spent(progress: Progress, tcfg) -> str | None:
    """The budget (or early-stopping rule) ``progress`` has reached, as the key that set it."""
    if tcfg.max_steps and progress.step >= tcfg.max_steps:
        return f"trainer.max_steps={tcfg.max_steps}"
    if tcfg.max_epochs and progress.epoch >= tcfg.max_epochs:
        return f"trainer.max_epochs={tcfg.max_epochs}"
    if tcfg.max_time and progress.elapsed >= tcfg.max_time:
        return f"trainer.max_time={tcfg.max_time:g}"
    if tcfg.patience and progress.bad_evals >= tcfg.patience:
        return f"trainer.patience={tcfg.patience}"
    return None


def budget_fraction(progress: Progress, tcfg, batches_per_epoch: int) -> float:
    """The largest fraction spent of the budgets that are set (steps, epochs, time), 0 to 1;
    ``batches_per_epoch`` counts the current epoch's batches of all processes, as
    ``batch_in_epoch`` does."""
    fractions = [0.0]
    if tcfg.max_steps:
        fractions.append(progress.step / tcfg.max_steps)
    if tcfg.max_epochs:
        fractions.append((progress.epoch + progress.batch_in_epoch / batches_per_epoch) / tcfg.max_epochs)
    if tcfg.max_time:
        fractions.append(progress.elapsed / tcfg.max_time)
    return min(1.0, max(fractions))


def completed(saved: Saved | None, tcfg) -> str | None:
    """A line saying that the run ``saved`` belongs to already spent its budget (its last
    step validated), and how to train on; None when there is none or work is left."""
    progress = Progress(**saved.progress) if saved is not None else None
    spent = budget_spent(progress, tcfg) if progress is not None else None
    if spent is None or progress.validated_step != progress.step:
        return None
    return (
        f"{run_dir_of(saved.path)} is complete: {spent} reached at step {progress.step} (best "
        f"validation BLEU {progress.best_bleu:.2f}). To train on, raise {spent.split('=')[0]}"
    )
