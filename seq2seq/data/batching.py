"""Token-based batches of similar length, reshuffled every epoch, computed with numpy
(no torch here: decoding with CTranslate2 batches without importing it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def token_batches(
    src_lengths: Sequence[int] | np.ndarray,
    tgt_lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    seed: int | tuple[int, ...] | None = None,
    epoch: int = 0,
) -> list[np.ndarray]:
    """Group example indices into batches of at most ``max_tokens`` padded tokens.

    An example needs ``max(source length, target length + 1)`` tokens a row, and a batch
    of n examples costs n times its longest example. Examples are sorted by that size
    (ties broken at random), packed in that order as long as they fit, and the batch
    order is shuffled. Each index appears in exactly one batch; an example longer than
    ``max_tokens`` gets a batch of its own. The result depends only on ``(seed, epoch)``
    (``seed`` may be a tuple: a corpus's own stream, ``seq2seq/data/mixture.py``);
    ``seed=None`` keeps the length order for decoding (batches shortest first). Every
    epoch has as many batches (``count_batches``): only the ties and the order change.

    Everything is numpy on the length arrays: the sizes are small integers, so sorting
    them is a radix sort, and the packing loops over distinct sizes, not over examples.

    Returns:
        the batches, each an int array of example indices (views into one array).
    """
    size = example_sizes(src_lengths, tgt_lengths)  # (N,)
    n = len(size)
    if n == 0:
        return []
    order = np.argsort(size, kind="stable").astype(np.int32 if n < 2**31 else np.int64)  # (N,) by size
    counts = np.bincount(size)  # (max size + 1,) examples of each size
    rng = None
    if seed is not None:
        rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), epoch])
        stops = np.cumsum(counts)
        for start, stop in zip((stops - counts).tolist(), stops.tolist(), strict=True):
            if stop - start > 1:
                rng.shuffle(order[start:stop])  # random ties among examples of one size
    batches = np.split(order, _pack(counts, max_tokens)[:-1])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def example_sizes(src_lengths, tgt_lengths) -> np.ndarray:
    """(N,) padded tokens a row of each example needs: max(source, target + 1), as the
    smallest unsigned type that holds them."""
    src = np.asarray(src_lengths, dtype=np.int64)
    size = np.maximum(src, np.asarray(tgt_lengths, dtype=np.int64) + 1)  # (N,)
    return size.astype(np.uint16 if size.size == 0 or size.max() < 2**16 else np.uint32)


def count_batches(src_lengths, tgt_lengths, max_tokens: int) -> int:
    """How many batches ``token_batches`` makes of these examples, in any epoch."""
    size = example_sizes(src_lengths, tgt_lengths)
    return len(_pack(np.bincount(size), max_tokens)) if len(size) else 0


def _pack(counts: np.ndarray, max_tokens: int) -> list[int]:
    """End positions of the batches of examples sorted by size, packed greedily, where
    ``counts[s]`` examples have size ``s``.

    A batch takes the next example while (count + 1) * its size fits ``max_tokens``.
    As sizes never fall, that is a capacity per run of equal sizes, so the loop runs
    over the distinct sizes, not over the examples.
    """
    ends: list[int] = []
    count = 0  # examples in the batch still open
    stop = 0
    for size in np.flatnonzero(counts).tolist():
        start, stop = stop, stop + int(counts[size])
        cap = max(1, max_tokens // size)
        i = start
        if count >= cap:  # the open batch takes none of these
            ends.append(i)
            count = 0
        elif count:
            take = min(cap - count, stop - i)
            i, count = i + take, count + take
            if count == cap:
                ends.append(i)
                count = 0
        if i < stop:
            full = (stop - i) // cap
            ends.extend(range(i + cap, i + full * cap + 1, cap))
            i += full * cap
            count = stop - i
    if count:
        ends.append(stop)
    return ends
