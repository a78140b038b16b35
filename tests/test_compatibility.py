"""Files written by an earlier seq2seq still work: checkpoints, an average and an export load and
translate exactly as they did, a checkpoint resumes, and every command's ``--help`` lists the same keys with
the same defaults, keys added since aside (``tests/fixtures/format2/README.md`` says what the files are and
how they were made)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from seq2seq.config import compose
from seq2seq.translate import translate
from tests.conftest import ROOT, run_cli

OLD = Path(__file__).resolve().parent / "fixtures" / "format2"
CORPUS = OLD / "corpus"
COMMANDS = ("train", "prepare", "evaluate", "translate", "average", "export")
PRESETS = ("transformer", "gru_bahdanau", "lstm_luong")
SPLITS = ("train", "valid", "test")  # the file names in corpus/

# The model and data settings the fixture runs were trained with (tests/fixtures/format2/make.sh).
RUNS = {
    "transformer": [
        "+model=transformer",
        "model.d_model=32",
        "model.ffn_dim=64",
        "model.heads=2",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
    ],
    "gru": ["+model=gru_bahdanau", "model.emb_size=32", "model.hidden_size=32", "data.tokenizer.joint=false"],
}


def translate_file(checkpoint: Path, search: str, out: Path, nbest: bool) -> tuple[str, str | None]:
    """Translate the fixture's test sources as ``python -m seq2seq.translate`` does; returns the
    output and, with ``nbest``, the n-best list."""
    args = [f"checkpoint={checkpoint}", f"decoding={search}", f"input={CORPUS / 'test.de'}"]
    args += [f"output={out}.txt", "num_threads=1"]
    if nbest:
        args.append(f"nbest_output={out}.nbest")
    translate(compose("translate", args))
    return Path(f"{out}.txt").read_text(), Path(f"{out}.nbest").read_text() if nbest else None


CASES = [  # (name in expected/, checkpoint, search, whether an n-best list was written)
    *[("transformer", "transformer/checkpoints/last.pt", s, True) for s in ("greedy", "beam")],
    *[("gru", "gru/checkpoints/last.pt", s, True) for s in ("greedy", "beam")],
    ("transformer_avg", "transformer/checkpoints/average_last2.pt", "beam", False),
    *[("transformer_ct2", "transformer_ct2", s, False) for s in ("greedy", "beam")],
]


@pytest.mark.parametrize("name, checkpoint, search, nbest", CASES)
def test_old_checkpoints_and_exports_translate_as_they_did(tmp_path, name, checkpoint, search, nbest):
    if name == "transformer_ct2":
        pytest.importorskip("ctranslate2")
    text, nbest_text = translate_file(OLD / checkpoint, search, tmp_path / name, nbest)
    assert text == (OLD / "expected" / f"{name}.{search}.txt").read_text()
    if nbest:
        assert nbest_text == (OLD / "expected" / f"{name}.{search}.nbest").read_text()


def test_an_old_checkpoint_exports_to_what_the_old_export_translated(tmp_path):
    pytest.importorskip("ctranslate2")
    from seq2seq.export import export

    folder = tmp_path / "ct2"
    export(compose("export", [f"checkpoint={OLD / 'transformer/checkpoints/last.pt'}", f"output={folder}"]))
    for search in ("greedy", "beam"):
        text, _ = translate_file(folder, search, tmp_path / search, nbest=False)
        assert text == (OLD / "expected" / f"transformer_ct2.{search}.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("run", sorted(RUNS))
def test_an_old_checkpoint_resumes_where_it_stopped(tmp_path, run):
    run_dir = tmp_path / run
    shutil.copytree(OLD / run, run_dir)
    sides = (("src", "de"), ("tgt", "en"))
    data = [f"data.{split}.{side}={CORPUS / f'{split}.{lang}'}" for split in SPLITS for side, lang in sides]
    proc = run_cli(
        "train",
        *RUNS[run],
        *data,
        "data.tokenizer.vocab_size=500",
        f"data.cache_dir={tmp_path / 'cache'}",
        "trainer.max_steps=154",
        "trainer.eval_every=2",
        "trainer.max_tokens=800",
        "trainer.num_threads=1",
        "trainer.num_workers=0",
        "trainer.progress=false",
        "trainer.samples=0",
        "optim.lr=3e-3",
        "optim.warmup_steps=30",
        "decoding.max_len_a=1.0",
        "decoding.max_len_b=5",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert "resuming from" in proc.stderr and "at step 150" in proc.stderr, proc.stderr
    assert "stopped: trainer.max_steps=154 at step 154" in proc.stderr, proc.stderr
    assert "other model.* settings" not in proc.stderr


def help_rows(text: str) -> dict[str, str]:
    """key -> value of every ``  key=value  help`` row of a ``--help`` text, the folder of the
    shipped corpus written as DATA."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"  (\S+?)=(\S*)\s", line + " ")
        if match:
            rows[match.group(1)] = re.sub(r"^.*/data/multi30k/", "DATA/", match.group(2))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, args",
    [(c, []) for c in COMMANDS] + [("train", [f"+model={m}"]) for m in PRESETS],
)
def test_help_lists_the_same_keys_and_defaults_as_before(command, args):
    name = command + "".join(f"_{a.removeprefix('+model=')}" for a in args)
    before = help_rows((OLD / "help" / f"{name}.txt").read_text())
    now = help_rows(run_cli(command, *args, "--help", cwd=ROOT).stdout)
    assert before, name
    # Keys may be added (export's format and decoding.* since 0.1.0); none may go or change default.
    assert {key: now.get(key) for key in before} == before
