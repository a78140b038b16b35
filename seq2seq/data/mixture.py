"""Several prepared corpora as one training set, and the batches an epoch draws from them.

``MixedPairs`` joins the prepared folders of ``data.corpora`` (one each, encoded with one
shared tokenizer, ``seq2seq/data/corpora.py``): pair ``i`` of corpus ``c`` is row
``offsets[c] + i``, and its source gets the corpus's prefix (the ``<2xx>`` tag of its target
language, when the corpora have several) before its ids.

Batches (``mixture_batches``) are token batches of one corpus each, drawn with temperature
sampling:

* Corpus c alone makes ``b_c`` batches per pass (``count_batches``; its size, in batches,
  which follow its tokens). An epoch is ``B = sum(b_c)`` batches: what one pass over every
  corpus takes.
* Corpus c gets ``p_c ~ (weight_c * b_c) ** (1 / T)`` of them (``data.temperature`` T; 1:
  in proportion to size, larger: flatter), rounded to whole batches by largest remainder
  (``batch_quotas``). With T = 1 and equal weights every pair is seen once an epoch.
* Each corpus walks through its own passes, without replacement: its ``m_c`` batches of
  epoch e are positions ``e * m_c .. (e + 1) * m_c - 1`` of the endless sequence of its
  passes, pass j being ``token_batches`` of its lengths with seed ``(seed, c)`` and epoch j.
  An up-sampled corpus repeats, a down-sampled one goes on where the last epoch stopped.
* The corpora's batches are interleaved by a random permutation of seed ``(seed, epoch)``.

Everything is a function of ``(seed, epoch)``, so a resumed run takes the same batches.
With ``data.tokenizer.sampling`` each corpus is ``SampledPairs`` and an epoch's rows are
sampled segmentations (``MixedEpoch``), a function of (seed, epoch, row) too; the batches
are still made from the deterministic lengths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seq2seq.data.batching import count_batches, token_batches
from seq2seq.data.collate import Batch, collate
from seq2seq.data.indexed import IndexedPairs
from seq2seq.data.sampling import SampledPairs


def mixture_probabilities(sizes, weights, temperature: float) -> np.ndarray:
    """(C,) the share of an epoch's batches each corpus gets: ``(weight * size) ** (1 / T)``,
    normalised. ``sizes``: (C,) batches per pass; ``weights``: (C,)."""
    scaled = np.asarray(weights, dtype=np.float64) * np.asarray(sizes, dtype=np.float64)
    p = scaled ** (1.0 / temperature)
    return p / p.sum()


def batch_quotas(total: int, probabilities: np.ndarray) -> np.ndarray:
    """(C,) whole numbers of batches, summing to ``total``, nearest to ``total * p``
    (largest remainder; ties to the first corpus)."""
    exact = total * np.asarray(probabilities, dtype=np.float64)
    quotas = np.floor(exact + 1e-9).astype(np.int64)
    short = total - int(quotas.sum())
    if short > 0:
        quotas[np.argsort(-(exact - quotas), kind="stable")[:short]] += 1
    return quotas


class Mixture:
    """The lengths of several corpora (each source counted with its prefix) and their shares
    of an epoch; ``batches(seed, epoch)`` is an epoch's order.

    Args:
        lengths: per corpus, its (N_c,) source and (N_c,) target lengths, prefix not counted.
        prefix_lengths: per corpus, the ids put before its sources.
        weights: per corpus, ``data.corpora.NAME.weight``.
        temperature: ``data.temperature``.
        max_tokens: ``trainer.max_tokens``.
    """

    def __init__(self, lengths, prefix_lengths, weights, temperature: float, max_tokens: int):
        pairs = zip(lengths, prefix_lengths, strict=True)
        self.lengths = [(np.asarray(src, dtype=np.int64) + extra, tgt) for (src, tgt), extra in pairs]
        self.max_tokens = max_tokens
        self.offsets = np.cumsum([0] + [len(src) for src, _ in lengths])  # (C + 1,)
        self.per_pass = np.array([count_batches(src, tgt, max_tokens) for src, tgt in self.lengths])  # (C,)
        self.probabilities = mixture_probabilities(self.per_pass, weights, temperature)
        self.quotas = batch_quotas(int(self.per_pass.sum()), self.probabilities)

    @property
    def batches_per_epoch(self) -> int:
        return int(self.quotas.sum())

    def batches(self, seed: int, epoch: int) -> list[np.ndarray]:
        """The epoch's batches, each an int array of rows of the joined corpora (one corpus a batch)."""
        own: list[list[np.ndarray]] = []
        for c, (m, b) in enumerate(zip(self.quotas.tolist(), self.per_pass.tolist(), strict=True)):
            start, stop = epoch * m, (epoch + 1) * m
            drawn: list[np.ndarray] = []
            for j in range(start // b, -(-stop // b)):  # the passes that hold positions start .. stop - 1
                src, tgt = self.lengths[c]
                passes = token_batches(src, tgt, self.max_tokens, (seed, c), j)
                first, last = max(start - j * b, 0), min(stop - j * b, b)
                drawn += [batch.astype(np.int64) + int(self.offsets[c]) for batch in passes[first:last]]
            own.append(drawn)
        labels = np.repeat(np.arange(len(own)), self.quotas)
        labels = np.random.default_rng([seed, epoch]).permutation(labels)
        taken = [0] * len(own)
        order = []
        for c in labels.tolist():
            order.append(own[c][taken[c]])
            taken[c] += 1
        return order


class MixedPairs(torch.utils.data.Dataset):
    """The pairs of several prepared folders as one dataset (rows as ``Mixture`` numbers
    them); a source is its corpus's prefix followed by its ids. ``meta``: {"key", "pairs"}.

    With ``sampling`` (``SampledPairs``'s model_type, alpha, nbest_size and max_len by name)
    every folder is opened as ``SampledPairs`` and ``for_epoch`` gives the epoch's sampled
    segmentations (``MixedEpoch``): row r's draws are seeded with (seed, epoch, r, side), the
    row number of the joined corpora, so two corpora's pair i do not share them."""

    def __init__(
        self, folders: list[Path], prefixes: list[list[int]], key: str, sampling: dict | None = None
    ):
        if sampling is None:
            self.corpora = [IndexedPairs(folder) for folder in folders]
        else:
            self.corpora = [SampledPairs(folder, **sampling) for folder in folders]
        self.offsets = np.cumsum([0] + [len(c) for c in self.corpora])  # (C + 1,)
        dtype = self.corpora[0].dtype
        self.prefixes = [np.asarray(p, dtype=dtype) for p in prefixes]
        self.meta = {"key": key, "pairs": int(self.offsets[-1])}

    def __len__(self) -> int:
        return self.meta["pairs"]

    def lengths(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per corpus, its (N_c,) source and target lengths (memory-mapped, prefix not counted)."""
        return [(c.lengths("src"), c.lengths("tgt")) for c in self.corpora]

    def locate(self, row: int) -> tuple[int, int]:
        """(corpus, pair of that corpus) of a row."""
        c = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return c, row - int(self.offsets[c])

    def pair(self, row: int, corpora=None) -> tuple[np.ndarray, np.ndarray]:
        """(prefix + source ids, target ids) of a row, read from ``corpora`` (default: the
        prepared ones; an epoch's views of them for ``MixedEpoch``)."""
        c, i = self.locate(row)
        src, tgt = (corpora or self.corpora)[c][i]
        prefix = self.prefixes[c]
        return (np.concatenate([prefix, src]) if len(prefix) else np.asarray(src)), np.asarray(tgt)

    def batch(self, rows, corpora=None) -> Batch:
        """A whole padded batch of ``rows`` (what the DataLoader asks for)."""
        pairs = [self.pair(int(r), corpora) for r in rows]
        return collate([s for s, _ in pairs], [t for _, t in pairs])

    def for_epoch(self, seed: int, epoch: int) -> MixedPairs | MixedEpoch:
        """The dataset of an epoch: each corpus's ``for_epoch`` (sampled segmentations, seeded
        with the row of the joined corpora); these pairs themselves when none samples."""
        starts = self.offsets[:-1].tolist()  # each corpus's first row
        views = [c.for_epoch(seed, epoch, start) for c, start in zip(self.corpora, starts, strict=True)]
        if all(v is c for v, c in zip(views, self.corpora, strict=True)):
            return self
        return MixedEpoch(self, views)

    def __getitem__(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pair(row)

    def __getitems__(self, rows) -> Batch:
        return self.batch(rows)


class MixedEpoch(torch.utils.data.Dataset):
    """One epoch's view of ``MixedPairs`` whose corpora sample: rows read from the corpora's
    epoch views (``SampledPairs.for_epoch``)."""

    def __init__(self, pairs: MixedPairs, views: list):
        self.pairs, self.views = pairs, views

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pairs.pair(int(row), self.views)

    def __getitems__(self, rows) -> Batch:
        """A whole padded batch of ``rows``, sampled (what the DataLoader asks for)."""
        return self.pairs.batch(rows, self.views)
