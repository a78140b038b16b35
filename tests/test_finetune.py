"""Fine-tuning (``trainer.init_from``): a new run from a parent checkpoint's weights and tokenizer.

What is checked: the rules (architecture keys and ``data.tokenizer.*`` must equal the parent's,
dropout and label smoothing may change) and their one-line errors; that a fine-tune of 0 steps
evaluates exactly as its parent, for each backend; that the data are prepared with the parent's
tokenizer under a key holding its hash; that the lineage is recorded and printed; and that a
fine-tune resumes from its own ``last.pt``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.checkpoints.format import load_checkpoint
from seq2seq.checkpoints.loading import load_model
from seq2seq.config import compose
from seq2seq.data.preparation import corpus_key
from seq2seq.data.tokenizer import Tokenizer, file_sha256
from seq2seq.errors import UserError
from seq2seq.evaluate import evaluate
from seq2seq.training.parent import Parent, architecture_keys, check_parent

from .conftest import assert_one_error, last_losses, run_cli, tiny_overrides

BACKENDS = ("transformer", "gru_bahdanau", "lstm_luong")
OLD = Path(__file__).resolve().parent / "fixtures" / "format2"


# ---------------------------------------------------------------- the rules, without training


def parent_of(cfg, joint: bool = True) -> Parent:
    """A parent whose settings are those of ``cfg`` (no weights: the checks read settings only)."""
    tokenizer = type("FakeTokenizer", (), {"joint": joint})()
    config = OmegaConf.to_container(cfg, resolve=True)
    record = {"path": "/parent.pt", "sha256": "0" * 64, "step": 1, "parent": None}
    return Parent(Path("/parent.pt"), {}, config, tokenizer, record)


def changed(value):
    """A value other than ``value``, of its kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}_other"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_architecture_key_is_checked_and_only_dropout_may_change(tiny_corpus, backend):
    cfg = compose("train", tiny_overrides(tiny_corpus, backend))
    parent = parent_of(cfg)
    keys = architecture_keys(cfg.model._target_)
    assert keys and not any(k.endswith("dropout") for k in keys)
    assert {"max_positions", "tie_embeddings"} <= set(keys)  # read from the constructor, not listed here
    for key in keys:
        now = OmegaConf.to_container(cfg, resolve=True)
        now["model"][key] = changed(cfg.model[key])
        with pytest.raises(UserError) as error:
            check_parent(OmegaConf.create(now), parent)
        message = str(error.value)
        assert f"model.{key}={now['model'][key]}" in message and f"model.{key}={cfg.model[key]}" in message
        assert "\n" not in message
    regularization = [k for k in cfg.model if k.endswith("dropout")]
    assert "dropout" in regularization
    now = OmegaConf.to_container(cfg, resolve=True)
    for key in regularization:
        now["model"][key] = 0.05
    now["optim"]["label_smoothing"] = 0.3
    check_parent(OmegaConf.create(now), parent)  # allowed


def test_another_model_class_or_tokenizer_setting_is_refused(tiny_corpus):
    cfg = compose("train", tiny_overrides(tiny_corpus))
    gru = compose("train", tiny_overrides(tiny_corpus, "gru_bahdanau"))
    with pytest.raises(
        UserError, match=r"model._target_=seq2seq.models.recurrent.*is a seq2seq.models.transf"
    ):
        check_parent(gru, parent_of(cfg))
    for override, fragments in (
        ("data.tokenizer.vocab_size=400", ["data.tokenizer.vocab_size=400", "data.tokenizer.vocab_size=500"]),
        ("data.tokenizer.joint=false", ["data.tokenizer.joint=False", "data.tokenizer.joint=True"]),
        ("data.tokenizer.model_type=bpe", ["data.tokenizer.model_type=bpe", "=unigram"]),
    ):
        other = compose("train", [*tiny_overrides(tiny_corpus), override])
        with pytest.raises(UserError) as error:
            check_parent(other, parent_of(cfg))
        assert all(f in str(error.value) for f in fragments), (override, str(error.value))
    with pytest.raises(
        UserError, match="data.tokenizer.joint=True: the tokenizer of .* has a model per side"
    ):
        check_parent(cfg, parent_of(cfg, joint=False))


def test_the_corpus_key_holds_the_given_tokenizers_hash(tiny_corpus):
    data = compose("train", tiny_overrides(tiny_corpus)).data
    joint = Tokenizer(OLD / "transformer/tokenizer/spm.model", OLD / "transformer/tokenizer/spm.model")
    per_side = Tokenizer(OLD / "gru/tokenizer/src.model", OLD / "gru/tokenizer/tgt.model")
    trained, _ = corpus_key(data)
    with_joint, made_of = corpus_key(data, joint)
    assert len({trained, with_joint, corpus_key(data, per_side)[0]}) == 3
    assert made_of["settings"]["tokenizer_sha256"] == {
        "src": file_sha256(OLD / "transformer/tokenizer/spm.model"),
        "tgt": file_sha256(OLD / "transformer/tokenizer/spm.model"),
    }
    assert corpus_key(data, joint)[0] == with_joint  # a function of the contents


# ---------------------------------------------------------------- trained parents


@pytest.fixture(scope="module")
def parents(tiny_corpus, tmp_path_factory):
    """For each backend, a parent trained 2 steps whose best.pt was copied alone into another
    folder (no tokenizer/ beside it): {backend: that copy}."""
    work = tmp_path_factory.mktemp("parents")
    copies = {}
    for backend in BACKENDS:
        args = [*tiny_overrides(tiny_corpus, backend), "trainer.max_steps=2", "trainer.samples=0"]
        run_cli("train", *args, f"hydra.run.dir={backend}", cwd=work)
        copies[backend] = work / "alone" / f"{backend}.pt"
        copies[backend].parent.mkdir(exist_ok=True)
        shutil.copyfile(work / backend / "checkpoints" / "best.pt", copies[backend])
        shutil.rmtree(work / backend)  # the copy travels alone
    return copies


def fine_tune(tiny_corpus, backend: str, parent: Path, run: Path, *extra: str, check: bool = True):
    """Train ``run`` from ``parent`` on the first 200 training pairs (another corpus)."""
    args = [*tiny_overrides(tiny_corpus, backend), "data.train_lines=200", "trainer.samples=0"]
    return run_cli(
        "train",
        *args,
        f"trainer.init_from={parent}",
        *extra,
        f"hydra.run.dir={run}",
        cwd=run.parent,
        check=check,
    )


def evaluated(checkpoint: Path, out: Path) -> tuple[dict, str]:
    """The metrics and the hypotheses of ``evaluate checkpoint=...`` (greedy) written into ``out``."""
    args = [f"checkpoint={checkpoint}", "decoding=greedy", f"output={out}", "num_threads=1"]
    metrics = evaluate(compose("evaluate", args))
    return metrics, (out / f"{checkpoint.stem}.test.de.hyp").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fine_tune_of_0_steps_evaluates_exactly_as_its_parent(
    parents, tiny_corpus, tmp_path, backend, capsys
):
    parent = parents[backend]
    regularization = ["model.dropout=0.25", "optim.label_smoothing=0.05"]
    if backend == "transformer":
        regularization.append("model.attention_dropout=0.1")
    proc = fine_tune(tiny_corpus, backend, parent, tmp_path / "ft", "trainer.max_time=1e-6", *regularization)
    assert "fine-tuning from" in proc.stderr and str(parent.resolve()) in proc.stderr, proc.stderr
    assert "validation at step 0" in proc.stderr, proc.stderr
    assert "stopped: trainer.max_time=1e-06 at step 0" in proc.stderr, proc.stderr

    best = tmp_path / "ft" / "checkpoints" / "best.pt"
    ft, before = load_checkpoint(best), load_checkpoint(parent)
    assert ft["progress"]["step"] == 0 and ft["config"]["model"]["dropout"] == 0.25
    assert ft["model"].keys() == before["model"].keys()
    assert all(torch.equal(ft["model"][k], before["model"][k]) for k in ft["model"])
    record = {
        "path": str(parent.resolve()),
        "sha256": file_sha256(parent),
        "step": before["progress"]["step"],
        "parent": None,
    }
    assert ft["parent"] == record
    assert ft["tokenizer"]["sha256"] == before["tokenizer"]["sha256"]  # no new SentencePiece

    theirs, their_hyps = evaluated(parent, tmp_path / "parent_eval")
    capsys.readouterr()
    mine, my_hyps = evaluated(best, tmp_path / "ft_eval")
    printed = capsys.readouterr().out
    assert my_hyps == their_hyps and mine["bleu"] == theirs["bleu"] and mine["chrf"] == theirs["chrf"]
    chain = [{k: record[k] for k in ("path", "sha256", "step")}]
    assert mine["lineage"] == {str(best): chain} and theirs["lineage"] == {str(parent): []}
    saved = json.loads((tmp_path / "ft_eval" / "best.test.de.metrics.json").read_text())
    assert saved["lineage"] == {str(best): chain}
    line = f"lineage: {best} <- {parent.resolve()} (sha256 {record['sha256'][:12]}, step {record['step']})"
    assert line in printed.splitlines(), printed


@pytest.mark.slow
def test_the_data_are_prepared_with_the_parents_tokenizer(parents, tiny_corpus, tmp_path):
    parent = parents["transformer"]
    cache = tmp_path / "cache"
    args = [*tiny_overrides(tiny_corpus), "data.train_lines=200", f"data.cache_dir={cache}"]
    proc = run_cli("prepare", *args, f"trainer.init_from={parent}", cwd=tmp_path)
    folder = Path(proc.stdout.splitlines()[0].removeprefix("prepared: "))
    meta = json.loads((folder / "meta.json").read_text())
    carried = load_checkpoint(parent)["tokenizer"]
    assert meta["sample_sentences"] == 0 and meta["settings"]["tokenizer_sha256"] == carried["sha256"]
    assert file_sha256(folder / "spm.model") == carried["sha256"]["src"]

    run = tmp_path / "ft"
    fine_tune(tiny_corpus, "transformer", parent, run, "trainer.max_time=1e-6", f"data.cache_dir={cache}")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["data"]["key"] == folder.name  # found, not redone
    assert file_sha256(run / "tokenizer" / "spm.model") == carried["sha256"]["src"]


@pytest.mark.slow
def test_a_fine_tune_of_a_fine_tune_keeps_the_whole_lineage(parents, tiny_corpus, tmp_path):
    parent = parents["transformer"]
    fine_tune(tiny_corpus, "transformer", parent, tmp_path / "a", "trainer.max_time=1e-6")
    first = tmp_path / "a" / "checkpoints" / "best.pt"
    fine_tune(tiny_corpus, "transformer", first, tmp_path / "b", "trainer.max_time=1e-6")
    proc = run_cli(
        "evaluate", f"checkpoint={tmp_path / 'b/checkpoints/best.pt'}", "decoding=greedy", cwd=tmp_path
    )
    lineage = [line for line in proc.stdout.splitlines() if line.startswith("lineage:")]
    assert len(lineage) == 1 and lineage[0].count(" <- ") == 2, proc.stdout
    assert (
        f"<- {first.resolve()} (sha256 {file_sha256(first)[:12]}, step 0) <- {parent.resolve()}" in lineage[0]
    )

    pytest.importorskip("ctranslate2")  # an export keeps the lineage of its checkpoint
    from seq2seq.cli.loading import lineages
    from seq2seq.export import export

    second = tmp_path / "b" / "checkpoints" / "best.pt"
    export(compose("export", [f"checkpoint={second}", f"output={tmp_path / 'ct2'}"]))
    chain = lineages(str(second))[str(second)]
    assert [entry["path"] for entry in chain] == [str(first.resolve()), str(parent.resolve())]
    assert lineages(str(tmp_path / "ct2")) == {str(tmp_path / "ct2"): chain}


@pytest.mark.slow
def test_a_fine_tune_resumes_from_its_own_last_checkpoint(parents, tiny_corpus, tmp_path):
    """Stopped at step 2 and trained again to 4, a fine-tune takes the steps of one trained to 4
    at once: it resumes from its last.pt, not from the parent again."""
    parent = parents["transformer"]
    same = ["optim.decay=inverse_sqrt", "trainer.eval_every=2", "trainer.save_every=1", "model.dropout=0.3"]
    fine_tune(tiny_corpus, "transformer", parent, tmp_path / "whole", *same, "trainer.max_steps=4")
    fine_tune(tiny_corpus, "transformer", parent, tmp_path / "split", *same, "trainer.max_steps=2")
    again = fine_tune(tiny_corpus, "transformer", parent, tmp_path / "split", *same, "trainer.max_steps=4")
    assert "resuming from" in again.stderr and "at step 2" in again.stderr, again.stderr
    assert f"a fine-tune of {parent.resolve()}" in again.stderr and "fine-tuning from" not in again.stderr
    whole, split = last_losses(tmp_path / "whole"), last_losses(tmp_path / "split")
    assert sorted(split) == [1, 2, 3, 4] and split == pytest.approx(whole, abs=1e-6)
    a, b = (load_checkpoint(tmp_path / run / "checkpoints" / "last.pt") for run in ("whole", "split"))
    assert b["progress"]["step"] == 4 and b["parent"] == a["parent"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_a_fine_tune_starts_afresh(parents, tiny_corpus, tmp_path):
    """Progress, best score and optimiser come from the new run, not from the parent."""
    parent = parents["gru_bahdanau"]
    fine_tune(tiny_corpus, "gru_bahdanau", parent, tmp_path / "ft", "trainer.max_steps=1", "optim.lr=1e-4")
    before, ft = load_checkpoint(parent), load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")
    assert ft["progress"]["step"] == 1 and ft["progress"]["epoch"] == 0
    rows = [json.loads(line) for line in (tmp_path / "ft" / "validations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and rows[0]["improved"]  # the parent's score, on this data
    assert ft["scheduler"]["last_epoch"] == 1 and ft["optimizer"]["param_groups"][0]["initial_lr"] == 1e-4
    assert before["optimizer"]["state"][0]["step"] != ft["optimizer"]["state"][0]["step"]
    model, tokenizer, _ = load_model(tmp_path / "ft" / "checkpoints" / "last.pt")
    assert tokenizer.sha256 == before["tokenizer"]["sha256"]


@pytest.mark.slow
def test_fine_tune_mistakes_are_one_line_each(parents, tiny_corpus, tmp_path):
    parent = parents["transformer"]
    export = tmp_path / "export"
    export.mkdir()
    (export / "seq2seq.json").write_text("{}")
    cases = [
        (["model.d_model=64"], ["model.d_model=64", "model.d_model=32", "architecture"]),
        (["data.tokenizer.vocab_size=400"], ["data.tokenizer.vocab_size=400", "vocab_size=500"]),
    ]
    for extra, fragments in cases:
        proc = fine_tune(tiny_corpus, "transformer", parent, tmp_path / "run", *extra, check=False)
        assert_one_error(proc, "trainer.init_from", *fragments)
    gru = fine_tune(tiny_corpus, "gru_bahdanau", parent, tmp_path / "run", check=False)
    assert_one_error(gru, "model._target_=seq2seq.models.recurrent.RecurrentEncoderDecoder", "Transformer")
    for where, fragment in ((tmp_path / "missing.pt", "no such checkpoint"), (tmp_path, "is a folder"),
                            (export, "CTranslate2 export")):  # fmt: skip
        proc = fine_tune(tiny_corpus, "transformer", where, tmp_path / "run", check=False)
        assert_one_error(proc, f"trainer.init_from={where}", fragment)
    assert not (tmp_path / "run").exists()  # a refused start leaves no run directory


@pytest.mark.slow
def test_init_from_into_a_run_that_did_not_start_from_it_is_refused(tiny_corpus, parents, tmp_path):
    args = [*tiny_overrides(tiny_corpus), "trainer.max_steps=1", "trainer.samples=0", "hydra.run.dir=run"]
    run_cli("train", *args, cwd=tmp_path)
    before = (tmp_path / "run/checkpoints/last.pt").read_bytes()
    proc = run_cli(
        "train", *args, "trainer.max_steps=2", f"trainer.init_from={parents['transformer']}", cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert_one_error(proc, "did not start from a checkpoint", "new hydra.run.dir", "drop trainer.init_from")
    assert (tmp_path / "run/checkpoints/last.pt").read_bytes() == before


@pytest.mark.slow
def test_a_resumed_fine_tune_reads_no_parent(parents, tiny_corpus, tmp_path):
    """Once a fine-tune has saved, trainer.init_from is not read again: naming another file
    is a warning, and a command line without it resumes the run too."""
    parent = parents["transformer"]
    run = tmp_path / "ft"
    fine_tune(tiny_corpus, "transformer", parent, run, "trainer.max_steps=1")
    elsewhere = tmp_path / "moved.pt"
    shutil.move(parent, elsewhere)  # the parent is gone from where the run found it
    try:
        other = fine_tune(tiny_corpus, "transformer", elsewhere, run, "trainer.max_steps=2")
        assert "is read only when a run starts" in other.stderr and "at step 1" in other.stderr, other.stderr
        args = [
            *tiny_overrides(tiny_corpus),
            "data.train_lines=200",
            "trainer.samples=0",
            "trainer.max_steps=3",
        ]
        plain = run_cli("train", *args, f"hydra.run.dir={run}", cwd=tmp_path)
        assert "resuming from" in plain.stderr and "at step 2" in plain.stderr, plain.stderr
    finally:
        shutil.move(elsewhere, parent)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["progress"]["step"] == 3 and ckpt["parent"]["path"] == str(parent.resolve())
