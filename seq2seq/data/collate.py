"""Padded tensors of a batch: ``collate`` turns id lists into a ``Batch``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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

    def pin_memory(self) -> Batch:
        """Page-locked copies, so that ``to(cuda)`` can overlap the copy (DataLoader's pin_memory)."""
        return Batch(*(t.pin_memory() for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)))

    @property
    def num_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD_ID).sum())


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None) -> Batch:
    """Make a ``Batch`` from source ids (with EOS) and target ids (without BOS/EOS): lists
    or numpy arrays, one per sentence."""
    B = len(src)
    src_lengths = np.fromiter((len(s) for s in src), dtype=np.int64, count=B)
    src_t = np.full((B, int(src_lengths.max())), PAD_ID, dtype=np.int64)
    for row, s in enumerate(src):
        src_t[row, : len(s)] = s
    if tgt is None:
        empty = torch.zeros(B, 0, dtype=torch.long)
        return Batch(torch.from_numpy(src_t), torch.from_numpy(src_lengths), empty, empty)
    T = max(len(t) for t in tgt) + 1
    tgt_in = np.full((B, T), PAD_ID, dtype=np.int64)
    tgt_out = np.full((B, T), PAD_ID, dtype=np.int64)
    tgt_in[:, 0] = BOS_ID
    for row, t in enumerate(tgt):
        tgt_in[row, 1 : len(t) + 1] = t
        tgt_out[row, : len(t)] = t
        tgt_out[row, len(t)] = EOS_ID
    tensors = (src_t, src_lengths, tgt_in, tgt_out)
    return Batch(*(torch.from_numpy(a) for a in tensors))
