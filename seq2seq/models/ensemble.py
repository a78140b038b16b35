"""Several trained models decoding as one.

An ``Ensemble`` is one more ``EncoderDecoder``: its memory and decoder state hold
one entry per member, and each step scores the next token with the mean of the
members' log-probabilities. The searches drive it like any single model, so any
mix of architectures works, as long as the members share one tokenizer.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.models.base import EncoderDecoder, State


class Ensemble(EncoderDecoder):
    """Decode with the average of the members' log-probabilities.

    Args:
        members: trained models with the same source and target vocabularies.
    """

    def __init__(self, members: list[EncoderDecoder]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> State:
        """src: (B, S), src_lengths: (B,) -> {"members": [each member's memory]}."""
        return {"members": [m.encode(src, src_lengths) for m in self.members]}

    def init_state(self, memory: State) -> State:
        return {"members": [m.init_state(s) for m, s in zip(self.members, memory["members"], strict=True)]}

    def step(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tgt: (B,) -> (B, V) mean log-probabilities (a search's log_softmax keeps them
        as they are, up to rounding), and the members' new states."""
        log_probs, states = [], []
        for m, s in zip(self.members, state["members"], strict=True):
            logits, s = m.step(tgt, s)  # (B, V)
            log_probs.append(torch.log_softmax(logits.float(), dim=-1))
            states.append(s)
        return torch.stack(log_probs).mean(0), {"members": states}  # (B, V)

    def reorder_state(self, state: State, index: torch.Tensor) -> State:
        """Each member reorders its own state (keeping its own sentence sharing)."""
        return {
            "members": [
                m.reorder_state(s, index) for m, s in zip(self.members, state["members"], strict=True)
            ]
        }

    def rows_per_sentence(self, state: State) -> int:
        return self.members[0].rows_per_sentence(state["members"][0])

    def features(self, src, src_lengths, tgt_in) -> torch.Tensor:
        raise NotImplementedError("an ensemble decodes; train its members one by one")

    @property
    def max_positions(self) -> int | None:
        """The shortest limit of the members (None when none has one)."""
        limits = [m.max_positions for m in self.members if m.max_positions is not None]
        return min(limits) if limits else None
