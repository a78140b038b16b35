"""scripts/bench_train.py: its settings time the real training step, count its matrix
products, and its bf16-weights prototype learns like autocast."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow  # the bench's settings train the tiny model

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script():
    sys.path.insert(0, str(SCRIPTS))  # as when run: bench_train_ops imports it by name
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPTS / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_script()


@pytest.fixture(scope="module")
def tiny(tiny_corpus):
    """The tiny corpus's overrides without ``+model=`` (the script adds it)."""
    return " ".join(tiny_overrides(tiny_corpus)[1:])


def test_setting_times_steps_and_counts_at_least_the_output_layer(tiny, tmp_path, monkeypatch):
    """tokens/s is the target tokens of the steps after the warm-up over their time alone
    (a clock that moves 0.5 s a reading); every round starts again from the same weights."""
    clock = iter(0.5 * i for i in range(100))
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    setting = bench.Setting("transformer", f"{tiny} trainer.precision=fp32", tmp_path, 3)
    after_warmup = sum(b.num_tgt_tokens for b in setting.batches[1:])
    assert bench.timed(setting, 1) == after_warmup / 0.5
    assert setting.warmup_s == [0.5] and len(setting.losses) == 3
    assert bench.timed(setting, 1) == after_warmup / 0.5
    assert setting.losses[3:] == pytest.approx(setting.losses[:3], rel=1e-6)  # restarted
    model = setting.trainer.model
    d, vocab = model.output.in_features, model.output.out_features
    # The output layer alone: 2 d V a token forward, 4 d V backward (its input and weight).
    assert bench.flops_per_token(setting) >= 6 * d * vocab


def test_bf16_weights_prototype_learns_like_the_fp32_step(tiny, tmp_path):
    fast = f"{tiny} optim.lr=0.01 optim.warmup_steps=1"  # updates that move the loss
    fp32 = bench.Setting("transformer", f"{fast} trainer.precision=fp32", tmp_path, 4)
    bf16 = bench.BF16Weights("transformer", fast, tmp_path, 4)
    for setting in (fp32, bf16):
        setting.restart()
        setting.steps(setting.batches)
    assert fp32.losses[-1] < 0.9 * fp32.losses[0]
    assert bf16.losses == pytest.approx(fp32.losses, rel=0.02)


def test_loader_times_the_trainers_own_batches(tiny, tmp_path, monkeypatch):
    """--loader: the steps run on the batches of the trainer's DataLoader (here sampled
    segmentations, the same every round), timed apart from the warm-up."""
    setting = bench.Setting(
        "transformer", f"{tiny} trainer.precision=fp32 data.tokenizer.sampling=true", tmp_path, 3
    )
    loaded = list(setting.trainer.epoch_batches())[:3]
    clock = iter(0.5 * i for i in range(100))
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    after_warmup = sum(b.num_tgt_tokens for b in loaded[1:])
    assert bench.timed_loader(setting, 1, 2) == after_warmup / 0.5
    assert bench.timed_loader(setting, 1, 2) == after_warmup / 0.5
    assert setting.pairs_per_s == [sum(len(b.src) for b in loaded[1:]) / 0.5] * 2
    assert setting.losses[3:] == pytest.approx(setting.losses[:3], rel=1e-6)
