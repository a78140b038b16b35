"""scripts/train_ensemble.py: the members trained side by side, each pinned to a core with its
own seed, their averages, and the ensemble chosen on the validation split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from .conftest import assert_one_error, tiny_overrides

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train_ensemble.py"


def script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((), "out= is required"),
        (("out=x", "members=default"), "members=default"),
        (("out=x", "members=default,default"), "members=default,default"),
        (("out=x", "members=default,dropout"), "members=default,dropout"),
        (("out=x", "seconds=soon"), "seconds=soon"),
        (("out=x", "last=0"), "last=0"),
        (("out=x", "--fast"), "'--fast'"),
    ],
)
def test_argument_mistakes_are_one_line_each(args, fragment, tmp_path):
    assert_one_error(script(*args, cwd=tmp_path), fragment)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_two_members_train_at_once_and_their_ensemble_is_scored(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    proc = script(f"out={out}", "seconds=600", "seed=5", "last=2", *tiny_overrides(tiny_corpus), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
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
    # a data file that is not there: both members fail in their first second, the script with them
    overrides = [arg for arg in tiny_overrides(tiny_corpus) if not arg.startswith("data.train.src=")]
    proc = script(f"out={tmp_path / 'run'}", *overrides, f"data.train.src={tmp_path / 'no.de'}", cwd=tmp_path)
    assert proc.returncode == 2 and "no.de" in proc.stderr
    assert not list((tmp_path / "run").glob("*/checkpoints/*.pt"))
