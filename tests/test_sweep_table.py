"""scripts/sweep_table.py: one row per run, named by what sets it apart, ranked by
validation BLEU, and cut at equal wall time with --at."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "sweep_table.py"


def fake_run(folder: Path, overrides: list[str], rows: list[tuple[int, float, float]]) -> None:
    """A run folder as seq2seq.train leaves it: Hydra's overrides and (step, seconds, BLEU) rows."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    lines = [
        json.dumps({"step": s, "elapsed": t, "improved": True, "loss": 2.0, "ppl": 7.4, "bleu": b})
        for s, t, b in rows
    ]
    (folder / "validations.jsonl").write_text("\n".join(lines) + '\n{"step": 9')  # a row being written


def table(*args) -> list[str]:
    out = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.startswith("| model.")]


def test_ranks_runs_by_best_bleu_and_names_what_differs(tmp_path):
    common = ["+model=transformer", "hydra.run.dir=x"]
    fake_run(tmp_path / "a", [*common, "model.dropout=0.1"], [(200, 300.0, 30.0), (400, 600.0, 35.0)])
    fake_run(tmp_path / "b", [*common, "model.dropout=0.3"], [(200, 310.0, 28.0), (400, 620.0, 37.5)])
    rows = table(tmp_path)
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| model.dropout=0.3", "37.50", "400"],
        ["| model.dropout=0.1", "35.00", "400"],
    ]
    early = table(tmp_path, "--at", 305)  # only a's first validation came within 305 s
    assert [r.split(" | ")[:3] for r in early] == [["| model.dropout=0.1", "30.00", "200"]]


def test_no_runs_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("error: no validations.jsonl under")
