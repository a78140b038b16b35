"""Shipping trained models: checkpoint averaging and ensembles."""

from __future__ import annotations

import pytest
import torch

from seq2seq.checkpoints.format import load_checkpoint
from seq2seq.checkpoints.loading import load_model, load_models
from seq2seq.config import compose
from seq2seq.inference.torch_engine import TorchTranslator
from seq2seq.models import Ensemble

from .conftest import assert_one_error, run_cli, run_main, tiny_overrides

pytestmark = pytest.mark.slow  # every test uses the runs trained through the command line

SOURCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."]


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory):
    """A Transformer keeping its last 3 step checkpoints, a GRU on the same tokenizer, and a
    Transformer on another tokenizer: {name: run directory}."""
    work = tmp_path_factory.mktemp("ship")
    plans = {
        "transformer": [*tiny_overrides(tiny_corpus), "trainer.save_every=1", "trainer.keep_last=3"],
        "gru": [*tiny_overrides(tiny_corpus, "gru_bahdanau"), "trainer.max_steps=2"],
        "other_tokenizer": [
            *tiny_overrides(tiny_corpus),
            "data.tokenizer.vocab_size=400",
            "trainer.max_steps=1",
        ],
    }
    for name, args in plans.items():
        run_cli("train", *args, f"hydra.run.dir={name}", "trainer.samples=0", cwd=work)
    return {name: work / name for name in plans}


def decoding(mode: str):
    return compose("translate", ["checkpoint=unused.pt", f"decoding={mode}", "decoding.max_len_b=6"]).decoding


def test_average_of_the_last_checkpoints_is_the_mean_of_their_weights(runs):
    folder = runs["transformer"] / "checkpoints"
    assert sorted(p.name for p in folder.glob("step_*.pt")) == [f"step_{s:07d}.pt" for s in (2, 3, 4)]
    proc = run_cli("average", f"checkpoints={folder}", "last=2", cwd=runs["transformer"])
    out = folder / "average_last2.pt"
    assert str(out) in proc.stdout
    avg = load_checkpoint(out)
    a, b = (load_checkpoint(folder / f"step_{s:07d}.pt")["model"] for s in (3, 4))
    for k, v in avg["model"].items():
        assert v.dtype == a[k].dtype
        torch.testing.assert_close(v, (a[k].double() + b[k].double()).div(2).to(v.dtype), msg=k)
    assert avg["averaged"] == [str(folder / "step_0000003.pt"), str(folder / "step_0000004.pt")]
    assert "optimizer" not in avg and "progress" not in avg  # it is not a run to resume

    translated = run_cli(
        "translate", f"checkpoint={out}", cwd=runs["transformer"], stdin="\n".join(SOURCES) + "\n"
    )
    assert len(translated.stdout.splitlines()) == len(SOURCES)


def test_average_of_one_checkpoint_has_its_weights(runs):
    folder = runs["transformer"] / "checkpoints"
    run_cli("average", f"inputs={folder / 'best.pt'}", f"output={folder / 'one.pt'}", cwd=runs["transformer"])
    one, best = load_checkpoint(folder / "one.pt")["model"], load_checkpoint(folder / "best.pt")["model"]
    assert one.keys() == best.keys() and all(torch.equal(one[k], best[k]) for k in one)


def test_average_refuses_bad_inputs(runs, tmp_path, monkeypatch, capsys):
    folder = runs["transformer"] / "checkpoints"
    gru = runs["gru"] / "checkpoints" / "best.pt"
    other = runs["other_tokenizer"] / "checkpoints" / "best.pt"
    cases = [
        ([f"checkpoints={folder}", "last=5"], ["fewer than last=5", "trainer.keep_last"]),
        ([f"checkpoints={tmp_path / 'nope'}", "last=2"], ["no such folder"]),
        ([f"checkpoints={folder}", "last=2", f"inputs={gru}"], ["one of the two"]),
        ([f"checkpoints={folder}"], ["last=N"]),
        ([f"inputs={folder / 'best.pt'},{gru}"], ["different models", str(gru)]),
        ([f"inputs={folder / 'best.pt'},{other}"], ["different tokenizers", str(other)]),
        ([f"inputs={folder / 'best.pt'},{folder / 'missing.pt'}"], ["missing.pt", "no such checkpoint"]),
        ([f"checkpoints={folder}", "last=2", f"output={folder / 'last.pt'}"], ["would overwrite"]),
        ([f"checkpoints={folder}", "last=2", f"output={tmp_path / 'no' / 'avg.pt'}"], ["does not exist"]),
        (["last=-1", f"checkpoints={folder}"], ["last", "-1"]),
    ]
    (args, fragments), *rest = cases
    assert_one_error(run_cli("average", *args, cwd=tmp_path, check=False), *fragments)  # the real process
    for args, fragments in rest:  # the same main(), in this process
        assert_one_error(run_main("average", *args, monkeypatch=monkeypatch, capsys=capsys), *fragments)
    assert not (folder / "average.pt").exists()


def test_average_may_be_written_anywhere(runs, tmp_path):
    """The average carries its tokenizer: written outside the run, it translates alone."""
    folder = runs["transformer"] / "checkpoints"
    out = tmp_path / "elsewhere" / "avg.pt"
    out.parent.mkdir()
    run_cli("average", f"checkpoints={folder}", "last=2", f"output={out}", cwd=tmp_path)
    avg, best = load_checkpoint(out), load_checkpoint(folder / "best.pt")
    assert avg["tokenizer"]["sha256"] == best["tokenizer"]["sha256"] and "models" in avg["tokenizer"]
    translated = run_cli("translate", f"checkpoint={out}", cwd=tmp_path, stdin="\n".join(SOURCES) + "\n")
    assert len(translated.stdout.splitlines()) == len(SOURCES)


def test_one_model_ensemble_decodes_exactly_like_the_model(runs):
    model, tokenizer, _ = load_model(runs["transformer"] / "checkpoints" / "best.pt")
    ensemble = Ensemble([model]).eval()
    for mode in ("greedy", "beam"):
        cfg = decoding(mode)
        cfg.nbest = 2 if mode == "beam" else 1
        alone = TorchTranslator(model, tokenizer, cfg, "cpu").hypotheses(SOURCES)
        joined = TorchTranslator(ensemble, tokenizer, cfg, "cpu").hypotheses(SOURCES)
        assert [[h.tokens for h in hyps] for hyps in joined] == [[h.tokens for h in hyps] for hyps in alone]
        for a, b in zip(alone, joined, strict=True):
            assert [h.score for h in b] == pytest.approx([h.score for h in a], abs=1e-4)


def test_ensemble_step_is_the_mean_of_the_members_log_probabilities(runs):
    paths = [runs["transformer"] / "checkpoints" / "best.pt", runs["gru"] / "checkpoints" / "best.pt"]
    ensemble, tokenizer, _ = load_models(paths)
    members = [load_model(p)[0] for p in paths]
    src = torch.tensor([tokenizer.encode_src(["Ein Hund läuft."])[0]])  # (1, S)
    lengths = torch.tensor([src.size(1)])
    with torch.no_grad():
        logits, _ = ensemble.step(torch.tensor([1]), ensemble.init_state(ensemble.encode(src, lengths)))
        expected = torch.stack(
            [
                torch.log_softmax(m.step(torch.tensor([1]), m.init_state(m.encode(src, lengths)))[0], -1)
                for m in members
            ]
        ).mean(0)
    torch.testing.assert_close(logits, expected)


def test_translate_and_evaluate_with_an_ensemble_of_two_backends(runs, tmp_path):
    paths = f"{runs['transformer'] / 'checkpoints' / 'best.pt'},{runs['gru'] / 'checkpoints' / 'best.pt'}"
    for mode in ("greedy", "beam"):
        proc = run_cli(
            "translate",
            f"checkpoint={paths}",
            f"decoding={mode}",
            cwd=tmp_path,
            stdin="\n".join(SOURCES) + "\n",
        )
        assert len(proc.stdout.splitlines()) == len(SOURCES)
    proc = run_cli("evaluate", f"checkpoint={paths}", f"output={tmp_path}", "decoding=greedy", cwd=tmp_path)
    assert "BLEU =" in proc.stdout and (tmp_path / "best+best.test.de.metrics.json").is_file()


def test_ensemble_of_two_tokenizers_is_refused(runs, tmp_path):
    a, b = (runs[n] / "checkpoints" / "best.pt" for n in ("transformer", "other_tokenizer"))
    proc = run_cli("translate", f"checkpoint={a},{b}", cwd=tmp_path, stdin="Hallo\n", check=False)
    assert_one_error(proc, str(a), str(b), "different tokenizers")
