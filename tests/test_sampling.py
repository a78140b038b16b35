"""Subword sampling while training (``data.tokenizer.sampling``): the prepared text, segmentations
that change every epoch and decode to the same text, a function of (seed, epoch, pair, side)
alone, the deterministic fallback, validation untouched, exact batches after a resume, and
the config's errors."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm
import torch
from omegaconf import OmegaConf

from seq2seq.config import compose, help_text
from seq2seq.data.batching import token_batches
from seq2seq.data.indexed import TEXT, IndexedPairs, identity
from seq2seq.data.preparation import open_prepared, prepare
from seq2seq.data.reading import read_lines
from seq2seq.data.sampling import BpeDropout, SampledPairs, line_seed
from seq2seq.errors import UserError
from seq2seq.special import EOS_ID
from seq2seq.training.parent import check_parent
from seq2seq.training.trainer import Trainer

from .conftest import ROOT, compose_train, tiny_overrides
from .test_data import data_config
from .test_finetune import parent_of


@pytest.fixture(scope="module")
def folders(tiny_corpus, tmp_path_factory):
    """The tiny corpus prepared without sampling, then found again by a run that samples:
    (folder, its files' bytes before the text was added), for unigram and for bpe."""
    made = {}
    for model_type in ("unigram", "bpe"):
        cache = tmp_path_factory.mktemp(f"cache_{model_type}")
        cfg = data_config(tiny_corpus["train.de"], tiny_corpus["train.en"], cache)
        cfg.tokenizer.model_type = model_type
        folder = prepare(cfg, workers=1)
        assert not IndexedPairs(folder).has_text()
        before = {f.name: f.read_bytes() for f in folder.iterdir()}
        cfg.tokenizer.sampling = True
        assert prepare(cfg, workers=1) == folder  # the same folder, its text added
        made[model_type] = folder, before
    return made


def sampled(folder, model_type="unigram", alpha=0.1, max_len=128) -> SampledPairs:
    return SampledPairs(folder, model_type, alpha, 64, max_len)


def test_text_is_added_beside_unchanged_ids_and_holds_the_lines(folders):
    folder, before = folders["unigram"]
    assert {f.name: f.read_bytes() for f in folder.iterdir() if f.name != TEXT} == before
    pairs, tokenizer = open_prepared(folder)
    assert pairs.has_text()
    assert sorted(p.name for p in (folder / TEXT).iterdir()) == [
        "src.bin",
        "src.off.npy",
        "tgt.bin",
        "tgt.off.npy",
    ]
    for i in (0, 7, len(pairs) - 1):
        assert tokenizer.encode_src([pairs.text("src", i)])[0] == pairs.ids("src", i).tolist()
        assert tokenizer.encode_tgt([pairs.text("tgt", i)])[0] == pairs.ids("tgt", i).tolist()


def test_a_fresh_preparation_with_sampling_writes_the_same_text(folders, tiny_corpus, tmp_path):
    cfg = data_config(
        tiny_corpus["train.de"], tiny_corpus["train.en"], tmp_path, **{"tokenizer.sampling": True}
    )
    folder = prepare(cfg, workers=1)
    added, _ = folders["unigram"]
    for name in ("src.bin", "src.off.npy", "tgt.bin", "tgt.off.npy"):
        assert (folder / TEXT / name).read_bytes() == (added / TEXT / name).read_bytes()


def test_a_sampling_run_that_loses_the_race_to_prepare_gets_the_text(tiny_corpus, tmp_path, monkeypatch):
    """Two runs started together (scripts/train_ensemble.py): the one without sampling renames
    its folder into place first; the sampling one finds that folder without text and adds it."""
    from seq2seq.data import preparation

    cfg = data_config(tiny_corpus["train.de"], tiny_corpus["train.en"], tmp_path)
    made = preparation._make

    def first_the_other_run(data_cfg, folder, made_of, workers, tokenizer):
        made(cfg, folder, made_of, 1, None)  # the run without sampling, done a moment before
        assert not IndexedPairs(folder).has_text()
        made(data_cfg, folder, made_of, workers, tokenizer)

    monkeypatch.setattr(preparation, "_make", first_the_other_run)
    sampling = data_config(
        tiny_corpus["train.de"], tiny_corpus["train.en"], tmp_path, **{"tokenizer.sampling": True}
    )
    folder = prepare(sampling, workers=1)
    assert IndexedPairs(folder).has_text() and len(sampled(folder)) == 300


def test_bpe_dropout_of_0_is_sentencepieces_encoding(folders, tiny_corpus):
    """BPE-dropout merges as SentencePiece's BPE does: with no merge dropped, its ids are
    ``encode``'s, for every training and test line, and for unknown characters (bytes)."""
    folder, _ = folders["bpe"]
    processor = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    exact = BpeDropout(processor, 0.0)
    lines = read_lines(tiny_corpus["train.de"]) + read_lines(tiny_corpus["test.en"])
    for line in [*lines, "naïve café — 東京 😀 x\u00a0y  two  spaces", ""]:
        assert exact(line, None) == processor.encode(line), line


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_segmentations_change_every_epoch_and_decode_to_the_same_text(folders, model_type):
    folder, _ = folders[model_type]
    pairs = sampled(folder, model_type)
    _, tokenizer = open_prepared(folder)
    n, changed, longer = 50, 0, 0
    for i in range(n):
        plain = [pairs.ids(side, i).tolist() for side in ("src", "tgt")]
        epochs = [pairs.for_epoch(1, epoch)[i] for epoch in range(4)]
        for src, tgt in epochs:
            assert src[-1] == EOS_ID and EOS_ID not in tgt
            assert tokenizer.src.decode(src[:-1]) == tokenizer.src.decode(plain[0][:-1])
            assert tokenizer.decode_tgt(tgt) == tokenizer.decode_tgt(plain[1])
        changed += len({tuple(src) for src, _ in epochs}) > 1
        longer += len(epochs[0][0]) - len(plain[0])
    assert changed >= 0.5 * n and longer > 0  # sampled pieces are shorter


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_the_ids_are_a_function_of_seed_epoch_pair_and_side(folders, model_type):
    """The same (seed, epoch, pair, side) gives the same ids in any order, in another
    dataset instance and in a fresh process; another seed gives others."""
    folder, _ = folders[model_type]
    rows = np.array([5, 0, 17, 3], dtype=np.int32)  # as the batch sampler gives them
    first = sampled(folder, model_type).for_epoch(3, 2).__getitems__(rows)
    again = pickle.loads(pickle.dumps(sampled(folder, model_type))).for_epoch(3, 2).__getitems__(rows[::-1])
    assert torch.equal(first.src, again.src.flip(0)) and torch.equal(first.tgt_out, again.tgt_out.flip(0))
    # Another process, started afresh (not forked from this one): a spawned DataLoader worker.
    loader = torch.utils.data.DataLoader(
        sampled(folder, model_type).for_epoch(3, 2),
        batch_sampler=[rows],
        collate_fn=identity,
        num_workers=1,
        multiprocessing_context="spawn",
    )
    (worker,) = list(loader)
    assert torch.equal(first.src, worker.src) and torch.equal(first.tgt_in, worker.tgt_in)
    other = sampled(folder, model_type).for_epoch(4, 2).__getitems__(rows)
    assert not torch.equal(first.src, other.src)  # another seed, another segmentation
    seeds = {
        line_seed(s, e, i, side) for s in (1, 2) for e in (0, 1) for i in (0, 1) for side in ("src", "tgt")
    }
    assert len(seeds) == 16


def test_a_sampled_side_longer_than_max_len_keeps_its_deterministic_ids(folders):
    folder, _ = folders["bpe"]
    limit = int(np.median(IndexedPairs(folder).lengths("src"))) + 2
    pairs = sampled(folder, "bpe", alpha=0.3, max_len=limit)
    kept = fallen_back = 0
    for i in range(len(pairs)):
        if len(pairs.ids("src", i)) > limit:
            continue  # not a pair of a folder prepared with data.max_len=limit
        src = pairs.sample("src", i, seed=1, epoch=0)
        if isinstance(src, np.ndarray):
            assert src.tolist() == pairs.ids("src", i).tolist()
            fallen_back += 1
        else:
            assert len(src) <= limit
            kept += 1
    assert kept and fallen_back


def test_validation_translation_and_batches_are_those_of_a_run_without_sampling(tiny_corpus, tmp_path):
    """The trainer of a sampling run validates on the deterministic ids, forms the same
    batches, translates alike, and a resume mid-epoch gives the uninterrupted epoch's batches."""
    common = ["trainer.num_workers=0", f"data.cache_dir={tmp_path / 'cache'}"]
    plain = Trainer(compose_train(tiny_corpus, *common), tmp_path / "plain")
    sampling = Trainer(
        compose_train(tiny_corpus, *common, "data.tokenizer.sampling=true"), tmp_path / "sampled"
    )
    for trainer in (plain, sampling):
        trainer.setup()
    assert isinstance(sampling.data.pairs, SampledPairs) and not isinstance(plain.data.pairs, SampledPairs)
    assert sampling.valid == plain.valid
    batches = list(sampling.epoch_batches())
    plain_batches = list(plain.epoch_batches())
    assert [len(b.src) for b in batches] == [len(b.src) for b in plain_batches]
    assert any(b.src.shape != p.src.shape for b, p in zip(batches, plain_batches, strict=True))
    sampling.progress.batch_in_epoch = 3  # resumed mid-epoch, by a new trainer
    again = Trainer(compose_train(tiny_corpus, *common, "data.tokenizer.sampling=true"), tmp_path / "again")
    again.setup()
    again.progress.batch_in_epoch = 3
    for rest in (list(sampling.epoch_batches()), list(again.epoch_batches())):
        assert len(rest) == len(batches) - 3
        for b, expected in zip(rest, batches[3:], strict=True):
            assert torch.equal(b.src, expected.src) and torch.equal(b.tgt_out, expected.tgt_out)
    sampling.progress.epoch, sampling.progress.batch_in_epoch = 1, 0
    assert any(not torch.equal(b.src, e.src) for b, e in zip(sampling.epoch_batches(), batches, strict=False))
    (valid,) = plain.valid
    lines = valid.src_lines  # after sampling in this process: translation input is not sampled
    assert sampling.data.tokenizer.encode_src(lines) == valid.src_ids


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.tokenizer.sampling=true", "data.tokenizer.model_type=char"], "not model_type=char"),
        (["data.tokenizer.sampling=true", "data.tokenizer.model_type=word"], "not model_type=word"),
        (["data.tokenizer.alpha=0"], "data.tokenizer.alpha=0.0: must be in (0, 1]"),
        (["data.tokenizer.alpha=1.5"], "data.tokenizer.alpha=1.5: must be in (0, 1]"),
        (["data.tokenizer.nbest_size=1"], "data.tokenizer.nbest_size=1: must be >= 2"),
        (["data.tokenizer.sampling=maybe"], "data.tokenizer.sampling"),
    ],
)
def test_bad_sampling_settings_are_one_line(overrides, message):
    with pytest.raises(UserError) as caught:
        compose("train", ["+model=transformer", *overrides])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_fine_tune_may_sample_where_its_parent_did_not(tiny_corpus):
    parent = parent_of(compose("train", tiny_overrides(tiny_corpus)))
    child = compose(
        "train",
        [
            *tiny_overrides(tiny_corpus),
            "data.tokenizer.sampling=true",
            "data.tokenizer.alpha=0.3",
            "data.tokenizer.nbest_size=8",
        ],
    )
    check_parent(child, parent)  # allowed: sampling does not change the tokenizer
    assert OmegaConf.select(child, "data.tokenizer.sampling") is True


def test_help_lists_the_sampling_keys():
    text = help_text("train", compose("train", ["+model=transformer"], checked=False))
    for key in ("data.tokenizer.sampling=False", "data.tokenizer.alpha=0.1", "data.tokenizer.nbest_size=64"):
        assert key in text
    assert "[in (0, 1]]" in text.split("data.tokenizer.alpha=0.1")[1].splitlines()[0]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_bench_sampling_counts_the_tokens_and_the_padding_of_both_segmentations(folders, model_type):
    folder = folders[model_type][0]
    script = ROOT / "scripts" / "bench_sampling.py"
    args = [f"--folder={folder}", f"--model-type={model_type}", "--max-tokens=600", "--batches=5"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {line.split(" | ")[0][2:]: line for line in out.stdout.splitlines() if line.startswith("| ")}
    plain = [int(x) for x in rows["deterministic"].split(" | ")[1:5]]
    pairs = sampled(folder, model_type)
    batches = token_batches(pairs.lengths("src"), pairs.lengths("tgt"), 600, 1, 0)[:5]
    rows_ = np.concatenate(batches)
    assert plain[0] == sum(len(pairs.ids("src", i)) for i in rows_)  # sources end in EOS already
    assert plain[2] == sum(len(pairs.ids("tgt", i)) + 1 for i in rows_)  # tgt_out: the ids and EOS
    assert all(padded >= tokens for tokens, padded in zip(plain[::2], plain[1::2], strict=True))
    assert "sampled /" in out.stdout and "pairs/s" in out.stdout
