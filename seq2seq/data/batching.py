"""Token-based batches of similar length, reshuffled every epoch."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from seq2seq.special import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """A padded batch.

    src: (B, S) source ids ending in EOS; src_lengths: (B,);
    tgt_in: (B, T) BOS + target ids; tgt_out: (B, T) target ids + EOS
    (both (B, 0) for a batch of sources alone).
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(
            *(
                t.to(device, non_blocking=True)
                for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)
            )
        )

    @property
    def num_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD_ID).sum())


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Right-pad lists of ids into a (B, max_len) long tensor."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def collate(src: list[list[int]], tgt: list[list[int]] | None = None) -> Batch:
    """Make a ``Batch`` from source ids (with EOS) and target ids (without BOS/EOS)."""
    src_t = pad(src)
    lengths = torch.tensor([len(s) for s in src], dtype=torch.long)
    if tgt is None:
        empty = torch.zeros(len(src), 0, dtype=torch.long)
        return Batch(src_t, lengths, empty, empty)
    tgt_in = pad([[BOS_ID] + t for t in tgt])
    tgt_out = pad([t + [EOS_ID] for t in tgt])
    return Batch(src_t, lengths, tgt_in, tgt_out)


def token_batches(
    src_lengths: list[int],
    tgt_lengths: list[int],
    max_tokens: int,
    seed: int | None = None,
    epoch: int = 0,
) -> list[list[int]]:
    """Group example indices into batches of at most ``max_tokens`` padded tokens.

    Examples are sorted by length (ties broken at random) so a batch holds
    sentences of similar length and carries little padding; the batch order is
    then shuffled. Each index appears in exactly one batch. The result depends
    only on ``(seed, epoch)``; ``seed=None`` keeps the corpus order for
    decoding (sorted by length, batches in length order).

    A batch of n examples costs ``n * max(longest source, longest target + 1)``
    tokens; an example longer than ``max_tokens`` gets a batch of its own.
    """
    n = len(src_lengths)
    order = list(range(n))
    rng = random.Random(seed * 1_000_003 + epoch) if seed is not None else None
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (src_lengths[i], tgt_lengths[i]))  # stable: shuffled ties

    batches, current, longest = [], [], 0
    for i in order:
        size = max(src_lengths[i], tgt_lengths[i] + 1)
        if current and (len(current) + 1) * max(longest, size) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches
