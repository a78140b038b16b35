"""End to end through the real command lines, on a tiny slice of the corpus."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.config import compose
from seq2seq.errors import UserError
from seq2seq.evaluate import evaluate
from seq2seq.translate import translate

from .conftest import run_cli, tiny_overrides

pytestmark = pytest.mark.slow  # every test trains or runs the commands as processes


def tensorboard_tags(folder) -> set[tuple[str, str]]:
    """(plugin, tag) of every summary written under ``folder``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return {
        (v.metadata.plugin_data.plugin_name, v.tag)
        for f in folder.iterdir()
        for event in EventFileLoader(str(f)).Load()
        for v in event.summary.value
    }


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """A Transformer trained for 4 steps, then resumed to 6 with another clip norm."""
    work = tmp_path_factory.mktemp("work")
    args = [*tiny_overrides(tiny_corpus), "hydra.run.dir=run"]
    first = run_cli("train", *args, cwd=work)
    resumed = run_cli("train", *args, "trainer.max_steps=6", "optim.clip_norm=0.5", cwd=work)
    return work, first, resumed


def test_train_writes_the_run_directory(trained):
    work, first, _ = trained
    run = work / "run"
    for name in (
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "tokenizer/spm.model",
        "config.yaml",
        "train.log",
    ):
        assert (run / name).is_file(), name
    tags = tensorboard_tags(run / "tensorboard")
    for tag in (
        "train/loss",
        "train/lr",
        "train/tokens_per_s",
        "train/grad_norm",
        "valid/loss",
        "valid/bleu",
    ):
        assert ("scalars", tag) in tags
    assert ("text", "samples/0/text_summary") in tags and ("images", "attention/0") in tags
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert "stopped: trainer.max_steps=4 at step 4;" in first.stderr
    assert ckpt["config"]["model"]["_target_"] == "seq2seq.models.transformer.Transformer"
    assert ckpt["tokenizer"]["files"] == {"src": "tokenizer/spm.model", "tgt": "tokenizer/spm.model"}
    assert "validation at step 4" in first.stderr and "target tokens/s" in first.stderr
    rows = [json.loads(line) for line in (run / "validations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and rows[0]["improved"]  # the resumed run appends
    assert 0 < rows[0]["elapsed"] <= rows[1]["elapsed"] <= rows[2]["elapsed"]
    assert all(r["loss"] > 0 and r["ppl"] == pytest.approx(math.exp(r["loss"]), rel=1e-3) for r in rows)


def test_train_again_resumes_from_last(trained):
    work, _, resumed = trained
    assert "resuming from" in resumed.stderr and "at step 4" in resumed.stderr
    assert "resuming with other optim settings than" in resumed.stderr and ": clip_norm" in resumed.stderr
    assert "validation at step 6" in resumed.stderr
    ckpt = torch.load(work / "run/checkpoints/last.pt", weights_only=True)
    assert ckpt["progress"]["step"] == 6


def test_evaluate_on_the_test_split_and_on_files(trained, tiny_corpus, tmp_path):
    work, _, _ = trained
    proc = run_cli("evaluate", "checkpoint=run/checkpoints/best.pt", "decoding.beam_size=2", cwd=work)
    assert "BLEU = " in proc.stdout and "nrefs:1|case:mixed|eff:no|tok:13a" in proc.stdout
    printed = proc.stdout.splitlines()
    assert printed[1].startswith("chrF = ") and not any(line.startswith("chrF2") for line in printed)
    metrics = json.loads((work / "run/checkpoints/best.test.de.metrics.json").read_text())
    assert metrics["sentences"] == 10 and "bleu_signature" in metrics
    hyps = (work / "run/checkpoints/best.test.de.hyp").read_text().split("\n")
    assert len(hyps) == 11 and hyps[-1] == ""
    out = tmp_path / "eval"
    run_cli(
        "evaluate",
        "checkpoint=run/checkpoints/best.pt",
        f"src={tiny_corpus['valid.de']}",
        f"ref={tiny_corpus['valid.en']}",
        f"output={out}",
        cwd=work,
    )
    assert json.loads((out / "best.valid.de.metrics.json").read_text())["sentences"] == 12
    assert sorted(p.name for p in work.iterdir()) == ["run"]  # no Hydra folders left behind


def test_translate_stdin_one_line_per_line(trained):
    work, _, _ = trained
    text = "Zwei Hunde spielen im Schnee.\n\nEin Mann fährt Fahrrad.\n"
    proc = run_cli("translate", "checkpoint=run/checkpoints/best.pt", cwd=work, stdin=text)
    lines = proc.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    assert proc.stdout.count("\n") == 3
    assert sorted(p.name for p in work.iterdir()) == ["run"]


def test_translate_reads_plain_and_gzip_input_alike(tmp_path):
    import gzip

    from seq2seq.translate import file_chunks

    text = "Ein Hund.\n\nEine Frau liest ein Buch.\nKinder.\n"
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "in.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    plain = [line for chunk in file_chunks(str(tmp_path / "in.txt"), size=3) for line in chunk]
    packed = [line for chunk in file_chunks(str(tmp_path / "in.txt.gz"), size=3) for line in chunk]
    assert plain == packed == [line.encode() for line in text.splitlines()]


def test_translate_files_nbest_and_heatmaps(trained, tmp_path):
    work, _, _ = trained
    (tmp_path / "in.txt").write_text("Ein Hund.\nEine Frau liest ein Buch.\n")
    run_cli(
        "translate",
        "checkpoint=run/checkpoints/best.pt",
        f"input={tmp_path / 'in.txt'}",
        f"output={tmp_path / 'out.txt'}",
        "decoding.nbest=2",
        f"nbest_output={tmp_path / 'nbest.tsv'}",
        f"attention_dir={tmp_path / 'att'}",
        cwd=work,
    )
    assert (tmp_path / "out.txt").read_text().count("\n") == 2
    nbest = [line.split("\t") for line in (tmp_path / "nbest.tsv").read_text().splitlines()]
    assert [row[0] for row in nbest] == ["1", "1", "2", "2"]
    assert float(nbest[0][1]) >= float(nbest[1][1])
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == ["1.png", "2.png"]


@pytest.mark.parametrize("model", ["gru_bahdanau", "lstm_luong"])
def test_recurrent_presets_end_to_end(model, tiny_corpus, tmp_path):
    run_cli(
        "train", *tiny_overrides(tiny_corpus, model), "hydra.run.dir=run", "trainer.max_steps=2", cwd=tmp_path
    )
    proc = run_cli("evaluate", "checkpoint=run/checkpoints/best.pt", cwd=tmp_path)
    assert "BLEU = " in proc.stdout
    out = run_cli("translate", "checkpoint=run/checkpoints/last.pt", cwd=tmp_path, stdin="Ein Hund.\n")
    assert out.stdout.count("\n") == 1


def test_bad_inputs_exit_with_one_line(tiny_corpus, trained, tmp_path):
    work, _, _ = trained
    (tmp_path / "short.en").write_text("one line\n")
    cases = [
        (
            "train",
            [*tiny_overrides(tiny_corpus), "hydra.run.dir=r1", f"data.train.src={tmp_path / 'nope.de'}"],
            "nope.de: no such file",
        ),
        (
            "train",
            [*tiny_overrides(tiny_corpus), "hydra.run.dir=r2", f"data.train.tgt={tmp_path / 'short.en'}"],
            "has 300 lines but",
        ),
        ("evaluate", ["checkpoint=missing.pt"], "missing.pt: no such checkpoint"),
        ("evaluate", [f"checkpoint={tmp_path / 'short.en'}"], "not a seq2seq checkpoint"),
        ("translate", ["checkpoint=run/checkpoints/best.pt", "decoding.beam_sz=3"], "beam_sz"),
        ("translate", [], "checkpoint is required"),
    ]
    for module, args, message in cases:
        proc = run_cli(module, *args, cwd=work if module != "train" else tmp_path, check=False)
        assert proc.returncode == 2, (module, args, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_multirun_sweep(tiny_corpus, tmp_path):
    args = [a for a in tiny_overrides(tiny_corpus) if not a.startswith("trainer.max_steps")]
    run_cli(
        "train",
        "-m",
        *args,
        "trainer.max_steps=2",
        "optim.lr=1e-3,5e-4",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    for job, lr in (("0", 1e-3), ("1", 5e-4)):
        ckpt = torch.load(tmp_path / "sweep" / job / "checkpoints" / "last.pt", weights_only=True)
        assert ckpt["config"]["optim"]["lr"] == lr
    script = Path(__file__).resolve().parent.parent / "scripts" / "sweep_table.py"
    out = subprocess.run(
        [sys.executable, str(script), "sweep"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| optim.lr=")]
    assert sorted(row.split(" |")[0] for row in rows) == ["| optim.lr=0.0005", "| optim.lr=0.001"], out


@pytest.mark.parametrize(
    "command, args, message",
    [
        (
            "translate",
            ["output=/no/such/dir/out.txt"],
            "output=/no/such/dir/out.txt: the folder /no/such/dir does not exist",
        ),
        (
            "translate",
            ["nbest_output=/no/such/dir/n.tsv"],
            "nbest_output=/no/such/dir/n.tsv: the folder /no/such/dir",
        ),
        ("translate", ["output=run"], "output=run: is a folder"),
        ("translate", ["input=nope.txt"], "input=nope.txt: no such file"),
        (
            "translate",
            ["input=run/config.yaml", "output=run/config.yaml"],
            "output=run/config.yaml: is also input=",
        ),
        ("translate", ["output=o.txt", "nbest_output=o.txt"], "nbest_output=o.txt: is also output="),
        ("evaluate", ["src=VALID", "ref=nope.en"], "nope.en: no such file; check ref="),
        ("evaluate", ["src=VALID"], "give both src=FILE and ref=FILE"),
    ],
)
def test_bad_paths_are_one_line_naming_the_key(trained, tiny_corpus, monkeypatch, command, args, message):
    """Output folders that do not exist, outputs that are folders, missing inputs: a
    UserError naming the key, before any model is loaded or output written."""
    work, _, _ = trained
    monkeypatch.chdir(work)
    args = [a.replace("VALID", str(tiny_corpus["valid.de"])) for a in args]
    body = {"translate": translate, "evaluate": evaluate}[command]
    with pytest.raises(UserError, match=re.escape(message)):
        body(compose(command, ["checkpoint=run/checkpoints/best.pt", *args]))


def test_checkpoint_that_is_a_run_directory(trained):
    work, _, _ = trained
    proc = run_cli("evaluate", "checkpoint=run", cwd=work, check=False)
    assert proc.returncode == 2
    assert "error: run: is a folder, not a checkpoint; pass checkpoint=run/checkpoints/best.pt" in proc.stderr
