"""Preparing ``data.corpora``: one joint tokenizer for every language, then each corpus in
its own prepared folder (``seq2seq/data/preparation.py``), encoded with it.

1. Tokenizer. Every corpus is scanned (``preparation._sample``: line counts, UTF-8) and
   gives a uniform sample of its two sides; the sentences are pooled by language (a
   sentence that several corpora share counts once) and each language keeps at most
   ``data.tokenizer.sample_size / languages`` of them, so that a large corpus does not
   crowd the others out of the vocabulary. SentencePiece learns one joint model from that
   balanced sample; when the corpora have several target languages, each one's tag
   ``<2xx>`` (``tokenizer.target_tag``) is a user-defined piece, never split. The model
   is cached in ``data.cache_dir/tokenizer-<key>``, the key a hash of the files, their
   languages and the tokenizer settings.
2. Corpora. ``prepare(..., tokenizer=...)`` encodes each corpus into its own folder
   (cached by its files, settings and that tokenizer's hash), so memory stays that of one
   corpus at a time and a corpus shared by two mixtures is prepared once.

The tag is not stored: ``MixedPairs`` puts it before each source when a batch is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from seq2seq.data.indexed import FORMAT
from seq2seq.data.preparation import SAMPLE_SEED, _sample, file_digest, prepare
from seq2seq.data.tokenizer import Tokenizer, target_tag, train_sentencepiece
from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.prepare")

TOKENIZER_MODEL = "spm.model"


def target_languages(data_cfg) -> list[str]:
    """The target languages of ``data.corpora``, sorted."""
    return sorted({entry.tgt_lang for entry in data_cfg.corpora.values()})


def tags(data_cfg) -> dict[str, str]:
    """Target language -> its tag, when the corpora have several target languages; else {}."""
    targets = target_languages(data_cfg)
    return {lang: target_tag(lang) for lang in targets} if len(targets) > 1 else {}


def entry_data(data_cfg, name: str):
    """The ``data`` config of one corpus of ``data.corpora``, as ``prepare`` takes it: its
    files as ``data.train``, every other setting the mixture's."""
    entry = data_cfg.corpora[name]
    plain = OmegaConf.to_container(data_cfg, resolve=True)
    plain.update(corpora={}, train={"src": entry.src, "tgt": entry.tgt})
    return OmegaConf.create(plain)


def _files(data_cfg) -> dict[str, dict]:
    """Per corpus, the sha256 of its files and its languages (a missing file: one line naming its key)."""
    memo = Path(data_cfg.cache_dir).expanduser() / "digests"
    found = {}
    for name, entry in data_cfg.corpora.items():
        digests = {}
        for side in ("src", "tgt"):
            path = Path(entry[side])
            if not path.is_file():
                raise UserError(f"{path}: no such file; check data.corpora.{name}.{side}")
            digests[side] = file_digest(path, memo)
        found[name] = {**digests, "src_lang": entry.src_lang, "tgt_lang": entry.tgt_lang}
    return found


def _tokenizer_settings(data_cfg) -> dict:
    tok = data_cfg.tokenizer
    settings = {k: tok[k] for k in ("vocab_size", "model_type", "character_coverage", "sample_size")}
    return {**settings, "train_lines": data_cfg.train_lines, "tags": sorted(tags(data_cfg).values())}


def tokenizer_key(data_cfg, files: dict | None = None) -> str:
    """The cache key of the joint tokenizer of ``data.corpora``."""
    files = files or _files(data_cfg)
    content = {"files": [files[name] for name in sorted(files)], "settings": _tokenizer_settings(data_cfg)}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def mixture_key(data_cfg, tokenizer: Tokenizer | None = None) -> tuple[str, dict]:
    """The key of the training data of ``data.corpora`` (what a checkpoint records and a
    resume checks): the files, languages, weights, ``data.temperature``, the settings and the
    tokenizer (a given one's hash, else the key of the one trained). Also what it is made of."""
    files = _files(data_cfg)
    made_of = {
        "format": FORMAT,
        "corpora": {name: {**files[name], "weight": data_cfg.corpora[name].weight} for name in files},
        "temperature": data_cfg.temperature,
        "max_len": data_cfg.max_len,
        "train_lines": data_cfg.train_lines,
        "tokenizer": tokenizer.sha256["src"] if tokenizer is not None else tokenizer_key(data_cfg, files),
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16], made_of


def balanced_sample(data_cfg) -> dict[str, list[str]]:
    """Per language, at most ``sample_size / languages`` distinct sentences, sampled uniformly
    from every corpus that has the language on either side (the same sentences every time)."""
    langs = sorted({e[k] for e in data_cfg.corpora.values() for k in ("src_lang", "tgt_lang")})
    quota = max(1, data_cfg.tokenizer.sample_size // len(langs))
    pools: dict[str, dict[str, None]] = {lang: {} for lang in langs}
    for name, entry in data_cfg.corpora.items():
        cfg = entry_data(data_cfg, name)
        cfg.tokenizer.sample_size = 2 * quota  # _sample keeps half of it a side
        _, src, tgt = _sample(cfg)
        pools[entry.src_lang].update(dict.fromkeys(src))
        pools[entry.tgt_lang].update(dict.fromkeys(tgt))
    rng = np.random.default_rng(SAMPLE_SEED)
    sample = {}
    for lang, pool in pools.items():
        sentences = list(pool)
        if len(sentences) > quota:
            sentences = [sentences[i] for i in np.sort(rng.choice(len(sentences), quota, replace=False))]
        sample[lang] = sentences
    return sample


def joint_tokenizer(data_cfg, workers: int = 0) -> Tokenizer:
    """The joint tokenizer of ``data.corpora``, trained on a balanced sample unless cached."""
    folder = Path(data_cfg.cache_dir).expanduser() / f"tokenizer-{tokenizer_key(data_cfg)}"
    model = folder / TOKENIZER_MODEL
    if model.is_file():
        return Tokenizer(model, model)
    sample = balanced_sample(data_cfg)
    symbols = sorted(tags(data_cfg).values())
    log.info(
        "prepare: one tokenizer for %s on a balanced sample (%s)%s",
        ", ".join(sample),
        ", ".join(f"{lang} {len(s)}" for lang, s in sample.items()),
        f", target tags {' '.join(symbols)}" if symbols else "",
    )
    tok = data_cfg.tokenizer
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        sentences = [s for lang in sample for s in sample[lang]]
        threads = workers or data_cfg.num_workers or os.cpu_count() or 1
        train_sentencepiece(
            sentences,
            tok.vocab_size,
            tok.model_type,
            tok.character_coverage,
            threads,
            tmp / TOKENIZER_MODEL,
            symbols,
        )
        try:
            tmp.rename(folder)
        except OSError:  # another process trained the same one first
            if not model.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Tokenizer(model, model)


def prepare_corpora(data_cfg, tokenizer: Tokenizer | None = None, workers: int = 0) -> list[Path]:
    """The prepared folder of each corpus of ``data.corpora`` (in its order), encoded with
    ``tokenizer`` (a fine-tune's parent's) or else with the joint tokenizer trained for them."""
    tokenizer = tokenizer or joint_tokenizer(data_cfg, workers)
    folders = []
    for name in data_cfg.corpora:
        log.info("prepare: corpus %s", name)
        folders.append(prepare(entry_data(data_cfg, name), workers, tokenizer=tokenizer))
    return folders
