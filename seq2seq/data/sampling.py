"""Subword sampling while training: every epoch sees new segmentations of the training pairs.

With ``data.tokenizer.sampling=true`` each training line gets a sampled segmentation
instead of its best one: for a unigram model, one of SentencePiece's ``nbest_size`` best
segmentations, drawn with probability proportional to P(segmentation)^alpha (subword
regularization, Kudo 2018, l-best sampling); for a BPE model, SentencePiece's merges with
each merge skipped with probability ``alpha`` (BPE-dropout, Provilkov et al. 2020).
Validation, test and translation input are always segmented the deterministic way.

``SampledPairs`` is a prepared folder that keeps its training text (``text/``, see
``seq2seq/data/indexed.py``); ``for_epoch(seed, epoch)`` is the dataset one epoch trains
on, whose ``__getitems__`` (run in the DataLoader workers) encodes the lines of a batch.

The segmentation of pair i's side in an epoch is a function of (seed, epoch, i, side)
alone: every random draw comes from a ``random.Random`` seeded with a hash of them. Not
from SentencePiece's own sampling (``enable_sampling``): seeded alike, it repeats itself
within a process only, as its generator mixes in a salt drawn once per process. So a run
resumed mid-epoch (even after ``kill -9``), any number of workers and every process draw
the same ids. Batches are still made from the deterministic lengths (the batches of a run
without sampling); a sampled side longer than ``data.max_len`` keeps its deterministic ids.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from seq2seq.data.collate import Batch, collate
from seq2seq.data.indexed import IndexedPairs
from seq2seq.errors import UserError
from seq2seq.special import EOS_ID

METHODS = {"unigram": "subword regularization", "bpe": "BPE-dropout"}  # model types that sample
TRAINING_ONLY = ("sampling", "alpha", "nbest_size")  # data.tokenizer keys that do not shape the tokenizer


def line_seed(seed: int, epoch: int, index: int, side: str) -> int:
    """The seed of one line's segmentation: a 64-bit hash of (seed, epoch, pair index, side)."""
    digest = hashlib.blake2b(f"{seed} {epoch} {index} {side}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class UnigramSampler:
    """l-best sampling of a unigram model: one of the ``nbest_size`` best segmentations,
    with probability proportional to exp(alpha * its log-probability)."""

    def __init__(self, processor: spm.SentencePieceProcessor, alpha: float, nbest_size: int):
        self.sp, self.alpha, self.nbest_size = processor, alpha, nbest_size
        self.scores = [processor.get_score(i) for i in range(processor.get_piece_size())]  # log-probabilities

    def __call__(self, text: str, rng: random.Random) -> list[int]:
        """The ids of one sampled segmentation of ``text``."""
        candidates = self.sp.nbest_encode_as_ids(text, nbest_size=self.nbest_size)
        if len(candidates) < 2:
            return candidates[0] if candidates else []
        logits = [self.alpha * math.fsum(map(self.scores.__getitem__, ids)) for ids in candidates]
        top = max(logits)
        return rng.choices(candidates, [math.exp(x - top) for x in logits])[0]


class BpeDropout:
    """SentencePiece's BPE encoding, each merge skipped with probability ``alpha``: the
    normalized line's characters merged pair by pair, the best-scored first (the leftmost
    of equals), as ``bpe_model.cc`` does; a symbol outside the vocabulary falls back to its
    UTF-8 bytes. With alpha 0 it gives ``encode``'s ids (``tests/test_sampling.py``)."""

    def __init__(self, processor: spm.SentencePieceProcessor, alpha: float):
        self.sp, self.alpha = processor, alpha
        normal = (
            i
            for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_byte(i))
        )
        self.pieces = {processor.id_to_piece(i): (processor.get_score(i), i) for i in normal}
        self.bytes = [processor.piece_to_id(f"<0x{b:02X}>") for b in range(256)]

    def __call__(self, text: str, rng: random.Random) -> list[int]:
        """The ids of ``text`` encoded with merges dropped at random."""
        symbols = list(self.sp.normalize(text))  # characters, ▁ for spaces
        n = len(symbols)
        after, before = list(range(1, n + 1)), list(range(-1, n - 1))  # links between live symbols
        agenda: list[tuple[float, int, int, int]] = []  # (-score, left, right, merged length)

        def consider(left: int, right: int) -> None:
            if left >= 0 and right < n:
                found = self.pieces.get(symbols[left] + symbols[right])
                if found is not None:
                    heapq.heappush(agenda, (-found[0], left, right, len(symbols[left]) + len(symbols[right])))

        for i in range(n - 1):
            consider(i, i + 1)
        while agenda:
            _, left, right, length = heapq.heappop(agenda)
            if not symbols[left] or not symbols[right] or len(symbols[left]) + len(symbols[right]) != length:
                continue  # one of them was merged since
            if self.alpha and rng.random() < self.alpha:
                continue  # dropped
            symbols[left], symbols[right] = symbols[left] + symbols[right], ""
            after[left] = after[right]
            if after[left] < n:
                before[after[left]] = left
            consider(before[left], left)
            consider(left, after[left])
        ids: list[int] = []
        for symbol in filter(None, symbols):
            found = self.pieces.get(symbol)
            ids.extend([found[1]] if found else (self.bytes[b] for b in symbol.encode("utf-8")))
        return ids


class SampledPairs(IndexedPairs):
    """The pairs of a prepared folder with ``text/``, whose epochs (``for_epoch``) sample
    segmentations with ``alpha``; a sampled side longer than ``max_len`` (the source with
    its EOS, the target with the EOS ``tgt_out`` adds) keeps its deterministic ids."""

    def __init__(self, folder: str | Path, model_type: str, alpha: float, nbest_size: int, max_len: int):
        super().__init__(folder)
        if not self.has_text():
            raise UserError(f"{self.folder}: holds no training text to sample from; prepare it again")
        self.model_type, self.alpha, self.nbest_size, self.max_len = model_type, alpha, nbest_size, max_len
        self._samplers: dict | None = None

    def __getstate__(self):
        return {**super().__getstate__(), "_samplers": None}  # workers load the models themselves

    def _sampler(self, side: str):
        if self._samplers is None:  # one per model file: shared by both sides when joint
            made = [self._new_sampler(self.folder / name) for name in self.meta["tokenizer"]]
            self._samplers = {"src": made[0], "tgt": made[-1]}
        return self._samplers[side]

    def _new_sampler(self, model_file: Path):
        processor = spm.SentencePieceProcessor(model_file=str(model_file))
        if self.model_type == "unigram":
            return UnigramSampler(processor, self.alpha, self.nbest_size)
        return BpeDropout(processor, self.alpha)

    def sample(
        self, side: str, i: int, seed: int, epoch: int, row: int | None = None
    ) -> np.ndarray | list[int]:
        """Pair ``i``'s ``side`` ids as epoch ``epoch`` of a run seeded ``seed`` sees them: a
        sampled segmentation (sources end in EOS), or the deterministic ids when that is too long.
        ``row``: the pair number the draws are seeded with (default ``i``; ``MixedPairs`` gives
        its row, so that the corpora of a mixture do not share draws)."""
        rng = random.Random(line_seed(seed, epoch, i if row is None else row, side))
        ids = self._sampler(side)(self.text(side, i), rng)
        if len(ids) + 1 > self.max_len:
            return self.ids(side, i)
        return ids + [EOS_ID] if side == "src" else ids

    def for_epoch(self, seed: int, epoch: int, first_row: int = 0) -> EpochPairs:
        """The dataset of epoch ``epoch`` of a run seeded ``seed``: these pairs, sampled, pair i's
        draws seeded with row ``first_row + i`` (a mixture's row, so its corpora share no draws)."""
        return EpochPairs(self, seed, epoch, first_row)


class EpochPairs(torch.utils.data.Dataset):
    """One epoch's view of ``SampledPairs``: ``view[i]`` and ``__getitems__`` give pair i
    segmented as this (seed, epoch) samples it."""

    def __init__(self, pairs: SampledPairs, seed: int, epoch: int, first_row: int = 0):
        self.pairs, self.seed, self.epoch, self.first_row = pairs, seed, epoch, first_row

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple:
        row = self.first_row + i
        return tuple(self.pairs.sample(side, i, self.seed, self.epoch, row) for side in ("src", "tgt"))

    def __getitems__(self, rows) -> Batch:
        """A whole padded batch of the pairs ``rows``, sampled (what the DataLoader asks for)."""
        pairs = [self[i] for i in rows]
        return collate([s for s, _ in pairs], [t for _, t in pairs])
