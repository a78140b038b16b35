"""The one interface every encoder-decoder implements.

Training uses the teacher-forced ``forward``. Decoding (greedy, beam search,
sampling), evaluation and translation use only ``encode``, ``init_state``,
``step`` and ``reorder_state``, so they never need to know which architecture
they drive.

A decoder *state* is a plain dict of tensors (or lists of tensors) with the
batch in dimension 0. ``step`` returns a new state instead
of storing anything on the module, and ``reorder_state`` selects its rows, which
is all beam search needs. A model may keep parts of its state once per source
sentence rather than once per row (the Transformer does, for its cross-attention
keys and values); it then overrides ``reorder_state``.
"""

from __future__ import annotations

import torch
from torch import nn

State = dict


def map_state(state, fn):
    """Apply ``fn`` to every tensor in a (nested) state; other values are kept."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(v, fn) for v in state)
    return state


class EncoderDecoder(nn.Module):
    """Base class of the models in ``seq2seq.models``.

    Subclasses implement ``encode``, ``init_state``, ``step`` and
    ``features``/``project``; the default ``reorder_state`` works for any state
    whose tensors all have one row per decoder row.
    """

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> State:
        """Encode the source once.

        Args:
            src: (B, S) source token ids, padded with ``PAD_ID``.
            src_lengths: (B,) number of real tokens in each row.
        Returns:
            ``memory``: a dict of tensors with the batch in dimension 0, passed
            to ``init_state`` and ``attention``.
        """
        raise NotImplementedError

    def init_state(self, memory: State) -> State:
        """Return the decoder state before the first target token."""
        raise NotImplementedError

    def step(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Advance the decoder by one token.

        Args:
            tgt: (B,) the previous target token of each row (``BOS_ID`` first).
            state: the state returned by ``init_state`` or the previous step.
        Returns:
            logits: (B, V) unnormalised scores of the next token.
            state: the new state; the input state is left unchanged.
        """
        raise NotImplementedError

    def features(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Teacher-forced pass up to the output layer.

        Args:
            src: (B, S) source ids; src_lengths: (B,);
            tgt_in: (B, T) target ids that start with ``BOS_ID``.
        Returns:
            (B, T, D) decoder outputs; ``project`` turns them into logits.
        """
        raise NotImplementedError

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Output layer: (..., D) decoder outputs to (..., V) logits."""
        raise NotImplementedError

    def forward(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Teacher-forced logits (B, T, V), equal to stepping the decoder
        through ``tgt_in`` one token at a time. The trainer calls ``features``
        and ``project`` itself so that padded positions skip the output layer."""
        return self.project(self.features(src, src_lengths, tgt_in))

    def attention(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Cross-attention weights of a teacher-forced pass, for plots.

        Returns:
            (B, T, S) weights; each row sums to 1 over the real source tokens.
        """
        raise NotImplementedError

    def reorder_state(self, state: State, index: torch.Tensor) -> State:
        """Select (and repeat) batch rows of ``state``: row i of the result is row
        ``index[i]`` of the input. Used by beam search after each step."""
        return map_state(state, lambda t: t.index_select(0, index))

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the model can take, or None when unbounded."""
        return None
