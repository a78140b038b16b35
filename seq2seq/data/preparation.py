"""Preparing a training corpus once: tokenizer, token ids, memory-mapped files, cached.

``prepare(data_cfg)`` returns the folder of the prepared training split (layout in
``seq2seq/data/indexed.py``), making it on the first call for these files and settings:

1. Key. The sha256 of both training files and the settings that shape the result
   (tokenizer, ``data.max_len``, ``data.train_lines``; with a given tokenizer, a
   fine-tune's, its models' sha256 too) name the folder in ``data.cache_dir``. A
   changed file or setting gets a new folder; an unchanged one is found and used as it
   is. A file's digest is remembered in ``data.cache_dir/digests`` with its size,
   modification time and inode, so a start reads it again only after it changed.
2. Scan. Both files are read line by line (plain or gzip), never whole, in step: their
   line counts must agree, every line must be UTF-8 (the file and line of the first that
   is not are named), and the corpus must not be empty. Meanwhile a uniform random
   sample of at most ``data.tokenizer.sample_size`` sentences is drawn (reservoir
   sampling, with a fixed seed, so the same corpus gives the same sample).
3. Tokenizer. SentencePiece is trained on that sample, unless a tokenizer is given (a
   fine-tune keeps its parent's, ``trainer.init_from``): its models are used as they are.
4. Encode. The files are read again in chunks that ``data.num_workers`` processes encode
   in parallel; pairs longer than ``data.max_len`` pieces are left out and counted; the
   ids are appended to the flat files, then the index is written.
5. Commit. Everything is written into a temporary folder that is renamed into place
   last, so an interrupted preparation (even ``kill -9``) leaves nothing that is later
   taken as complete.

With ``data.tokenizer.sampling`` the folder also keeps the text of the kept pairs
(``text/``), which training samples segmentations of. It is not part of the key: the ids
are the same either way, so a folder prepared without it is shared, and gets it added by
one more encoding pass the first time a run samples (``add_text``).

A progress bar (or, off a terminal, a log line every few seconds) shows the share done
and the time left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from itertools import chain
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from seq2seq.data.indexed import FORMAT, TEXT, IndexedPairs, IndexedWriter, id_dtype
from seq2seq.data.reading import CHUNK, decode_lines, pair_chunks
from seq2seq.data.tokenizer import Tokenizer, file_sha256, model_names, train_sentencepiece
from seq2seq.data.workers import die_with_parent, ignore_ctrl_c
from seq2seq.errors import UserError
from seq2seq.special import EOS_ID

log = logging.getLogger("seq2seq.prepare")

SAMPLE_SEED = 20_161_207  # the tokenizer's sample is a function of the corpus alone


# ----------------------------------------------------------------- reading


# ----------------------------------------------------------------- progress


class ProgressReport:
    """A progress bar with the time left on a terminal; elsewhere a log line every 10 s."""

    def __init__(self, what: str):
        self.what = what
        self.start = self.last = time.time()
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(desc=what, unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            return
        now = time.time()
        if now - self.last >= 10 and done:
            self.last = now
            left = (now - self.start) * (total - done) / done
            log.info("%s: %.0f%% done, about %.0f s left", self.what, 100 * done / total, left)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------- the key


def file_digest(path: Path, memo_dir: Path | None = None) -> str:
    """The sha256 of a file's bytes. With ``memo_dir``, a digest is remembered there with
    the file's size, modification time and inode, and reused while those are unchanged, so
    that a start does not read gigabytes again (``touch FILE`` makes it read once more)."""
    stat = path.stat()
    stamp = {
        "path": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "inode": stat.st_ino,
    }
    memo = None
    if memo_dir is not None:
        memo = memo_dir / f"{hashlib.sha256(stamp['path'].encode()).hexdigest()[:16]}.json"
        try:
            known = json.loads(memo.read_text())
            if {k: known.get(k) for k in stamp} == stamp:
                return known["sha256"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # not remembered yet, or unreadable: hash again
    digest = file_sha256(path)
    if memo is not None:
        try:
            memo_dir.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps({**stamp, "sha256": digest}))
            tmp.replace(memo)
        except OSError:
            pass  # a read-only cache still works, it only hashes at every start
    return digest


def settings_of(data_cfg, tokenizer: Tokenizer | None = None) -> dict:
    """The settings that shape a prepared folder (the file contents aside); with
    ``tokenizer`` (a given one, not trained on the corpus), its models' sha256 too."""
    tok = data_cfg.tokenizer
    settings = {
        "format": FORMAT,
        "max_len": data_cfg.max_len,
        "train_lines": data_cfg.train_lines,
        "vocab_size": tok.vocab_size,
        "joint": tok.joint,
        "model_type": tok.model_type,
        "character_coverage": tok.character_coverage,
        "sample_size": tok.sample_size,
    }
    if tokenizer is not None:
        settings["tokenizer_sha256"] = tokenizer.sha256
    return settings


def corpus_key(data_cfg, tokenizer: Tokenizer | None = None) -> tuple[str, dict]:
    """The cache key of the training split under ``data_cfg`` (encoded with ``tokenizer``, or
    with one trained on it when None), and what it was made of."""
    files = {}
    for side in ("src", "tgt"):
        path = Path(data_cfg.train[side])
        if not path.is_file():
            raise UserError(f"{path}: no such file; check data.train.{side}")
        digest = file_digest(path, Path(data_cfg.cache_dir).expanduser() / "digests")
        files[side] = {"path": str(path), "sha256": digest, "bytes": path.stat().st_size}
    made_of = {"files": files, "settings": settings_of(data_cfg, tokenizer)}
    content = [
        files["src"]["sha256"],
        files["tgt"]["sha256"],
        json.dumps(made_of["settings"], sort_keys=True),
    ]
    return hashlib.sha256("\n".join(content).encode()).hexdigest()[:16], made_of


def cache_folder(data_cfg, key: str) -> Path:
    return Path(data_cfg.cache_dir).expanduser() / key


# ----------------------------------------------------------------- encoding workers

_worker: dict = {}


def _load(model_files: list[str], max_len: int, dtype: str, text: bool = False) -> None:
    """Get this process ready to ``_encode`` (with ``text``, also returning the kept lines)."""
    models = [spm.SentencePieceProcessor(model_file=f) for f in model_files]
    _worker.update(src=models[0], tgt=models[-1], max_len=max_len, dtype=np.dtype(dtype), text=text)


def _start_worker(model_files: list[str], max_len: int, dtype: str, text: bool = False) -> None:
    ignore_ctrl_c()
    die_with_parent()
    _load(model_files, max_len, dtype, text)


def _encode(job) -> tuple:
    """Encode one chunk: (source ids, source lengths, target ids, target lengths, left out),
    and when the worker keeps text, the kept lines: ((source bytes, byte lengths), (target ...))."""
    src_lines, tgt_lines = job
    w = _worker
    src_text = [line.decode("utf-8").strip() for line in src_lines]
    tgt_text = [line.decode("utf-8").strip() for line in tgt_lines]
    src, tgt = w["src"].encode(src_text), w["tgt"].encode(tgt_text)
    limit = w["max_len"]
    kept = [i for i in range(len(src)) if len(src[i]) + 1 <= limit and len(tgt[i]) + 1 <= limit]
    src_lengths = np.fromiter((len(src[i]) + 1 for i in kept), dtype=w["dtype"], count=len(kept))
    tgt_lengths = np.fromiter((len(tgt[i]) for i in kept), dtype=w["dtype"], count=len(kept))
    src_ids = np.fromiter(
        chain.from_iterable(chain(src[i], (EOS_ID,)) for i in kept),
        dtype=w["dtype"],
        count=int(src_lengths.sum()),
    )
    tgt_ids = np.fromiter(
        chain.from_iterable(tgt[i] for i in kept), dtype=w["dtype"], count=int(tgt_lengths.sum())
    )
    encoded = src_ids, src_lengths, tgt_ids, tgt_lengths, len(src) - len(kept)
    if not w["text"]:
        return encoded
    return (*encoded, *(_joined([lines[i].encode("utf-8") for i in kept]) for lines in (src_text, tgt_text)))


def _joined(lines: list[bytes]) -> tuple[bytes, np.ndarray]:
    """Lines back to back, and (N,) their byte lengths."""
    return b"".join(lines), np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))


# ----------------------------------------------------------------- the steps


def _sample(data_cfg) -> tuple[int, list[str], list[str]]:
    """Scan both files; return the number of pairs and a uniform sample of them (as text)."""
    src_path, tgt_path = Path(data_cfg.train.src), Path(data_cfg.train.tgt)
    k = max(1, data_cfg.tokenizer.sample_size // (2 if data_cfg.tokenizer.joint else 1))
    rng = np.random.default_rng(SAMPLE_SEED)
    reservoir: list[tuple[bytes, bytes]] = []
    pairs, progress = 0, ProgressReport("prepare: reading")
    for first, src, tgt in pair_chunks(src_path, tgt_path, data_cfg.train_lines, progress=progress):
        decode_lines(src, src_path, first)  # every line checked once, before any work on them
        decode_lines(tgt, tgt_path, first)
        fill = min(len(src), max(0, k - len(reservoir)))
        reservoir.extend(zip(src[:fill], tgt[:fill], strict=True))
        rest = np.arange(pairs + fill, pairs + len(src))  # global indices of the others
        if len(rest):  # Algorithm R: item i replaces a random slot with probability k / (i + 1)
            slots = rng.integers(0, rest + 1)
            for i in np.flatnonzero(slots < k).tolist():
                reservoir[slots[i]] = (src[fill + i], tgt[fill + i])
        pairs += len(src)
    progress.close()
    if pairs == 0:
        raise UserError(f"{src_path}: the corpus is empty; give files with at least one sentence pair")
    sample_src = [s.decode("utf-8").strip() for s, _ in reservoir]
    sample_tgt = [t.decode("utf-8").strip() for _, t in reservoir]
    return pairs, sample_src, sample_tgt


def _encode_all(
    data_cfg, folder: Path, tokenizer: Tokenizer, workers: int, pairs: int, text: bool = False
) -> tuple[int, int]:
    """Encode every pair into ``folder`` (with ``text``, keep the kept pairs' lines too);
    returns (pairs kept, pairs left out). A corpus of one chunk (``pairs`` <= CHUNK) is
    encoded in this process: workers would only add their start-up time."""
    dtype = id_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size))
    writer, dropped = IndexedWriter(folder, dtype, text), 0
    progress = ProgressReport("prepare: encoding")
    train = data_cfg.train
    jobs = ((src, tgt) for _, src, tgt in pair_chunks(Path(train.src), Path(train.tgt), data_cfg.train_lines,
                                                        progress=progress))  # fmt: skip
    settings = ([str(tokenizer.src_path), str(tokenizer.tgt_path)], data_cfg.max_len, dtype.str, text)
    pool = None
    if pairs <= CHUNK:
        _load(*settings)
        results = map(_encode, jobs)
    else:
        pool = multiprocessing.get_context("spawn").Pool(
            workers, _start_worker, settings
        )  # no fork of threads
        results = pool.imap(_encode, jobs)
    try:
        for src_ids, src_lengths, tgt_ids, tgt_lengths, left_out, *lines in results:
            writer.add("src", src_ids, src_lengths)
            writer.add("tgt", tgt_ids, tgt_lengths)
            dropped += left_out
            for side, (joined, lengths) in zip(("src", "tgt"), lines, strict=False):  # none without text
                writer.add_text(side, joined, lengths)
        if pool is not None:
            pool.close()  # the workers finish and leave
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()
    progress.close()
    return writer.close(), dropped


def _clear_stale(cache_dir: Path, key: str) -> None:
    """Remove temporary folders of ``key`` whose process is gone (a killed preparation)."""
    for tmp in cache_dir.glob(f"{key}.tmp-*"):
        pid = int(tmp.name.rsplit("-", 1)[-1]) if tmp.name.rsplit("-", 1)[-1].isdigit() else None
        alive = False
        if pid is not None:
            try:
                os.kill(pid, 0)
                alive = pid != os.getpid()
            except OSError:
                pass
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)


def prepare(
    data_cfg, workers: int = 0, key: tuple[str, dict] | None = None, tokenizer: Tokenizer | None = None
) -> Path:
    """The prepared folder of ``data_cfg``'s training split, made unless the cache has it.

    Args:
        data_cfg: the ``data`` config (``data.train``, ``data.tokenizer``, ``data.max_len``, ...).
        workers: encoding processes (0: ``data.num_workers``, whose 0 is one per core).
        key: ``corpus_key(data_cfg, tokenizer)``, when the caller has it already.
        tokenizer: encode with this tokenizer (a fine-tune's parent's) instead of training one.
    """
    key, made_of = key or corpus_key(data_cfg, tokenizer)
    folder = cache_folder(data_cfg, key)
    workers = workers or data_cfg.num_workers or os.cpu_count() or 1
    if not (folder / "meta.json").is_file():
        _make(data_cfg, folder, made_of, workers, tokenizer)
    # Found, or made by another process at the same time, without the text this run samples from
    if keeps_text(data_cfg) and not IndexedPairs(folder).has_text():
        add_text(data_cfg, folder, workers)
    return folder


def _make(data_cfg, folder: Path, made_of: dict, workers: int, tokenizer: Tokenizer | None) -> None:
    """Build the prepared ``folder`` in a temporary folder beside it and rename it into place."""
    cache_dir, key = folder.parent, folder.name
    cache_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale(cache_dir, key)
    tmp = cache_dir / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.time()
    try:
        log.info("prepare: %s and %s -> %s", data_cfg.train.src, data_cfg.train.tgt, folder)
        meta = {**made_of, "key": key, **_build(data_cfg, tmp, workers, tokenizer)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same preparation first
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "prepare: %d pairs kept, %d longer than data.max_len=%d left out, in %.0f s",
        meta["pairs"],
        meta["longer_than_max_len"],
        data_cfg.max_len,
        time.time() - start,
    )


def _build(data_cfg, tmp: Path, workers: int, given: Tokenizer | None = None) -> dict:
    """Scan, train the tokenizer (or write the ``given`` one) and encode into ``tmp``; what
    ``meta.json`` records of it."""
    start = time.time()
    lines, sample_src, sample_tgt = _sample(data_cfg)
    scanned = time.time()
    tok = data_cfg.tokenizer
    if given is not None:
        sampled = 0
        names = model_names(given.joint)
        log.info(
            "prepare: %d pairs; the given tokenizer (%s)", lines, ", ".join(sorted(set(given.names.values())))
        )
        (tmp / names[0]).write_bytes(given.models["src"])
        (tmp / names[-1]).write_bytes(given.models["tgt"])
    else:
        sampled = len(sample_src) * (2 if tok.joint else 1)
        log.info("prepare: %d pairs; SentencePiece on a sample of %d sentences", lines, sampled)
        settings = (tok.vocab_size, tok.model_type, tok.character_coverage, workers)
        names = model_names(tok.joint)
        if tok.joint:
            train_sentencepiece(sample_src + sample_tgt, *settings, tmp / names[0])
        else:
            train_sentencepiece(sample_src, *settings, tmp / names[0])
            train_sentencepiece(sample_tgt, *settings, tmp / names[1])
    trained = time.time()
    tokenizer = Tokenizer(tmp / names[0], tmp / names[-1])
    kept, dropped = _encode_all(data_cfg, tmp, tokenizer, workers, lines, keeps_text(data_cfg))
    if kept == 0:
        raise UserError(
            f"{data_cfg.train.src}: every pair is longer than data.max_len={data_cfg.max_len} pieces; "
            "raise data.max_len"
        )
    return {
        "pairs": kept,
        "lines": lines,
        "longer_than_max_len": dropped,
        "dtype": id_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)).name,
        "vocab_size": {"src": tokenizer.src_vocab_size, "tgt": tokenizer.tgt_vocab_size},
        "tokenizer": names,
        "sample_sentences": sampled,
        "seconds": {
            "scan": round(scanned - start, 1),
            "tokenizer": round(trained - scanned, 1),
            "encode": round(time.time() - trained, 1),
        },
    }


def keeps_text(data_cfg) -> bool:
    """Whether the prepared folder must keep the training text: a run that samples segmentations."""
    return bool(data_cfg.tokenizer.get("sampling", False))


def add_text(data_cfg, folder: Path, workers: int) -> None:
    """Add ``text/`` to a prepared ``folder``: encode the training files again into a
    temporary folder beside it, check that the ids are the folder's, and move the text in
    (one rename, so an interrupted addition leaves the folder as it was)."""
    pairs, tokenizer = open_prepared(folder)
    _clear_stale(folder.parent, folder.name)
    tmp = folder.parent / f"{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.time()
    try:
        log.info("prepare: adding the training text to %s (data.tokenizer.sampling)", folder)
        kept, _ = _encode_all(data_cfg, tmp, tokenizer, workers, pairs.meta["lines"], text=True)
        same = kept == len(pairs) and all(
            np.array_equal(np.load(tmp / f"{side}.len.npy"), pairs.lengths(side)) for side in ("src", "tgt")
        )
        if not same:
            raise UserError(f"{folder}: its ids are not the training files' now; delete it to prepare again")
        try:
            (tmp / TEXT).rename(folder / TEXT)
        except OSError:  # another process added it first
            if not IndexedPairs(folder).has_text():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("prepare: text added in %.0f s", time.time() - start)


def open_prepared(folder: Path) -> tuple[IndexedPairs, Tokenizer]:
    """The pairs and the tokenizer of a prepared folder."""
    pairs = IndexedPairs(folder)
    names = pairs.meta["tokenizer"]
    return pairs, Tokenizer(folder / names[0], folder / names[-1])
