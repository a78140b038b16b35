"""Subword sampling while training: every epoch sees new segmentations of the training pairs.

With ``data.tokenizer.sampling=true``, SentencePiece samples a segmentation of each training
line instead of taking its best one: a unigram model draws from all of the line's
segmentations, their probabilities smoothed by ``alpha`` (subword regularization,
``nbest_size=-1``); a BPE model skips each merge with probability ``alpha`` (BPE-dropout).
Validation, test and translation input are always segmented the deterministic way.

``SampledPairs`` is a prepared folder that keeps its training text (``text/``, see
``seq2seq/data/indexed.py``); ``for_epoch(seed, epoch)`` is the dataset one epoch trains
on, whose ``__getitems__`` (run in the DataLoader workers) encodes the lines of a batch.

The segmentation of pair i's side in an epoch is a function of (seed, epoch, i, side)
alone: SentencePiece's generator is seeded with a hash of them before each line is
encoded, one line at a time (a list is encoded by threads, in no fixed order). So a run
resumed mid-epoch, any number of workers and another process all draw the same ids.
Batches are still made from the deterministic lengths (the batches of a run without
sampling); a sampled side longer than ``data.max_len`` keeps its deterministic ids.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from seq2seq.data.collate import Batch, collate
from seq2seq.data.indexed import IndexedPairs
from seq2seq.errors import UserError
from seq2seq.special import EOS_ID

METHODS = {"unigram": "subword regularization", "bpe": "BPE-dropout"}  # model types that sample
DEFAULT_ALPHA = {"unigram": 0.2, "bpe": 0.1}  # data.tokenizer.alpha=null
TRAINING_ONLY = ("sampling", "alpha")  # data.tokenizer keys that do not shape the tokenizer
UNSET = 0xFFFFFFFF  # the seed SentencePiece takes as "none given"


def sampling_alpha(tokenizer_cfg) -> float:
    """The alpha a ``data.tokenizer`` config samples with: its own, or its model type's default."""
    alpha = tokenizer_cfg.get("alpha")
    return DEFAULT_ALPHA[tokenizer_cfg.model_type] if alpha is None else float(alpha)


def line_seed(seed: int, epoch: int, index: int, side: str) -> int:
    """The seed of one line's segmentation: a 32-bit hash of (seed, epoch, pair index, side)."""
    digest = hashlib.blake2b(f"{seed} {epoch} {index} {side}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % UNSET


class SampledPairs(IndexedPairs):
    """The pairs of a prepared folder with ``text/``, whose epochs (``for_epoch``) sample
    segmentations with ``alpha``; a sampled side longer than ``max_len`` (the source with
    its EOS, the target with the EOS ``tgt_out`` adds) keeps its deterministic ids."""

    def __init__(self, folder: str | Path, alpha: float, max_len: int):
        super().__init__(folder)
        if not self.has_text():
            raise UserError(f"{self.folder}: holds no training text to sample from; prepare it again")
        self.alpha, self.max_len = alpha, max_len
        self._models: dict | None = None

    def __getstate__(self):
        return {**super().__getstate__(), "_models": None}  # workers load the models themselves

    def _processors(self) -> dict:
        if self._models is None:
            files = [str(self.folder / name) for name in self.meta["tokenizer"]]
            src = spm.SentencePieceProcessor(model_file=files[0])
            tgt = src if len(files) == 1 else spm.SentencePieceProcessor(model_file=files[-1])
            self._models = {"src": src, "tgt": tgt}
        return self._models

    def sample(self, side: str, i: int, seed: int, epoch: int) -> np.ndarray | list[int]:
        """Pair ``i``'s ``side`` ids as epoch ``epoch`` of a run seeded ``seed`` sees them: a
        sampled segmentation (sources end in EOS), or the deterministic ids when that is too long."""
        spm.set_random_generator_seed(line_seed(seed, epoch, i, side))
        ids = self._processors()[side].encode(
            self.text(side, i), enable_sampling=True, alpha=self.alpha, nbest_size=-1
        )
        if len(ids) + 1 > self.max_len:
            return self.ids(side, i)
        return ids + [EOS_ID] if side == "src" else ids

    def for_epoch(self, seed: int, epoch: int) -> EpochPairs:
        """The dataset of epoch ``epoch`` of a run seeded ``seed``: these pairs, sampled."""
        return EpochPairs(self, seed, epoch)


class EpochPairs(torch.utils.data.Dataset):
    """One epoch's view of ``SampledPairs``: ``view[i]`` and ``__getitems__`` give pair i
    segmented as this (seed, epoch) samples it."""

    def __init__(self, pairs: SampledPairs, seed: int, epoch: int):
        self.pairs, self.seed, self.epoch = pairs, seed, epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple:
        return tuple(self.pairs.sample(side, i, self.seed, self.epoch) for side in ("src", "tgt"))

    def __getitems__(self, rows) -> Batch:
        """A whole padded batch of the pairs ``rows``, sampled (what the DataLoader asks for)."""
        sample, seed, epoch = self.pairs.sample, self.seed, self.epoch
        src = [sample("src", i, seed, epoch) for i in rows]
        return collate(src, [sample("tgt", i, seed, epoch) for i in rows])
