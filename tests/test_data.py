"""Corpus reading, tokenizer and batching."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest
import torch

from seq2seq.data import tokenizer as tokenizer_module
from seq2seq.data.batching import collate, token_batches
from seq2seq.data.corpus import read_lines, read_parallel
from seq2seq.data.tokenizer import build_tokenizer
from seq2seq.errors import UserError
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

from .conftest import ROOT


def test_read_lines_trims_keeps_tabs_and_reads_gzip(tmp_path):
    text = "  Ein Hund läuft. \nzwei\tWörter\n\n"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    expected = ["Ein Hund läuft.", "zwei\tWörter", ""]
    assert read_lines(tmp_path / "a.txt") == expected
    assert read_lines(tmp_path / "a.txt.gz") == expected


def test_embedded_corpus_tab_line_is_kept():
    lines = read_lines(ROOT / "data" / "multi30k" / "train.de.gz")
    assert len(lines) == 29000
    assert "\t" in lines[7365]


def test_bad_inputs_name_the_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"gut\nschlecht \xff\n")
    with pytest.raises(UserError, match=r"bad.txt:2: invalid UTF-8"):
        read_lines(tmp_path / "bad.txt")
    with pytest.raises(UserError, match="no such file"):
        read_lines(tmp_path / "missing.txt")
    (tmp_path / "a").write_text("1\n2\n3\n")
    (tmp_path / "b").write_text("1\n2\n")
    with pytest.raises(UserError, match=r"has 3 lines but .* has 2"):
        read_parallel(tmp_path / "a", tmp_path / "b")
    (tmp_path / "e1").write_text("")
    (tmp_path / "e2").write_text("")
    with pytest.raises(UserError, match="empty"):
        read_parallel(tmp_path / "e1", tmp_path / "e2")
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="broken.gz: cannot be read"):
        read_lines(tmp_path / "broken.gz")


def make_tokenizer(tiny_corpus, tmp_path, joint=True):
    src, tgt = read_lines(tiny_corpus["train.de"]), read_lines(tiny_corpus["train.en"])
    return build_tokenizer(
        src,
        tgt,
        500,
        joint,
        "unigram",
        1.0,
        str(tmp_path / "cache"),
        tmp_path / "run" / "tokenizer",
    )


def test_tokenizer_round_trip_and_special_ids(tiny_corpus, tmp_path):
    tok = make_tokenizer(tiny_corpus, tmp_path)
    assert tok.joint and tok.src_vocab_size == 500
    sentence = "Zwei junge Männer stehen draußen."
    ids = tok.encode_src([sentence])[0]
    assert ids[-1] == EOS_ID and PAD_ID not in ids and BOS_ID not in ids
    assert tok.src.decode(ids[:-1]) == sentence
    english = "A man in an orange hat starring at something."
    assert tok.decode_tgt(tok.encode_tgt([english])[0] + [EOS_ID]) == english
    assert tok.src.pad_id() == PAD_ID and tok.src.bos_id() == BOS_ID and tok.src.eos_id() == EOS_ID


def test_tokenizer_cache_is_reused_and_keyed_on_settings(tiny_corpus, tmp_path, monkeypatch):
    make_tokenizer(tiny_corpus, tmp_path)
    calls = []
    real = tokenizer_module._train_spm
    monkeypatch.setattr(tokenizer_module, "_train_spm", lambda *a: (calls.append(a), real(*a)))
    again = make_tokenizer(tiny_corpus, tmp_path)
    assert calls == [] and (tmp_path / "run" / "tokenizer" / "spm.model").is_file()
    assert again.src_vocab_size == 500
    separate = make_tokenizer(tiny_corpus, tmp_path, joint=False)
    assert len(calls) == 2 and not separate.joint
    assert separate.src_path.name == "src.model" and separate.tgt_path.name == "tgt.model"


def test_batches_cover_every_pair_once_within_max_tokens():
    gen = torch.Generator().manual_seed(0)
    src_lengths = torch.randint(1, 40, (500,), generator=gen).tolist()
    tgt_lengths = torch.randint(1, 40, (500,), generator=gen).tolist()
    for epoch in range(3):
        batches = token_batches(src_lengths, tgt_lengths, 256, seed=7, epoch=epoch)
        seen = Counter(i for b in batches for i in b)
        assert sorted(seen) == list(range(500)) and set(seen.values()) == {1}
        for b in batches:
            assert len(b) * max(max(src_lengths[i], tgt_lengths[i] + 1) for i in b) <= 256
    assert token_batches(src_lengths, tgt_lengths, 256, 7, 1) == token_batches(
        src_lengths, tgt_lengths, 256, 7, 1
    )
    assert token_batches(src_lengths, tgt_lengths, 256, 7, 1) != token_batches(
        src_lengths, tgt_lengths, 256, 7, 2
    )


def test_batches_group_similar_lengths():
    lengths = list(range(1, 201)) * 2
    batches = token_batches(lengths, lengths, 400, seed=1, epoch=0)
    real = sum(lengths)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * real


def test_collate_pads_and_shifts():
    batch = collate([[5, 6, EOS_ID], [7, EOS_ID]], [[8, 9], [10]])
    assert batch.src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, 9], [BOS_ID, 10, PAD_ID]]
    assert batch.tgt_out.tolist() == [[8, 9, EOS_ID], [10, EOS_ID, PAD_ID]]
    assert batch.num_tgt_tokens == 5


def test_too_large_vocabulary_is_one_clear_line(tiny_corpus, tmp_path):
    src, tgt = read_lines(tiny_corpus["train.de"]), read_lines(tiny_corpus["train.en"])
    with pytest.raises(
        UserError, match=r"Vocabulary size too high \(50000\).*data.tokenizer.vocab_size"
    ) as e:
        build_tokenizer(src, tgt, 50000, True, "unigram", 1.0, str(tmp_path / "c"), tmp_path / "t")
    assert "\n" not in str(e.value) and "trainer_interface" not in str(e.value)
