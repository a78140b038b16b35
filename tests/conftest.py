"""Shared fixtures: a tiny slice of the embedded corpus and a command-line runner."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "multi30k"


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs one worker per core), each worker computes with its
    share of the cores, so that the workers' threads do not contend for them."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def head(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> dict[str, Path]:
    """300 training pairs (gzip), 12 validation and 10 test pairs (plain text)."""
    out = tmp_path_factory.mktemp("corpus")
    files = {}
    for split, source, n, gz in (
        ("train", "train", 300, True),
        ("valid", "val", 12, False),
        ("test", "test_2016_flickr", 10, False),
    ):
        for lang in ("de", "en"):
            lines = head(CORPUS / f"{source}.{lang}.gz", n)
            path = out / (f"{split}.{lang}" + (".gz" if gz else ""))
            if gz:
                with gzip.open(path, "wt", encoding="utf-8") as f:
                    f.writelines(lines)
            else:
                path.write_text("".join(lines), encoding="utf-8")
            files[f"{split}.{lang}"] = path
    files["cache"] = out / "prepared"
    return files


def tiny_overrides(corpus: dict[str, Path], model: str = "transformer") -> list[str]:
    """Overrides for a seconds-long training run of ``model`` on the tiny corpus."""
    sizes = {
        "transformer": [
            "model.d_model=32",
            "model.ffn_dim=64",
            "model.encoder_layers=1",
            "model.decoder_layers=1",
        ],
        "gru_bahdanau": ["model.emb_size=32", "model.hidden_size=32"],
        "lstm_luong": ["model.emb_size=32", "model.hidden_size=32"],
    }[model]
    return [
        f"+model={model}",
        *sizes,
        f"data.train.src={corpus['train.de']}",
        f"data.train.tgt={corpus['train.en']}",
        f"data.valid.src={corpus['valid.de']}",
        f"data.valid.tgt={corpus['valid.en']}",
        f"data.test.src={corpus['test.de']}",
        f"data.test.tgt={corpus['test.en']}",
        "data.tokenizer.vocab_size=500",
        f"data.cache_dir={corpus['cache']}",
        "trainer.max_steps=4",
        "trainer.eval_every=2",
        "trainer.log_every=1",
        "trainer.max_tokens=600",
        "trainer.num_threads=1",
        "decoding.max_len_b=5",
        "decoding.max_len_a=0.5",
    ]


# Enough training that most outputs end with EOS before their length limit; fp32, so that the
# same model is trained on every CPU (auto picks bf16 where AMX is).
LEARN = ["trainer.max_steps=0", "trainer.max_epochs=12", "trainer.eval_every=100", "trainer.patience=0",
         "optim.lr=3e-3", "optim.warmup_steps=20", "optim.decay=inverse_sqrt",
         "model.d_model=64", "model.ffn_dim=128", "trainer.precision=fp32"]  # fmt: skip


@pytest.fixture(scope="session")
def trained_transformer(tiny_corpus, tmp_path_factory):
    """``trained_transformer(name, *overrides)``: the run directory of a tiny Transformer trained
    with ``LEARN`` and ``overrides``, trained once per name for the whole session (the export
    tests of both formats share them)."""
    work = tmp_path_factory.mktemp("trained_transformers")
    made: dict[str, Path] = {}

    def trained(name: str, *overrides: str) -> Path:
        if name not in made:
            args = [*tiny_overrides(tiny_corpus), *overrides, *LEARN, "trainer.samples=0"]
            run_cli("train", *args, f"hydra.run.dir={name}", cwd=work)
            made[name] = work / name
        return made[name]

    return trained


def run_cli(module: str, *args: str, cwd: Path, stdin: str | None = None, check: bool = True):
    """Run ``python -m seq2seq.<module> args`` and return the completed process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", f"seq2seq.{module}", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{module} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def run_main(module: str, *args: str, monkeypatch, capsys):
    """Run ``seq2seq.<module>.main()`` in this process with ``args`` as its command line, as
    ``run_cli`` runs the command (for the many cheap cases of a test; one ``run_cli`` case
    still checks the real process). Returns an object with returncode, stdout and stderr."""
    import importlib
    from types import SimpleNamespace

    monkeypatch.setattr(sys, "argv", [f"seq2seq.{module}", *args])
    capsys.readouterr()  # what came before is not this command's
    try:
        importlib.import_module(f"seq2seq.{module}").main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def run_bench_decode(checkpoint: Path, corpus: dict[str, Path], cwd: Path, *args: str) -> str:
    """Run ``scripts/bench_decode.py`` on ``checkpoint`` and the tiny corpus's test split, one
    round, with ``args`` (engines, modes); returns what it printed, after checking it succeeded."""
    script = ROOT / "scripts" / "bench_decode.py"
    base = [f"--checkpoint={checkpoint}", "--cache=on", "--rounds=1"]
    base += [f"--test-src={corpus['test.de']}", f"--test-ref={corpus['test.en']}"]
    out = subprocess.run([sys.executable, str(script), *base, *args], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout


def last_losses(run: Path) -> dict[int, float]:
    """Step -> the last loss ``metrics.jsonl`` holds for it (a resumed run logs some steps twice)."""
    losses = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        losses[row["step"]] = row["loss"]
    return losses


def compose_train(corpus, *extra: str):
    """The checked train config of a tiny run, composed in-process."""
    from seq2seq.config import compose

    return compose("train", [*tiny_overrides(corpus), "trainer.samples=0", *extra])


def assert_one_error(proc, *fragments: str) -> str:
    """The command failed as a user mistake: exit 2, one ``error:`` line naming ``fragments``."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, f"exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]
