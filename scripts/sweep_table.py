"""One table of validation scores for every training run under some folders.

    python scripts/sweep_table.py multirun/2026-12-03/12-00-00 [more folders ...] [--at 1200]

A run is any folder that holds ``validations.jsonl`` (written by ``seq2seq.train``, one row
per validation: step, seconds of training so far, loss, perplexity, BLEU). A Hydra
multirun (``python -m seq2seq.train -m ...``) writes one per job, so its sweep folder is
the argument; runs started one by one into folders of their own work the same way.

Each row names the run by the overrides that set it apart from the others (read from
``.hydra/overrides.yaml``), then gives its best validation BLEU, the step and the
minutes of training at which it came, the validation loss there, and the last
validation. ``--at SECONDS`` compares runs at equal wall time: only validations made
within that many seconds of training count. Rows are sorted by best BLEU; choices are
made on these validation scores, never on the test set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def find_runs(folders: list[Path]) -> list[Path]:
    """The run folders (those with ``validations.jsonl``) at or under ``folders``, sorted."""
    runs = set()
    for folder in folders:
        if not folder.is_dir():
            sys.exit(f"error: {folder}: no such folder")
        runs |= {path.parent for path in folder.rglob("validations.jsonl")}
    return sorted(runs)


def read_validations(run: Path) -> list[dict]:
    """The rows of ``run/validations.jsonl``; a line cut short by a running job is skipped."""
    rows = []
    for line in (run / "validations.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_overrides(run: Path) -> dict[str, str]:
    """``key -> value`` of the command-line overrides the run was started with
    (``hydra.*`` left out); empty when Hydra's record is missing."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    pairs = (item.split("=", 1) for item in yaml.safe_load(path.read_text()) or [] if "=" in item)
    return {key.lstrip("+~"): value for key, value in pairs if not key.startswith("hydra.")}


def distinct(overrides: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each run's overrides, less those that every run shares with the same value
    (all of them when there is one run)."""
    if len(overrides) < 2:
        return overrides
    keys = {key for run in overrides for key in run}
    shared = {key for key in keys if len({run.get(key) for run in overrides}) == 1}
    return [{k: v for k, v in run.items() if k not in shared} for run in overrides]


def summary(rows: list[dict], at: float | None) -> dict | None:
    """Best and last validation among ``rows`` made within ``at`` seconds (all when None)."""
    rows = [r for r in rows if at is None or r["elapsed"] <= at]
    if not rows:
        return None
    best = max(rows, key=lambda r: (r["bleu"], -r["step"]))
    return {"best": best, "last": rows[-1], "count": len(rows)}


def table(runs: list[Path], at: float | None) -> str:
    """The Markdown table of ``runs``, best validation BLEU first."""
    names = [
        " ".join(f"{k}={v}" for k, v in sorted(d.items())) or "(defaults)"
        for d in distinct([read_overrides(r) for r in runs])
    ]
    lines = []
    for run, name in zip(runs, names, strict=True):
        s = summary(read_validations(run), at)
        if s is None:
            continue
        best, last = s["best"], s["last"]
        lines.append(
            (
                best["bleu"],
                f"| {name} | {best['bleu']:.2f} | {best['step']:,} | {best['elapsed'] / 60:.1f} | "
                f"{best['loss']:.3f} | {last['bleu']:.2f} @ {last['step']:,} "
                f"({last['elapsed'] / 60:.1f} min) | {run} |",
            )
        )
    head = [
        "| run | best valid BLEU | at step | at minute | valid loss there | last validation | folder |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    return "\n".join(head + [line for _, line in sorted(lines, key=lambda x: -x[0])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders to search")
    parser.add_argument(
        "--at", type=float, help="count only validations within this many seconds of training"
    )
    args = parser.parse_args(argv)
    runs = find_runs(args.folders)
    if not runs:
        sys.exit(
            f"error: no validations.jsonl under {', '.join(map(str, args.folders))}; "
            "train into them with seq2seq.train first"
        )
    if args.at is not None:
        print(f"validations within {args.at:g} s ({args.at / 60:.1f} min) of training\n")
    print(table(runs, args.at))


if __name__ == "__main__":
    main()
