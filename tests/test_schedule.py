"""The learning-rate schedule: warmup, then inverse-square-root or linear decay to the budget's end."""

from __future__ import annotations

import io
import logging
import math
import re

import pytest
import torch

import seq2seq.training.trainer
from seq2seq.config.schema import TrainerConfig
from seq2seq.training.budget import Progress, budget_fraction
from seq2seq.training.schedule import Schedule

from .conftest import compose_train


def lrs(schedule: Schedule, spent: list[float]) -> list[float]:
    """The factor of each step when ``spent[i]`` of the budget is used before step i."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    out = []
    for fraction in spent:
        out.append(optimizer.param_groups[0]["lr"])
        schedule.spent = fraction
        optimizer.step()
        scheduler.step()
    return out


def test_inverse_sqrt_ignores_the_budget():
    got = lrs(Schedule(4, "inverse_sqrt"), [0.9] * 10)
    want = [min((s + 1) / 4, math.sqrt(4 / (s + 1))) for s in range(10)]
    assert got == pytest.approx(want)


def test_linear_decays_from_the_warmups_end_to_zero_at_the_budgets_end():
    got = lrs(Schedule(4, "linear"), [s / 10 for s in range(12)])
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # warmup
    # From 1 where the warmup ended (0.3 of the budget spent) to 0 at the end, in a line.
    assert got[4:] == pytest.approx([1 - (s / 10 - 0.3) / 0.7 for s in range(3, 11)])
    assert got[-1] == pytest.approx(0.0, abs=1e-12)


def test_schedule_state_survives_a_weights_only_round_trip():
    schedule = Schedule(2, "linear")
    lrs(schedule, [0.1, 0.2, 0.3, 0.4])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    buffer = io.BytesIO()
    torch.save(torch.optim.lr_scheduler.LambdaLR(optimizer, schedule).state_dict(), buffer)
    buffer.seek(0)
    fresh = Schedule(2, "linear")
    torch.optim.lr_scheduler.LambdaLR(optimizer, fresh).load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.spent_at_warmup == schedule.spent_at_warmup == pytest.approx(0.2)


def test_unknown_decay_is_refused():
    with pytest.raises(ValueError, match="decay must be one of"):
        Schedule(4, "cosine")


@pytest.mark.parametrize(
    "budgets, progress, want",
    [
        ({"max_steps": 100}, Progress(step=25), 0.25),
        ({"max_epochs": 4}, Progress(step=50, epoch=1, batch_in_epoch=5), 1.5 / 4),
        ({"max_time": 200.0}, Progress(step=1, elapsed=50.0), 0.25),
        ({"max_steps": 100, "max_epochs": 4, "max_time": 200.0}, Progress(step=10, epoch=2, elapsed=20), 0.5),
        ({"max_steps": 10}, Progress(step=12), 1.0),
        ({"max_epochs": 0, "patience": 3}, Progress(step=12), 0.0),
    ],
)
def test_budget_fraction_is_the_nearest_budget(budgets, progress, want):
    tcfg = TrainerConfig(**{"max_epochs": 0, **budgets})
    assert budget_fraction(progress, tcfg, batches_per_epoch=10) == pytest.approx(want)


@pytest.mark.slow
def test_linear_run_peaks_after_warmup_and_ends_near_zero(tiny_corpus, tmp_path, caplog):
    """A run under optim.decay=linear logs the peak at the warmup's end, then a falling rate
    that is nearly 0 at its last step (each step's line shows the rate of the next)."""
    cfg = compose_train(
        tiny_corpus,
        "optim.decay=linear",
        "optim.warmup_steps=2",
        "optim.lr=0.01",
        "trainer.max_steps=10",
        "trainer.eval_every=10",
    )
    with caplog.at_level(logging.INFO, logger="seq2seq.train"):
        seq2seq.training.trainer.train(cfg, tmp_path / "run")
    lr = {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+) epoch \d+ loss \S+ lr (\S+)", caplog.text)}
    assert sorted(lr) == list(range(1, 11))
    assert lr[2] == pytest.approx(0.01)  # the peak, used by step 2
    falling = [lr[s] for s in range(2, 11)]
    assert falling == sorted(falling, reverse=True) and falling[0] > falling[1]
    assert lr[10] <= 0.01 * 0.15


@pytest.mark.slow
def test_a_budget_within_the_warmup_is_warned_about(tiny_corpus, tmp_path, caplog):
    cfg = compose_train(tiny_corpus, "optim.decay=linear", "optim.warmup_steps=50", "trainer.max_steps=3")
    with caplog.at_level(logging.WARNING, logger="seq2seq.train"):
        seq2seq.training.trainer.train(cfg, tmp_path / "run")
    assert "optim.warmup_steps=50: the budget ends within the warmup, after 3 steps" in caplog.text
