"""scripts/pretrain_finetune.py: a general-domain run, a fine-tune of its best checkpoint on
the in-domain data, and the fine-tune's average, each stage a plain seq2seq command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.checkpoints.format import load_checkpoint

from .conftest import assert_one_error, tiny_overrides

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pretrain_finetune.py"


def script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((), "out= is required"),
        (("out=x", "share=1"), "share=1"),
        (("out=x", "seconds=soon"), "seconds=soon"),
        (("out=x", "--fast"), "'--fast'"),
    ],
)
def test_argument_mistakes_are_one_line_each(args, fragment, tmp_path):
    assert_one_error(script(*args, cwd=tmp_path), fragment)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_fine_tune_starts_from_the_general_runs_best_checkpoint(tiny_corpus, tmp_path):
    overrides = tiny_overrides(tiny_corpus)  # trainer.max_steps=4 ends each stage
    general = (tiny_corpus["train.en"], tiny_corpus["train.de"])  # another corpus: en -> de
    proc = script(
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
