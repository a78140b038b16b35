"""Several prepared corpora as one training set, and the batches an epoch draws from them.

``MixedPairs`` joins the prepared folders of ``data.corpora`` (one each, encoded with one
shared tokenizer, ``seq2seq/data/corpora.py``): pair ``i`` of corpus ``c`` is row
``offsets[c] + i``, and its source gets the corpus's prefix (the ``<2xx>`` tag of its target
language, when the corpora have several) before its ids.

An epoch draws pairs from the corpora with temperature sampling, then packs them together:

* Corpus c gets ``p_c ~ (weight_c * N_c) ** (1 / T)`` of an epoch's pairs (``N_c`` its pairs,
  ``data.temperature`` T; 1: in proportion to size, larger: flatter). An epoch holds as many
  pairs as all corpora together, split by largest remainder into whole quotas ``n_c``
  (``pair_quotas``). With T = 1 and equal weights every pair is seen once an epoch.
* Each corpus walks through its pairs without replacement: its ``n_c`` pairs of epoch e are
  positions ``e * n_c .. (e + 1) * n_c - 1`` of the endless sequence of its shuffles, shuffle j
  being a permutation of seed ``(seed, c, j)``. An up-sampled corpus repeats, a down-sampled
  one goes on where the last epoch stopped.
* The drawn pairs of all corpora are packed into token batches together (``token_batches``
  with seed ``(seed, epoch)``), so a batch mixes corpora and directions. Batches of one
  corpus each learn far more slowly in a multilingual model (docs/RECIPES.md).

Everything is a function of ``(seed, epoch)``, so a resumed run takes the same batches. How
many batches an epoch makes depends on which pairs it drew: ``Mixture.count`` tells (every
epoch the same when T = 1 and the weights are equal). With ``data.tokenizer.sampling`` each
corpus is ``SampledPairs`` and an epoch's rows are sampled segmentations (``MixedEpoch``), a
function of (seed, epoch, row) too; the batches are still made from the deterministic lengths.
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
    """(C,) the share of an epoch's pairs each corpus gets: ``(weight * size) ** (1 / T)``,
    normalised. ``sizes``: (C,) pairs; ``weights``: (C,)."""
    scaled = np.asarray(weights, dtype=np.float64) * np.asarray(sizes, dtype=np.float64)
    p = scaled ** (1.0 / temperature)
    return p / p.sum()


def pair_quotas(total: int, probabilities: np.ndarray) -> np.ndarray:
    """(C,) whole numbers of pairs, summing to ``total``, nearest to ``total * p``
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
        pairs = list(zip(lengths, prefix_lengths, strict=True))
        self.src = np.concatenate([np.asarray(src, np.int32) + extra for (src, _), extra in pairs])  # (N,)
        self.tgt = np.concatenate([np.asarray(tgt, np.int32) for (_, tgt), _ in pairs])  # (N,)
        self.sizes = np.array([len(src) for (src, _), _ in pairs])  # (C,)
        self.offsets = np.cumsum([0, *self.sizes.tolist()])  # (C + 1,)
        self.max_tokens = max_tokens
        self.probabilities = mixture_probabilities(self.sizes, weights, temperature)
        self.quotas = pair_quotas(int(self.sizes.sum()), self.probabilities)  # (C,) pairs an epoch
        self._counts: dict[tuple[int, int], int] = {}

    def rows(self, seed: int, epoch: int) -> np.ndarray:
        """(sum n_c,) the rows of the joined corpora that ``epoch`` draws, sorted."""
        drawn = []
        for c, (n, size) in enumerate(zip(self.quotas.tolist(), self.sizes.tolist(), strict=True)):
            start, stop = epoch * n, (epoch + 1) * n
            for j in range(start // size, -(-stop // size)):  # the shuffles that hold start .. stop - 1
                shuffle = np.random.default_rng([seed, c, j]).permutation(size)
                first, last = max(start - j * size, 0), min(stop - j * size, size)
                drawn.append(shuffle[first:last] + int(self.offsets[c]))
        return np.sort(np.concatenate(drawn))

    def batches(self, seed: int, epoch: int) -> list[np.ndarray]:
        """The epoch's batches, each an int array of rows of the joined corpora."""
        rows = self.rows(seed, epoch)
        packed = token_batches(self.src[rows], self.tgt[rows], self.max_tokens, seed, epoch)
        self._counts[(seed, epoch)] = len(packed)
        return [rows[batch] for batch in packed]

    def count(self, seed: int, epoch: int) -> int:
        """How many batches ``batches(seed, epoch)`` makes (remembered once known)."""
        if (seed, epoch) not in self._counts:
            rows = self.rows(seed, epoch)
            self._counts[(seed, epoch)] = count_batches(self.src[rows], self.tgt[rows], self.max_tokens)
        return self._counts[(seed, epoch)]


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
