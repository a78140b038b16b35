"""The installed package: a wheel carries the configs and the embedded corpus and runs
from any folder, with no source checkout beside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, tiny_overrides

pytestmark = pytest.mark.slow  # builds a wheel and runs its commands


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project (so the checkout gets no build/ folder)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("seq2seq", "configs", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(src),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (path,) = out.glob("seq2seq-*.whl")
    return path


def test_wheel_holds_the_configs_and_the_corpus(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"seq2seq/configs/{p.relative_to(ROOT / 'configs')}" for p in (ROOT / "configs").rglob("*.yaml")
    }
    corpus = {
        f"seq2seq/corpora/{p.relative_to(ROOT / 'data')}" for p in (ROOT / "data").rglob("*") if p.is_file()
    }
    assert "seq2seq/configs/train.yaml" in configs and "seq2seq/corpora/multi30k/train.de.gz" in corpus
    assert configs <= names and corpus <= names
    assert not any(n.startswith(("configs/", "data/")) for n in names)  # nothing at the top of site-packages


def test_installed_commands_run_from_another_folder(wheel, tiny_corpus, tmp_path):
    """The unpacked wheel alone (first on the path): help, a short training run on the
    embedded corpus from an empty folder, then translate."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def run(*args, stdin=None):
        proc = subprocess.run(
            [sys.executable, *args],
            cwd=work,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    where = run(
        "-c", "import seq2seq.config as c; print(c.__file__, c.CONFIG_DIR, c.DATA_DIR)"
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    assert "decoding.beam_size=5" in run("-m", "seq2seq.translate", "--help").stdout
    assert "trainer.max_steps=0" in run("-m", "seq2seq.train", "--help").stdout
    args = [a for a in tiny_overrides(tiny_corpus) if not a.startswith(("data.train.", "trainer.max_steps"))]
    run("-m", "seq2seq.train", *args, "data.train_lines=300", "trainer.max_steps=2", "hydra.run.dir=run")
    ckpt = torch.load(work / "run/checkpoints/last.pt", weights_only=True)
    assert Path(ckpt["config"]["data"]["train"]["src"]) == site / "seq2seq/corpora/multi30k/train.de.gz"
    out = run("-m", "seq2seq.translate", "checkpoint=run/checkpoints/last.pt", stdin="Ein Hund.\n")
    assert out.stdout.count("\n") == 1
