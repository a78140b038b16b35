"""Corpus reading, preparing once into memory-mapped files, and batching."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import seq2seq.data.preparation as prepare_module
from seq2seq.config.schema import DataConfig
from seq2seq.data.batching import count_batches, token_batches
from seq2seq.data.collate import collate
from seq2seq.data.indexed import IndexedPairs, IndexedWriter, id_dtype
from seq2seq.data.preparation import cache_folder, corpus_key, open_prepared, prepare
from seq2seq.data.reading import pair_chunks, read_lines, read_parallel
from seq2seq.errors import UserError
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

from .conftest import ROOT


def data_config(src: Path, tgt: Path, cache: Path, **settings):
    """A typed ``data`` config for these training files."""
    cfg = OmegaConf.structured(DataConfig)
    cfg.train.src, cfg.train.tgt, cfg.cache_dir = str(src), str(tgt), str(cache)
    cfg.tokenizer.vocab_size = settings.pop("vocab_size", 500)
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def prepared(tiny_corpus, tmp_path_factory):
    """The tiny corpus prepared once: (config, folder)."""
    cfg = data_config(tiny_corpus["train.de"], tiny_corpus["train.en"], tmp_path_factory.mktemp("cache"))
    return cfg, prepare(cfg, workers=2)


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


def test_streaming_reads_both_files_in_step_and_names_both_counts(tmp_path):
    """Chunks of a plain and a gzip file, a last line without a newline; the counts of
    files that differ are both named, even when the difference is far from the start."""
    (tmp_path / "a.txt").write_text("".join(f"eins {i}\n" for i in range(25)) + "last")
    with gzip.open(tmp_path / "b.gz", "wt") as f:
        f.write("".join(f"one {i}\n" for i in range(25)) + "end\n")
    chunks = list(pair_chunks(tmp_path / "a.txt", tmp_path / "b.gz", size=10))
    assert [(first, len(a)) for first, a, _ in chunks] == [(1, 10), (11, 10), (21, 6)]
    assert chunks[-1][1][-1] == b"last" and chunks[-1][2][-1] == b"end"
    assert [len(a) for _, a, _ in pair_chunks(tmp_path / "a.txt", tmp_path / "b.gz", limit=12, size=10)] == [
        10,
        2,
    ]
    (tmp_path / "c.txt").write_text("x\n" * 40)
    with pytest.raises(UserError, match=r"a.txt has 26 lines but .*c.txt has 40"):
        list(pair_chunks(tmp_path / "a.txt", tmp_path / "c.txt", size=10))


def test_prepared_ids_are_the_tokenizers(prepared, tiny_corpus):
    """Every pair read back from the memory map equals the tokenizer's output (uint16)."""
    cfg, folder = prepared
    pairs, tokenizer = open_prepared(folder)
    assert pairs.dtype == np.uint16 and pairs.meta["dtype"] == "uint16"
    src = tokenizer.encode_src(read_lines(tiny_corpus["train.de"]))
    tgt = tokenizer.encode_tgt(read_lines(tiny_corpus["train.en"]))
    kept = [i for i in range(len(src)) if len(src[i]) <= cfg.max_len and len(tgt[i]) + 1 <= cfg.max_len]
    assert len(pairs) == len(kept) == 300 and pairs.meta["longer_than_max_len"] == 0
    for j, i in enumerate(kept):
        s, t = pairs[j]
        assert s.tolist() == src[i] and t.tolist() == tgt[i]
    assert pairs.lengths("src").tolist() == [len(src[i]) for i in kept]
    assert (
        tokenizer.src.pad_id() == PAD_ID
        and tokenizer.src.bos_id() == BOS_ID
        and tokenizer.src.eos_id() == EOS_ID
    )


def test_long_pairs_are_left_out_and_counted(tiny_corpus, tmp_path):
    cfg = data_config(tiny_corpus["train.de"], tiny_corpus["train.en"], tmp_path, max_len=20)
    pairs, tokenizer = open_prepared(prepare(cfg, workers=1))
    src = tokenizer.encode_src(read_lines(tiny_corpus["train.de"]))
    tgt = tokenizer.encode_tgt(read_lines(tiny_corpus["train.en"]))
    kept = [i for i in range(300) if len(src[i]) <= 20 and len(tgt[i]) + 1 <= 20]
    assert 0 < len(pairs) == len(kept) < 300 and pairs.meta["longer_than_max_len"] == 300 - len(kept)
    assert [pairs[j][0].tolist() for j in range(len(kept))] == [src[i] for i in kept]


@pytest.mark.parametrize("vocab_size, dtype", [(8000, np.uint16), (65536, np.uint16), (65537, np.uint32)])
def test_ids_take_the_smallest_type_and_read_back(tmp_path, vocab_size, dtype):
    assert id_dtype(vocab_size) == dtype
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, (50, 2)) + [1, 0]  # sources have EOS at least; targets may be empty
    pairs = [(rng.integers(0, vocab_size, n), rng.integers(0, vocab_size, m)) for n, m in lengths]
    writer = IndexedWriter(tmp_path, np.dtype(dtype))
    for chunk in (pairs[:20], pairs[20:]):
        for side, k in (("src", 0), ("tgt", 1)):
            writer.add(side, np.concatenate([p[k] for p in chunk]), [len(p[k]) for p in chunk])
    count = writer.close()
    (tmp_path / "meta.json").write_text(json.dumps({"pairs": count, "dtype": np.dtype(dtype).name}))
    back = IndexedPairs(tmp_path)
    assert len(back) == 50 and back.dtype == dtype
    assert all(
        np.array_equal(back[i][0], s) and np.array_equal(back[i][1], t) for i, (s, t) in enumerate(pairs)
    )
    assert isinstance(np.load(tmp_path / "src.off.npy", mmap_mode="r"), np.memmap)


def test_cache_is_reused_and_made_again_when_content_or_settings_change(
    prepared, tiny_corpus, tmp_path, monkeypatch
):
    cfg, folder = prepared
    calls = []
    monkeypatch.setattr(prepare_module, "train_sentencepiece", lambda *a: calls.append(a))
    assert prepare(cfg) == folder and calls == []  # found: nothing trained or encoded again
    key = corpus_key(cfg)[0]
    assert corpus_key(OmegaConf.merge(cfg, {"num_workers": 3}))[0] == key  # how, not what: same key

    edited = tmp_path / "train.de"
    edited.write_text(
        gzip.decompress(tiny_corpus["train.de"].read_bytes()).decode().replace("Zwei", "Drei", 1)
    )
    for change in ({"train": {"src": str(edited)}}, {"max_len": 64}, {"tokenizer": {"vocab_size": 400}},
                   {"train_lines": 100}, {"tokenizer": {"sample_size": 50}}):  # fmt: skip
        assert corpus_key(OmegaConf.merge(cfg, change))[0] != key, change
    monkeypatch.undo()
    again = prepare(OmegaConf.merge(cfg, {"max_len": 64}), workers=1)
    assert again != folder and again.parent == folder.parent and (again / "meta.json").is_file()


def test_file_digests_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    """A start does not read the training files again while their size, modification time
    and inode are unchanged; an edit in place is read and gives another key."""
    src, tgt = tmp_path / "a.de", tmp_path / "a.en"
    src.write_text("eins\nzwei\n")
    tgt.write_text("one\ntwo\n")
    cfg = data_config(src, tgt, tmp_path / "cache")
    reads = []
    real = prepare_module.file_sha256
    monkeypatch.setattr(prepare_module, "file_sha256", lambda path: reads.append(str(path)) or real(path))
    key = corpus_key(cfg)[0]
    assert len(reads) == 2 and corpus_key(cfg)[0] == key and len(reads) == 2  # the second call read nothing
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 2
    stat = src.stat()
    src.write_text("eins\ndrei\n")  # the same size
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert corpus_key(cfg)[0] != key and reads[-1] == str(src)


@pytest.mark.slow
def test_prepared_folder_moves_in_only_when_complete(tiny_corpus, tmp_path):
    """kill -9 in the middle of preparing: no folder is left that a later run takes as
    complete, and the next run prepares it (clearing the killed one's temporary folder)."""
    big = tmp_path / "big"
    big.mkdir()
    lines = {lang: read_lines(ROOT / "data" / "multi30k" / f"train.{lang}.gz") for lang in ("de", "en")}
    for lang in ("de", "en"):
        (big / f"train.{lang}").write_text("".join(line + "\n" for line in lines[lang] * 2))
    cfg = data_config(big / "train.de", big / "train.en", tmp_path / "cache", vocab_size=2000)
    script = (
        "import sys; from omegaconf import OmegaConf; from seq2seq.data.preparation import prepare; "
        "prepare(OmegaConf.create(sys.argv[1]), workers=1)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(
        [sys.executable, "-c", script, OmegaConf.to_yaml(cfg)], env=env, stderr=subprocess.PIPE
    )
    key = corpus_key(cfg)[0]
    folder = cache_folder(cfg, key)
    deadline = time.time() + 120
    while not list((tmp_path / "cache").glob(f"{key}.tmp-*/spm.model")):  # past the tokenizer: encoding
        assert victim.poll() is None and time.time() < deadline, victim.stderr.read()
        time.sleep(0.05)
    workers = [int(p) for p in Path(f"/proc/{victim.pid}/task/{victim.pid}/children").read_text().split()]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not folder.exists() and list((tmp_path / "cache").glob(f"{key}.tmp-*"))

    def running(pid: int) -> bool:
        status = Path(f"/proc/{pid}/status")
        return status.exists() and "zombie" not in status.read_text()

    deadline = time.time() + 30
    while any(running(pid) for pid in workers):  # the encoding workers end with it, soon
        assert time.time() < deadline, [pid for pid in workers if running(pid)]
        time.sleep(0.1)
    assert prepare(cfg, workers=2) == folder and (folder / "meta.json").is_file()
    assert not list((tmp_path / "cache").glob(f"{key}.tmp-*"))
    assert len(IndexedPairs(folder)) == 2 * 29000 - IndexedPairs(folder).meta["longer_than_max_len"]


def test_bad_training_files_through_the_streaming_path(tiny_corpus, tmp_path):
    cases = [
        (b"ein Hund\nein \xff\xfe Hund\n", b"a dog\na dog\n", r"src.txt:2: invalid UTF-8"),
        (b"", b"", "the corpus is empty"),
        (b"eins\nzwei\n", b"one\n", r"src.txt has 2 lines but .*tgt.txt has 1"),
    ]
    for src, tgt, message in cases:
        (tmp_path / "src.txt").write_bytes(src)
        (tmp_path / "tgt.txt").write_bytes(tgt)
        with pytest.raises(UserError, match=message):
            prepare(data_config(tmp_path / "src.txt", tmp_path / "tgt.txt", tmp_path / "cache"), workers=1)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name != "digests"]  # nothing half-made


def test_batches_cover_every_pair_once_within_max_tokens():
    gen = torch.Generator().manual_seed(0)
    src_lengths = torch.randint(1, 40, (500,), generator=gen).tolist()
    tgt_lengths = torch.randint(1, 40, (500,), generator=gen).tolist()
    for epoch in range(3):
        batches = token_batches(src_lengths, tgt_lengths, 256, seed=7, epoch=epoch)
        seen = Counter(int(i) for b in batches for i in b)
        assert sorted(seen) == list(range(500)) and set(seen.values()) == {1}
        for b in batches:
            assert len(b) * max(max(src_lengths[i], tgt_lengths[i] + 1) for i in b) <= 256

    def listed(*args):
        return [b.tolist() for b in token_batches(src_lengths, tgt_lengths, 256, *args)]

    assert listed(7, 1) == listed(7, 1) and listed(7, 1) != listed(7, 2)
    assert len(listed(7, 1)) == len(listed(7, 2)) == len(listed())  # the same count every epoch


def test_batching_packs_like_the_greedy_loop():
    """The vectorised packing makes exactly the batches of the plain loop it replaces."""
    rng = np.random.default_rng(3)
    for max_tokens in (7, 64, 300):
        sizes = np.sort(rng.integers(1, 80, 400))
        expected, current, longest = [], [], 0
        for i, size in enumerate(sizes.tolist()):
            if current and (len(current) + 1) * max(longest, size) > max_tokens:
                expected.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, size)
        expected.append(current)
        got = token_batches(sizes, np.zeros(400, dtype=np.int64), max_tokens)
        assert [b.tolist() for b in got] == expected


def test_batches_of_a_million_pairs_cover_each_once_tightly_packed():
    """A million pairs (the scale ``scripts/bench_data.py`` times): each pair in one batch,
    no batch over its budget, hardly any padding, as many batches as ``count_batches``
    says, and the same batches again for the same (seed, epoch)."""
    rng = np.random.default_rng(0)
    n, max_tokens = 1_000_000, 4096
    src, tgt = rng.integers(1, 128, n), rng.integers(1, 128, n)
    batches = token_batches(src, tgt, max_tokens, seed=1, epoch=0)
    size = np.maximum(src, tgt + 1)  # the tokens a pair needs a row
    flat = np.concatenate(batches)
    assert len(flat) == n and np.array_equal(np.sort(flat), np.arange(n))
    lengths = np.array([len(b) for b in batches])
    longest = np.array([size[b].max() for b in batches])
    assert (lengths * longest <= max_tokens).all()
    assert (lengths * longest).sum() < 1.01 * size.sum()  # sorted by size: batches of one size
    assert len(batches) == count_batches(src, tgt, max_tokens)
    again = token_batches(src, tgt, max_tokens, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


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
    arrays = collate([np.array([5, 6, EOS_ID]), np.array([7, EOS_ID])], [np.array([8, 9]), np.array([10])])
    assert all(torch.equal(getattr(arrays, k), getattr(batch, k)) for k in ("src", "tgt_in", "tgt_out"))


def test_dataset_collates_whole_batches_and_survives_pickling(prepared):
    """What the DataLoader workers get: the dataset pickled without its memory maps."""
    import pickle

    _, folder = prepared
    pairs, _ = open_prepared(folder)
    pairs[0]  # maps opened
    copy = pickle.loads(pickle.dumps(pairs))
    assert copy._maps is None and len(pickle.dumps(pairs)) < 10_000
    batch = copy.__getitems__([3, 1, 2])
    assert batch.src[1, : len(pairs[1][0])].tolist() == pairs[1][0].tolist()


def test_too_large_vocabulary_is_one_clear_line(tiny_corpus, tmp_path):
    cfg = data_config(tiny_corpus["train.de"], tiny_corpus["train.en"], tmp_path, vocab_size=50000)
    with pytest.raises(
        UserError, match=r"Vocabulary size too high \(50000\).*data.tokenizer.vocab_size"
    ) as e:
        prepare(cfg, workers=1)
    assert "\n" not in str(e.value) and "trainer_interface" not in str(e.value)
