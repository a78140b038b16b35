"""What a run trains and validates on: the training split prepared once (or found prepared)
and memory-mapped, the run directory's copy of its tokenizer, and the validation lines.
With ``data.corpora``, several prepared corpora joined (``seq2seq/data/mixture.py``) and one
validation set per direction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from seq2seq.checkpoints.format import TOKENIZER
from seq2seq.data.batching import count_batches, token_batches
from seq2seq.data.corpora import mixture_key, prepare_corpora
from seq2seq.data.indexed import IndexedPairs, identity
from seq2seq.data.mixture import MixedPairs, Mixture
from seq2seq.data.preparation import corpus_key, open_prepared, prepare
from seq2seq.data.reading import read_parallel
from seq2seq.data.sampling import METHODS, SampledPairs
from seq2seq.data.tokenizer import Tokenizer, open_tokenizer
from seq2seq.data.workers import ignore_ctrl_c
from seq2seq.errors import UserError
from seq2seq.training import distributed

log = logging.getLogger("seq2seq.train")


@dataclass
class ValidLines:
    """One validation split as text: its direction (``de-en``, None for a bilingual run) and
    the target language whose tag its sources take (None: no tag)."""

    src: list[str]
    tgt: list[str]
    direction: str | None = None
    tgt_lang: str | None = None


@dataclass
class TrainingData:
    """What a run trains and validates on."""

    pairs: IndexedPairs | MixedPairs  # the prepared pairs, memory-mapped (for_epoch: an epoch's dataset)
    tokenizer: Tokenizer  # the run directory's copy, which checkpoints refer to
    lengths: tuple[np.ndarray, np.ndarray] | None  # (N,) source and (N,) target lengths (one corpus)
    batches_per_epoch: int  # of all processes, in the first epoch (a mixture's others may differ)
    valid: list[ValidLines]  # one validation split, or one per direction of data.corpora
    mixture: Mixture | None = None  # data.corpora: how an epoch draws from them

    def epoch_order(self, max_tokens: int, seed: int, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch`` (rows of ``pairs``), a function of ``(seed, epoch)``."""
        if self.mixture is not None:
            return self.mixture.batches(seed, epoch)
        return token_batches(*self.lengths, max_tokens, seed, epoch)

    def loader(
        self, max_tokens: int, seed: int, epoch: int, start: int, num_workers: int, pin_memory: bool
    ) -> DataLoader:
        """This process's batches of ``epoch`` from batch ``start`` (of all processes) on,
        collated ahead of the step by ``num_workers`` processes from the dataset of this epoch
        (``for_epoch``: the pairs, or their segmentations sampled anew)."""
        return DataLoader(
            self.pairs.for_epoch(seed, epoch),
            batch_sampler=distributed.shard(self.epoch_order(max_tokens, seed, epoch), start),
            collate_fn=identity,
            num_workers=num_workers,
            pin_memory=pin_memory,
            generator=torch.Generator(),  # its seed draw must not touch the global random state
            worker_init_fn=ignore_ctrl_c,
        )

    def batches_in(self, max_tokens: int, seed: int, epoch: int) -> int:
        """How many batches ``epoch_order`` gives ``epoch``: the same every epoch, but for a
        mixture whose epochs draw different pairs (``Mixture.count``)."""
        if self.mixture is not None:
            return self.mixture.count(seed, epoch)
        return self.batches_per_epoch


def data_key(data_cfg, tokenizer: Tokenizer | None = None) -> tuple[str, dict]:
    """The key of the training data (``corpus_key``, or with ``data.corpora`` the mixture's)."""
    return mixture_key(data_cfg, tokenizer) if data_cfg.corpora else corpus_key(data_cfg, tokenizer)


def training_data(
    data_cfg, max_tokens: int, seed: int, run_dir: Path, key, tokenizer: Tokenizer | None
) -> TrainingData:
    """Prepare ``data_cfg``'s training split (corpus key ``key``; with ``tokenizer``, a
    fine-tune's parent's, instead of training one), copy its tokenizer into ``run_dir`` and
    read the validation split. Under torchrun the main process prepares, the others wait.
    With ``data.tokenizer.sampling`` the pairs sample their segmentations every epoch
    (``seq2seq/data/sampling.py``)."""
    if data_cfg.corpora:
        return _mixed_data(data_cfg, max_tokens, seed, run_dir, key, tokenizer)
    if tokenizer is not None and tokenizer.target_tags:
        raise UserError(
            "trainer.init_from: the parent translates into several languages (target tags); fine-tune it "
            "with data.corpora, whose tgt_lang picks the tag"
        )
    main, world = distributed.is_main(), distributed.world_size()
    folder = prepare(data_cfg, key=key, tokenizer=tokenizer) if main else None
    folder = Path(distributed.from_main(str(folder) if folder else None))
    pairs, prepared_tokenizer = open_prepared(folder)
    if data_cfg.tokenizer.sampling:
        pairs = SampledPairs(folder, **_sampling(data_cfg))
    run_tokenizer = _run_tokenizer(prepared_tokenizer, run_dir, data_cfg)
    meta = pairs.meta
    log.info(
        "train: %d pairs kept, %d longer than data.max_len=%d left out (%s)",
        meta["pairs"],
        meta["longer_than_max_len"],
        data_cfg.max_len,
        folder,
    )
    _log_sampling(data_cfg)
    lengths = (pairs.lengths("src"), pairs.lengths("tgt"))
    batches = _check_batches(count_batches(*lengths, max_tokens), world)
    valid_lines = read_parallel(data_cfg.valid.src, data_cfg.valid.tgt, "data.valid")
    return TrainingData(pairs, run_tokenizer, lengths, batches, [ValidLines(*valid_lines)])


def _sampling(data_cfg) -> dict | None:
    """``SampledPairs``'s settings by name with ``data.tokenizer.sampling``, else None."""
    tok = data_cfg.tokenizer
    if not tok.sampling:
        return None
    return {
        "model_type": tok.model_type,
        "alpha": tok.alpha,
        "nbest_size": tok.nbest_size,
        "max_len": data_cfg.max_len,
    }


def _log_sampling(data_cfg) -> None:
    if data_cfg.tokenizer.sampling:
        method = METHODS[data_cfg.tokenizer.model_type]
        log.info("train: %s with alpha %g, a new segmentation every epoch", method, data_cfg.tokenizer.alpha)


def _run_tokenizer(prepared: Tokenizer, run_dir: Path, data_cfg) -> Tokenizer:
    """The run directory's copy of the prepared tokenizer (the main process writes it)."""
    if distributed.is_main():
        prepared.copy_to(run_dir / TOKENIZER)
    distributed.barrier()  # the others read the main process's copy, which checkpoints refer to
    return open_tokenizer(run_dir / TOKENIZER, data_cfg.tokenizer.joint)


def _check_batches(batches: int, world: int) -> int:
    if batches < world:
        raise UserError(
            f"the training data makes {batches} batches, fewer than the {world} "
            f"processes; lower trainer.max_tokens or start fewer processes"
        )
    if world > 1:
        log.info("%d processes, %d steps per epoch", world, batches // world)
    return batches


def _mixed_data(
    data_cfg, max_tokens: int, seed: int, run_dir: Path, key, tokenizer: Tokenizer | None
) -> TrainingData:
    """``training_data`` of ``data.corpora``: each corpus prepared with one tokenizer, joined
    (with ``data.tokenizer.sampling``, each keeping its text and sampled per epoch)."""
    main, world = distributed.is_main(), distributed.world_size()
    folders = [str(f) for f in prepare_corpora(data_cfg, tokenizer)] if main else None
    folders = [Path(f) for f in distributed.from_main(folders)]
    _, prepared_tokenizer = open_prepared(folders[0])
    run_tokenizer = _run_tokenizer(prepared_tokenizer, run_dir, data_cfg)
    names = list(data_cfg.corpora)
    prefixes = [_prefix(run_tokenizer, data_cfg, name) for name in names]
    pairs = MixedPairs(folders, prefixes, (key or mixture_key(data_cfg, tokenizer))[0], _sampling(data_cfg))
    weights = [data_cfg.corpora[name].weight for name in names]
    mixture = Mixture(pairs.lengths(), [len(p) for p in prefixes], weights, data_cfg.temperature, max_tokens)
    for name, corpus, p, m in zip(names, pairs.corpora, mixture.probabilities, mixture.quotas, strict=True):
        entry = data_cfg.corpora[name]
        log.info(
            "train: %s (%s-%s) %d pairs kept, %d longer than data.max_len=%d left out; %.1f%% of the "
            "pairs, %d an epoch",
            name, entry.src_lang, entry.tgt_lang, corpus.meta["pairs"], corpus.meta["longer_than_max_len"],
            data_cfg.max_len, 100 * p, m,
        )  # fmt: skip
    _log_sampling(data_cfg)
    batches = _check_batches(mixture.count(seed, 0), world)
    valid = []
    for name in names:
        entry = data_cfg.corpora[name]
        if entry.valid is not None:
            lines = read_parallel(entry.valid.src, entry.valid.tgt, f"data.corpora.{name}.valid")
            tgt_lang = entry.tgt_lang if run_tokenizer.target_tags else None
            valid.append(ValidLines(*lines, f"{entry.src_lang}-{entry.tgt_lang}", tgt_lang))
    return TrainingData(pairs, run_tokenizer, None, batches, valid, mixture)


def _prefix(tokenizer: Tokenizer, data_cfg, name: str) -> list[int]:
    """The ids before each source of corpus ``name``: its target language's tag, when the
    tokenizer has tags (a model of several target languages)."""
    if not tokenizer.target_tags:
        return []
    return tokenizer.source_prefix(data_cfg.corpora[name].tgt_lang, f"data.corpora.{name}.tgt_lang")
