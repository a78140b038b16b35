"""The scripts that run seq2seq commands in stages (``scripts/stages.py``): their argument
mistakes; ``pretrain_finetune.py``, a general-domain run, a fine-tune of its best checkpoint on
the in-domain data and the fine-tune's average; ``train_ensemble.py``, members trained side by
side, each pinned to a core with its own seed, their averages, and the ensemble chosen on the
validation split."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from seq2seq.checkpoints.format import load_checkpoint

from .conftest import assert_one_error, tiny_overrides

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "name, args, fragment",
    [
        ("pretrain_finetune.py", (), "out= is required"),
        ("pretrain_finetune.py", ("out=x", "share=1"), "share=1"),
        ("pretrain_finetune.py", ("out=x", "seconds=soon"), "seconds=soon"),
        ("pretrain_finetune.py", ("out=x", "--fast"), "'--fast'"),
        ("train_ensemble.py", (), "out= is required"),
        ("train_ensemble.py", ("out=x", "members=default"), "members=default"),
        ("train_ensemble.py", ("out=x", "members=default,default"), "members=default,default"),
        ("train_ensemble.py", ("out=x", "members=default,dropout"), "members=default,dropout"),
        ("train_ensemble.py", ("out=x", "seconds=soon"), "seconds=soon"),
        ("train_ensemble.py", ("out=x", "last=0"), "last=0"),
        ("train_ensemble.py", ("out=x", "--fast"), "'--fast'"),
    ],
)
def test_argument_mistakes_are_one_line_each(name, args, fragment, tmp_path):
    assert_one_error(script(name, *args, cwd=tmp_path), fragment)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_fine_tune_starts_from_the_general_runs_best_checkpoint(tiny_corpus, tmp_path):
    overrides = tiny_overrides(tiny_corpus)  # trainer.max_steps=4 ends each stage
    general = (tiny_corpus["train.en"], tiny_corpus["train.de"])  # another corpus: en -> de
    proc = script(
        "pretrain_finetune.py",
        f"out={tmp_path / 'run'}",
        "seconds=600",
        f"general.src={general[0]}",
        f"general.tgt={general[1]}",
        *overrides,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    pretrain, finetune = tmp_path / "run" / "pretrain", tmp_path / "run" / "finetune"
    assert f"data.train.src={general[0]}" in proc.stdout and "trainer.max_time=300" in proc.stdout
    parent = load_checkpoint(finetune / "checkpoints" / "last.pt")["parent"]
    assert Path(parent["path"]) == (pretrain / "checkpoints" / "best.pt").resolve()
    assert (finetune / "checkpoints" / "average_last3.pt").is_file()


@pytest.mark.slow
def test_two_members_train_at_once_and_their_ensemble_is_scored(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    proc = script(
        "train_ensemble.py",
        f"out={out}",
        "seconds=600",
        "seed=5",
        "last=2",
        *tiny_overrides(tiny_corpus),
        "default.model.dropout=0.35",  # one member's own setting
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert OmegaConf.load(out / "default" / "config.yaml").model.dropout == 0.35
    assert OmegaConf.load(out / "sampling" / "config.yaml").model.dropout != 0.35
    seeds = {}
    for name in ("default", "sampling"):
        cfg = OmegaConf.load(out / name / "config.yaml")
        seeds[name] = cfg.seed
        assert cfg.data.tokenizer.sampling == (name == "sampling")
        assert cfg.trainer.max_time == 600
        assert (out / name / "checkpoints" / "average_last2.pt").is_file()
    assert seeds == {"default": 5, "sampling": 6}
    scored = {}
    for name, checkpoints in (("averages", 2), ("best", 2), ("both", 4)):
        metrics = json.loads(next((out / f"valid_{name}").glob("*.metrics.json")).read_text())
        assert metrics["checkpoint"].count(",") == checkpoints - 1
        assert metrics["src"] == str(tiny_corpus["valid.de"])
        scored[name] = metrics
    chosen = max(scored, key=lambda name: scored[name]["bleu"])
    assert f"({chosen})" in proc.stdout
    test_command = f"python -m seq2seq.evaluate checkpoint={scored[chosen]['checkpoint']}"
    assert proc.stdout.splitlines()[-1] == test_command


def test_a_failing_member_stops_the_others(tiny_corpus, tmp_path):
    # A character model cannot sample: the sampling member fails at once. The default member,
    # given 600 s, is stopped with it (were it waited for, ``script`` would time out at 300 s),
    # and the script exits with the failure's status before any averaging.
    out = tmp_path / "run"
    overrides = [*tiny_overrides(tiny_corpus), "data.tokenizer.model_type=char", "trainer.max_steps=0"]
    proc = script("train_ensemble.py", f"out={out}", "seconds=600", *overrides, cwd=tmp_path)
    assert proc.returncode == 2 and "char" in proc.stderr, proc.stderr
    assert "seq2seq.average" not in proc.stdout
    assert not list(out.glob("*/checkpoints/average_*.pt"))


def test_sigterm_to_the_script_stops_every_member(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    overrides = [*tiny_overrides(tiny_corpus), "trainer.max_steps=0", "trainer.eval_every=1000"]
    args = [sys.executable, str(SCRIPTS / "train_ensemble.py"), f"out={out}", "seconds=600", *overrides]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = [out / name / "train.log" for name in ("default", "sampling")]
    for _ in range(600):  # until both members train (a guard of 60 s, not a measurement)
        if all(log.is_file() and "step 1 " in log.read_text() for log in logs):
            break
        time.sleep(0.1)
    proc.terminate()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    for log in logs:
        assert "SIGTERM" in log.read_text()
        assert (log.parent / "checkpoints" / "last.pt").is_file()
