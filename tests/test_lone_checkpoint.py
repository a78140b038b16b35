"""A checkpoint that travels alone: it carries its tokenizer, so a ``best.pt`` copied into
another folder, with no run directory around it, translates, evaluates, averages and exports
as it did in its run (fine-tuning from such a copy: ``test_finetune.py``)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoints.format import FORMAT, load_checkpoint
from seq2seq.checkpoints.loading import load_model, load_tokenizer
from seq2seq.data.tokenizer import Tokenizer, file_sha256

from .conftest import run_cli, tiny_overrides

SOURCES = "Ein Mann fährt Fahrrad.\nZwei Hunde spielen im Schnee.\nEine Frau liest ein Buch.\n"


@pytest.mark.parametrize("run, names", [("transformer", ["spm.model"]), ("gru", ["src.model", "tgt.model"])])
def test_the_tokenizer_entry_carries_the_models_once(tmp_path, run, names):
    """Joint: one tensor for both sides, saved once; per side: two. Read back with
    weights_only, the carried tokenizer encodes as the files do."""
    from seq2seq.checkpoints.format import carry_tokenizer

    old = Path(__file__).resolve().parent / "fixtures" / "format2" / run / "tokenizer"
    files = Tokenizer(old / names[0], old / names[-1])
    entry = carry_tokenizer({"files": {"src": f"tokenizer/{names[0]}", "tgt": f"tokenizer/{names[-1]}"},
                             "sha256": files.sha256}, files)  # fmt: skip
    buffer = io.BytesIO()
    torch.save({"tokenizer": entry}, buffer)
    assert buffer.tell() < 1.1 * sum((old / n).stat().st_size for n in names) + 4096
    back = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    carried = load_tokenizer(back, tmp_path / "nowhere" / "x.pt")  # no run directory: all from the bytes
    assert carried.joint == (len(names) == 1) and carried.sha256 == files.sha256
    assert carried.src_path is None and carried.names == files.names
    text = ["Ein Hund läuft durch den Schnee.", "Zwei Männer."]
    assert carried.encode_src(text) == files.encode_src(text) and carried.encode_tgt(
        text
    ) == files.encode_tgt(text)


@pytest.fixture(scope="module")
def lone(tiny_corpus, tmp_path_factory):
    """A Transformer trained 4 steps, keeping its last 2 step checkpoints. What its run
    translated and evaluated is recorded; then best.pt and the step checkpoints are copied into
    another folder and the run directory is deleted. Returns (that folder, the records)."""
    work = tmp_path_factory.mktemp("lone")
    args = [*tiny_overrides(tiny_corpus), "trainer.save_every=1", "trainer.keep_last=2", "trainer.samples=0"]
    run_cli("train", *args, "hydra.run.dir=run", cwd=work)
    checkpoints = work / "run" / "checkpoints"
    records = {
        "translation": run_cli(
            "translate", f"checkpoint={checkpoints / 'best.pt'}", cwd=work, stdin=SOURCES
        ).stdout,
        "evaluation": run_cli(
            "evaluate", f"checkpoint={checkpoints / 'best.pt'}", f"output={work / 'eval'}", cwd=work
        ).stdout,
        "tokenizer": file_sha256(work / "run" / "tokenizer" / "spm.model"),
    }
    alone = work / "elsewhere"
    alone.mkdir()
    for name in ("best.pt", "step_0000003.pt", "step_0000004.pt"):
        shutil.copyfile(checkpoints / name, alone / name)
    shutil.rmtree(work / "run")
    return alone, records


def bleu_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("BLEU", "chrF"))]


@pytest.mark.slow
def test_a_lone_checkpoint_holds_its_tokenizer(lone):
    alone, records = lone
    ckpt = load_checkpoint(alone / "best.pt")
    entry = ckpt["tokenizer"]
    assert ckpt["format"] == FORMAT == 3 and ckpt["parent"] is None
    assert entry["models"]["src"].dtype == torch.uint8 and entry["models"]["src"] is entry["models"]["tgt"]
    assert entry["sha256"] == {"src": records["tokenizer"], "tgt": records["tokenizer"]}
    _, tokenizer, _ = load_model(alone / "best.pt")
    assert tokenizer.sha256 == entry["sha256"]


@pytest.mark.slow
def test_a_lone_checkpoint_translates_and_evaluates_as_in_its_run(lone, tmp_path):
    alone, records = lone
    assert (
        run_cli("translate", f"checkpoint={alone / 'best.pt'}", cwd=tmp_path, stdin=SOURCES).stdout
        == (records["translation"])
    )
    evaluated = run_cli("evaluate", f"checkpoint={alone / 'best.pt'}", cwd=tmp_path).stdout
    assert bleu_lines(evaluated) == bleu_lines(records["evaluation"]) and bleu_lines(evaluated)
    assert f"lineage: {alone / 'best.pt'} (trained from random weights)" in evaluated


@pytest.mark.slow
def test_lone_checkpoints_average_into_another_folder(lone, tmp_path):
    alone, _ = lone
    out = tmp_path / "avg.pt"
    inputs = f"inputs={alone / 'step_0000003.pt'},{alone / 'step_0000004.pt'}"
    run_cli("average", inputs, f"output={out}", cwd=tmp_path)
    avg = load_checkpoint(out)
    a, b = (load_checkpoint(alone / f"step_000000{s}.pt")["model"] for s in (3, 4))
    for k, v in avg["model"].items():
        torch.testing.assert_close(v, (a[k].double() + b[k].double()).div(2).to(v.dtype), msg=k)
    assert avg["tokenizer"]["sha256"] == load_checkpoint(alone / "best.pt")["tokenizer"]["sha256"]
    lines = run_cli("translate", f"checkpoint={out}", cwd=tmp_path, stdin=SOURCES).stdout.splitlines()
    assert len(lines) == 3


@pytest.mark.slow
def test_a_lone_checkpoint_exports_and_the_export_decodes_like_it(lone, tmp_path):
    pytest.importorskip("ctranslate2")
    alone, _ = lone
    run_cli("export", f"checkpoint={alone / 'best.pt'}", f"output={tmp_path / 'ct2'}", cwd=tmp_path)
    assert (
        file_sha256(tmp_path / "ct2" / "tokenizer" / "spm.model")
        == (load_checkpoint(alone / "best.pt")["tokenizer"]["sha256"]["src"])
    )
    torch_out = run_cli(
        "translate", f"checkpoint={alone / 'best.pt'}", "decoding=greedy", cwd=tmp_path, stdin=SOURCES
    )
    ct2_out = run_cli(
        "translate", f"checkpoint={tmp_path / 'ct2'}", "decoding=greedy", cwd=tmp_path, stdin=SOURCES
    )
    assert ct2_out.stdout == torch_out.stdout
    evaluated = run_cli("evaluate", f"checkpoint={tmp_path / 'ct2'}", "decoding=greedy", cwd=tmp_path).stdout
    assert f"lineage: {tmp_path / 'ct2'} (trained from random weights)" in evaluated
