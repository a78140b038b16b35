"""Several corpora, one model: temperature sampling, target-language tags, tgt_lang,
validation per direction and subword sampling of every corpus (``seq2seq/data/corpora.py``,
``seq2seq/data/mixture.py``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.checkpoints.format import load_checkpoint
from seq2seq.config import compose
from seq2seq.data.indexed import IndexedPairs
from seq2seq.data.mixture import MixedEpoch, MixedPairs, Mixture, mixture_probabilities, pair_quotas
from seq2seq.data.preparation import corpus_key
from seq2seq.data.sampling import SampledPairs
from seq2seq.data.tokenizer import Tokenizer, train_sentencepiece
from seq2seq.errors import UserError
from seq2seq.inference.translator import Translator
from seq2seq.special import EOS_ID
from tests.conftest import LEARN, assert_one_error, head, run_cli, tiny_overrides

# ----------------------------------------------------------------- temperature sampling


def test_probabilities_follow_size_at_temperature_1_and_flatten_above():
    assert mixture_probabilities([300, 100], [1, 1], 1.0) == pytest.approx([0.75, 0.25])
    assert mixture_probabilities([400, 100], [1, 1], 2.0) == pytest.approx([2 / 3, 1 / 3])  # sqrt
    assert mixture_probabilities([400, 100], [1, 1], 1e6) == pytest.approx([0.5, 0.5], abs=1e-5)
    assert mixture_probabilities([100, 100], [3, 1], 1.0) == pytest.approx([0.75, 0.25])  # weight counts 3x


def test_quotas_sum_to_the_epoch_and_round_to_the_nearest():
    assert pair_quotas(10, np.array([0.55, 0.45])).tolist() == [6, 4]  # 5.5 and 4.5: ties to the first
    assert pair_quotas(7, np.array([1 / 3, 1 / 3, 1 / 3])).tolist() == [3, 2, 2]
    quotas = pair_quotas(1000, mixture_probabilities([5, 50, 500], [1, 1, 1], 3.0))
    assert quotas.sum() == 1000


def mixture(temperature: float, sizes=(400, 60), weights=(1, 1)) -> Mixture:
    rng = np.random.default_rng(0)
    lengths = [(rng.integers(2, 30, n), rng.integers(2, 30, n)) for n in sizes]
    return Mixture(lengths, [1, 1], list(weights), temperature, max_tokens=200)


def corpora_of(m: Mixture, rows: np.ndarray) -> np.ndarray:
    return np.searchsorted(m.offsets, rows, side="right") - 1


def test_at_temperature_1_an_epoch_is_one_pass_over_every_corpus_in_mixed_batches():
    m = mixture(1.0)
    assert m.quotas.tolist() == [400, 60]
    for epoch in range(3):
        batches = m.batches(seed=1, epoch=epoch)
        assert sorted(np.concatenate(batches).tolist()) == list(range(460))  # every pair once
        assert len(batches) == m.count(1, epoch) == m.count(1, 0)  # and as many batches every epoch
    mixed = [b for b in m.batches(1, 0) if len(set(corpora_of(m, b).tolist())) == 2]
    assert len(mixed) > len(m.batches(1, 0)) // 2  # most batches hold pairs of both corpora
    for batch in m.batches(1, 0):  # each within trainer.max_tokens (source sizes count the prefix)
        size = np.maximum(m.src[batch], m.tgt[batch] + 1)
        assert len(batch) * size.max() <= 200


def test_batches_are_a_function_of_seed_and_epoch():
    m = mixture(3.0)
    first = m.batches(seed=1, epoch=2)
    again = mixture(3.0).batches(seed=1, epoch=2)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]  # what exact resume needs
    assert [b.tolist() for b in first] != [b.tolist() for b in m.batches(seed=1, epoch=3)]
    assert [b.tolist() for b in first] != [b.tolist() for b in m.batches(seed=2, epoch=2)]
    fresh = mixture(3.0)  # the count, known before the batches are made
    counts = [fresh.count(1, e) for e in range(6)]
    assert counts == [len(m.batches(1, e)) for e in range(6)]
    assert len(set(counts)) > 1  # epochs that draw different pairs may pack into more or fewer batches


def test_a_high_temperature_up_samples_the_small_corpus_without_replacement():
    m = mixture(5.0)
    for epoch in range(3):
        rows = np.concatenate(m.batches(seed=1, epoch=epoch))
        assert np.bincount(corpora_of(m, rows), minlength=2).tolist() == m.quotas.tolist()
    assert m.quotas[1] > 60  # more pairs of the small corpus than it has
    assert m.probabilities[1] == pytest.approx(60**0.2 / (400**0.2 + 60**0.2))
    # It goes through its pairs shuffle after shuffle: over epochs, each pair as often as the others (+-1).
    seen = np.concatenate([b[b >= 400] for e in range(3) for b in m.batches(1, e)])
    counts = np.bincount(seen - 400, minlength=60)
    assert counts.max() - counts.min() <= 1


# ----------------------------------------------------------------- tags


def sentencepiece(out: Path, symbols=None) -> Tokenizer:
    corpus = Path(__file__).resolve().parent.parent / "data" / "multi30k"
    sentences = head(corpus / "train.de.gz", 200) + head(corpus / "train.en.gz", 200)
    train_sentencepiece([s.strip() for s in sentences], 500, "unigram", 1.0, 1, out, symbols)
    return Tokenizer(out, out)


@pytest.fixture(scope="module")
def tagged_tokenizer(tmp_path_factory) -> Tokenizer:
    return sentencepiece(tmp_path_factory.mktemp("spm") / "spm.model", ["<2de>", "<2en>"])


def test_tags_are_single_pieces_put_before_the_source(tagged_tokenizer):
    tok = tagged_tokenizer
    assert set(tok.target_tags) == {"de", "en"}
    assert tok.src.encode("<2en>", out_type=str)[-1] == "<2en>"  # never split
    cfg = OmegaConf.create({"max_tokens": 100})
    translator = Translator(tok, cfg).with_target("en")
    plain = tok.encode_src(["Ein Hund."])[0]
    assert translator.encode(["Ein Hund."])[0] == [tok.target_tags["en"], *plain]


def test_tgt_lang_is_required_by_a_multilingual_model_and_refused_by_a_bilingual_one(
    tagged_tokenizer, tmp_path
):
    with pytest.raises(UserError, match=r"^tgt_lang is required: this model translates into de, en"):
        tagged_tokenizer.source_prefix(None)
    with pytest.raises(UserError, match=r"^tgt_lang=fr: this model translates into de, en only"):
        tagged_tokenizer.source_prefix("fr")
    bilingual = sentencepiece(tmp_path / "spm.model")
    assert bilingual.target_tags == {} and bilingual.source_prefix(None) == []
    with pytest.raises(UserError, match=r"^tgt_lang=en: this model translates into one language only"):
        bilingual.source_prefix("en")


# ----------------------------------------------------------------- config and preparation


def corpora_override(corpus: dict[str, Path]) -> str:
    """Two directions of the tiny corpus: de-en and en-de, each validated (two target languages)."""
    c = corpus
    entries = (
        f"de-en:{{src:{c['train.de']},tgt:{c['train.en']},src_lang:de,tgt_lang:en,"
        f"valid:{{src:{c['valid.de']},tgt:{c['valid.en']}}},test:{{src:{c['test.de']},tgt:{c['test.en']}}}}}",
        f"en-de:{{src:{c['train.en']},tgt:{c['train.de']},src_lang:en,tgt_lang:de,weight:2,"
        f"valid:{{src:{c['valid.en']},tgt:{c['valid.de']}}}}}",
    )
    return "++data.corpora={" + ",".join(entries) + "}"


def multi_overrides(corpus: dict[str, Path]) -> list[str]:
    """``tiny_overrides`` with the two directions in place of data.train/valid/test."""
    kept = [o for o in tiny_overrides(corpus) if not o.startswith(("data.train", "data.valid", "data.test"))]
    return ["~data", *kept, corpora_override(corpus), "data.temperature=2"]


@pytest.mark.slow
def test_a_mixture_resumes_exactly_across_epochs(tiny_corpus, tmp_path):
    base = [
        *multi_overrides(tiny_corpus),
        "trainer.max_tokens=2000",
        "trainer.precision=fp32",
        "trainer.patience=0",
    ]
    run_cli("train", *base, "trainer.max_steps=30", "hydra.run.dir=straight", cwd=tmp_path)
    run_cli("train", *base, "trainer.max_steps=16", "hydra.run.dir=resumed", cwd=tmp_path)
    run_cli("train", *base, "trainer.max_steps=30", "hydra.run.dir=resumed", cwd=tmp_path)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    where = ("step", "epoch", "batch_in_epoch")
    assert [resumed["progress"][k] for k in where] == [straight["progress"][k] for k in where]
    assert straight["progress"]["epoch"] >= 2  # two epochs' ends were crossed
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name


def test_the_bilingual_preparation_key_is_unchanged():
    cfg = compose("train", ["+model=transformer"])
    assert corpus_key(cfg.data)[0] == "138bacef5649a3f8"  # the shipped Multi30k's prepared folder


def test_presets_of_several_corpora_compose():
    cfg = compose("train", ["+model=transformer", "data=multi30k_all"])
    assert sorted(cfg.data.corpora) == ["cs-en", "de-en", "en-cs", "en-de", "en-fr", "fr-en"]
    assert all(Path(e.valid.src).is_file() and Path(e.test.tgt).is_file() for e in cfg.data.corpora.values())
    cfg = compose("train", ["+model=transformer", "data=tatoeba_multi30k"])
    assert cfg.data.corpora.tatoeba.valid is None and cfg.data.corpora.multi30k.weight == 2


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["data=multi30k", "++data.corpora={x:{src:a,tgt:b,src_lang:de,tgt_lang:en}}"],
         ["data.train and data.corpora"]),
        (["data=tatoeba_multi30k", "data.tokenizer.joint=false"], ["data.tokenizer.joint=false"]),
        (["data=tatoeba_multi30k", "data.corpora.multi30k.valid=null"], ["no entry has a valid split"]),
        (["data=tatoeba_multi30k", "data.corpora.tatoeba.weight=0"], ["data.corpora.tatoeba.weight=0"]),
        (["data=tatoeba_multi30k", "data.corpora.tatoeba.tgt_lang=e>n"], ["data.corpora.tatoeba.tgt_lang"]),
        (["data=multi30k_all", "data.corpora.en-de.valid.src=${data.corpora.de-en.valid.src}",
          "data.corpora.en-de.src_lang=de", "data.corpora.en-de.tgt_lang=en"],
         ["one validation set per direction"]),
    ],
)  # fmt: skip
def test_bad_corpora_are_refused_in_one_line(overrides, fragments):
    with pytest.raises(UserError) as e:
        compose("train", ["+model=transformer", *overrides])
    assert all(f in str(e.value) for f in fragments), str(e.value)


def test_each_source_starts_with_its_target_tag(tiny_corpus):
    from seq2seq.data.corpora import prepare_corpora

    cfg = compose("train", multi_overrides(tiny_corpus))
    folders = prepare_corpora(cfg.data)
    tok = Tokenizer(folders[0] / "spm.model", folders[0] / "spm.model")
    tags = [tok.target_tags["en"], tok.target_tags["de"]]
    pairs = MixedPairs(folders, [[t] for t in tags], "k")
    n = len(pairs.corpora[0])
    batch = pairs.__getitems__([0, 1, n, n + 1])
    assert batch.src[:, 0].tolist() == [tags[0], tags[0], tags[1], tags[1]]
    assert batch.src[0, 1 : batch.src_lengths[0]].tolist() == pairs.corpora[0][0][0].tolist()


# ----------------------------------------------------------------- subword sampling


SAMPLING = {"model_type": "unigram", "alpha": 0.1, "nbest_size": 64, "max_len": 128}


@pytest.fixture(scope="module")
def sampled_folders(tiny_corpus):
    """The two directions prepared by a run that samples: (folders, tokenizer, tags)."""
    from seq2seq.data.corpora import prepare_corpora

    cfg = compose("train", [*multi_overrides(tiny_corpus), "data.tokenizer.sampling=true"])
    folders = prepare_corpora(cfg.data)
    tok = Tokenizer(folders[0] / "spm.model", folders[0] / "spm.model")
    return folders, tok, [tok.target_tags["en"], tok.target_tags["de"]]


def test_a_mixture_with_sampling_keeps_each_corpus_text(sampled_folders):
    folders, _, _ = sampled_folders
    assert len(folders) == 2 and all(IndexedPairs(f).has_text() for f in folders)


def test_a_sampled_mixture_changes_every_epoch_keeps_its_tags_and_decodes_to_the_text(sampled_folders):
    folders, tok, tags = sampled_folders
    pairs = MixedPairs(folders, [[t] for t in tags], "k", SAMPLING)
    assert isinstance(pairs.for_epoch(1, 0), MixedEpoch)
    n = len(pairs.corpora[0])
    rows = [*range(20), *range(n, n + 20)]
    changed = 0
    for row in rows:
        c, i = pairs.locate(row)
        corpus = pairs.corpora[c]
        epochs = [pairs.for_epoch(1, epoch)[row] for epoch in range(3)]
        for src, tgt in epochs:
            assert src[0] == tags[c] and src[-1] == EOS_ID and EOS_ID not in tgt
            assert tok.src.decode(src[1:-1].tolist()) == tok.src.decode(corpus.ids("src", i)[:-1].tolist())
            assert tok.decode_tgt(tgt.tolist()) == tok.decode_tgt(corpus.ids("tgt", i).tolist())
            assert tok.src.decode(src[1:-1].tolist()) == corpus.text("src", i)
        changed += len({tuple(src.tolist()) for src, _ in epochs}) > 1
    assert changed >= 0.5 * len(rows)


def test_a_sampled_mixture_is_a_function_of_seed_epoch_and_row(sampled_folders):
    """Two fresh instances give the same batch for the same (seed, epoch, rows); the draws
    are seeded with the row, so the second corpus's pair i does not repeat the first's."""
    folders, _, tags = sampled_folders
    prefixes = [[t] for t in tags]
    n = len(MixedPairs(folders, prefixes, "k"))
    n0 = len(IndexedPairs(folders[0]))
    rows = np.array([3, n0 + 3, 0, n - 1, n0], dtype=np.int64)
    first = MixedPairs(folders, prefixes, "k", SAMPLING).for_epoch(5, 2).__getitems__(rows)
    again = pickle.loads(pickle.dumps(MixedPairs(folders, prefixes, "k", SAMPLING))).for_epoch(5, 2)
    second = again.__getitems__(rows[::-1])
    assert torch.equal(first.src, second.src.flip(0)) and torch.equal(first.tgt_out, second.tgt_out.flip(0))
    assert not torch.equal(
        first.src, MixedPairs(folders, prefixes, "k", SAMPLING).for_epoch(6, 2).__getitems__(rows).src
    )
    corpus = SampledPairs(folders[1], **SAMPLING)
    for i in range(5):
        assert again[n0 + i][1].tolist() == corpus.sample("tgt", i, 5, 2, row=n0 + i)
    assert any(again[n0 + i][1].tolist() != corpus.sample("tgt", i, 5, 2) for i in range(20))


def test_a_sampled_mixture_resumes_mid_epoch_with_the_same_batches(tiny_corpus, tmp_path):
    from seq2seq.training.trainer import Trainer

    overrides = [*multi_overrides(tiny_corpus), "trainer.samples=0", "trainer.num_workers=0"]
    cfg = compose("train", [*overrides, "data.tokenizer.sampling=true"])
    trainers = [Trainer(cfg, tmp_path / name) for name in ("run", "resumed")]
    for trainer in trainers:
        trainer.setup()
    run, resumed = trainers
    assert isinstance(run.data.pairs.for_epoch(cfg.seed, 0), MixedEpoch)
    batches = list(run.epoch_batches())
    resumed.progress.batch_in_epoch = 2
    rest = list(resumed.epoch_batches())
    assert len(rest) == len(batches) - 2
    for b, expected in zip(rest, batches[2:], strict=True):
        assert torch.equal(b.src, expected.src) and torch.equal(b.tgt_out, expected.tgt_out)


# ----------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_multilingual_model_trains_validates_per_direction_exports_and_translates(tiny_corpus, tmp_path):
    learn = [o for o in LEARN if not o.startswith("trainer.max_epochs")]
    run_cli("train", *multi_overrides(tiny_corpus), *learn, "trainer.max_epochs=8", "trainer.samples=1",
            "hydra.run.dir=run", cwd=tmp_path)  # fmt: skip
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "validations.jsonl").read_text().splitlines()]
    assert set(rows[-1]["directions"]) == {"de-en", "en-de"}
    mean = sum(d["bleu"] for d in rows[-1]["directions"].values()) / 2
    assert rows[-1]["bleu"] == pytest.approx(mean, abs=1e-3)  # early stopping compares the mean
    checkpoint = run / "checkpoints" / "best.pt"

    refused = run_cli("translate", f"checkpoint={checkpoint}", cwd=tmp_path, stdin="Ein Hund.\n", check=False)
    assert_one_error(refused, "tgt_lang is required", "de, en")
    evaluated = run_cli("evaluate", f"checkpoint={checkpoint}", "tgt_lang=en", "output=eval", cwd=tmp_path)
    assert "BLEU" in evaluated.stdout
    metrics = json.loads(next((tmp_path / "eval").glob("*.metrics.json")).read_text())
    assert metrics["tgt_lang"] == "en" and metrics["sentences"] == 10

    run_cli("export", f"checkpoint={checkpoint}", "output=ct2", cwd=tmp_path)
    sources = "".join(tiny_corpus["test.de"].read_text(encoding="utf-8").splitlines(keepends=True)[:5])
    outputs = {}
    for name, model in (("torch", str(checkpoint)), ("ct2", "ct2")):
        args = [f"checkpoint={model}", "tgt_lang=en", "decoding.max_len_b=20"]
        outputs[name] = run_cli("translate", *args, cwd=tmp_path, stdin=sources).stdout
    assert outputs["ct2"] == outputs["torch"] and outputs["ct2"].count("\n") == 5
    into_de = run_cli("translate", "checkpoint=ct2", "tgt_lang=de", cwd=tmp_path, stdin=sources).stdout
    assert into_de != outputs["ct2"]  # the tag steers the output
    unknown = run_cli("translate", "checkpoint=ct2", "tgt_lang=fr", cwd=tmp_path, stdin="x\n", check=False)
    assert_one_error(unknown, "tgt_lang=fr")

    # serve: a request names its target language (the server's tgt_lang is the default)
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from seq2seq.cli.loading import make_translator
    from seq2seq.serving.app import create_app
    from seq2seq.serving.info import describe_model

    cfg = compose("serve", [f"checkpoint={tmp_path / 'ct2'}"])
    translator, train_config = make_translator(cfg, target_required=False)
    with TestClient(create_app(translator, cfg, describe_model(translator, train_config, cfg))) as client:
        assert client.get("/v1/model").json()["languages"]["tags"] == ["de", "en"]
        first = sources.splitlines()[0]
        answer = client.post("/v1/translate", json={"text": first, "options": {"tgt_lang": "en"}}).json()
        assert answer["translations"][0]["text"] == outputs["ct2"].splitlines()[0]
        missing = client.post("/v1/translate", json={"text": first})
        assert missing.status_code == 422 and missing.json()["field"] == "options.tgt_lang"
