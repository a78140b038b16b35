"""Attention for a recurrent decoder (Bahdanau et al., 2015; Luong et al., 2015).

Every attention module scores the decoder's queries against the encoder's
memory, masks the padded source positions and returns a context vector per
query:

    scores  = score(query, keys)                     # (B, T, S)
    weights = softmax(scores masked with -inf)       # (B, T, S), rows sum to 1
    context = weights @ memory                       # (B, T, M)

``keys`` is whatever part of the score depends only on the memory (for example
``W_k · memory``). ``project_keys`` computes it once per sentence, so a
decoding step only pays for the query side.

Queries have a time dimension T: teacher forcing may score all target
positions at once, a decoding step uses T = 1. When a sentence has G decoder
rows (its beams), its rows attend over its one copy of the memory: the G rows
are stacked as G * T query positions.

Every attention type is one entry of ``ATTENTIONS``, added with ``@register``;
``build_attention``, the config check (through the model's constructor), the
tests and ``docs`` read that registry, so a new type needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seq2seq.models.base import MAX_POSITIONS


class Attention(nn.Module):
    """Base class: masking, softmax and the weighted sum of the memory.

    Subclasses define ``score`` and, when part of it depends only on the
    memory, ``project_keys``.
    """

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """Precompute the memory side of the score, once per sentence.

        Args:
            memory: (B, S, M) encoder outputs.
        Returns:
            keys: (B, S, K); here the memory itself (K = M).
        """
        return memory

    def score(self, query: torch.Tensor, keys: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """Unnormalised alignment scores.

        Args:
            query: (B, T, H) decoder states; keys: (B, S, K); src_lengths: (B,).
        Returns:
            (B, T, S) scores.
        """
        raise NotImplementedError

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        src_lengths: torch.Tensor,
        group: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend over the memory.

        Args:
            query: (B, T, H) decoder states, B = N * group.
            keys: (N, S, K) output of ``project_keys(memory)``.
            memory: (N, S, M) encoder outputs, one per sentence.
            src_mask: (N, S) True at real source tokens, False at padding.
            src_lengths: (N,) number of real source tokens.
            group: rows of ``query`` per sentence, side by side.
        Returns:
            context: (B, T, M) weighted sums of the memory.
            weights: (B, T, S) attention weights; exactly 0 at padding, rows sum to 1.
        """
        B, T, H = query.shape
        query = query.reshape(B // group, group * T, H)  # (N, G * T, H) a sentence's rows together
        scores = self.score(query, keys, src_lengths)  # (N, G * T, S)
        scores = scores.masked_fill(~src_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (N, G * T, S)
        context = torch.bmm(weights, memory)  # (N, G * T, M)
        return context.reshape(B, T, -1), weights.reshape(B, T, -1)  # (B, T, M), (B, T, S)


class AdditiveAttention(Attention):
    """Bahdanau's additive score, ``v^T tanh(W_q q + W_k m)``.

    Luong's ``concat`` score, ``v^T tanh(W_a [q; m])``, is the same function:
    splitting ``W_a`` column-wise into ``[W_q | W_k]`` gives exactly this sum.
    Both names therefore build this class; the papers differ in which decoder
    state queries, and in this decoder it is always the current top state h_t.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)
        self.key_proj = nn.Linear(memory_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, S, M) memory -> (B, S, A) keys ``W_k · memory``."""
        return self.key_proj(memory)

    def score(self, query: torch.Tensor, keys: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B, S, A) keys -> (B, T, S) scores."""
        query = self.query_proj(query).unsqueeze(2)  # (B, T, 1, A)
        keys = keys.unsqueeze(1)  # (B, 1, S, A)
        return self.v(torch.tanh(query + keys)).squeeze(-1)  # (B, T, S)


class DotAttention(Attention):
    """Luong's ``dot`` score, ``q^T m``; needs query and memory of equal size."""

    def score(self, query: torch.Tensor, keys: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B, S, H) keys -> (B, T, S) scores."""
        return torch.bmm(query, keys.transpose(1, 2))  # (B, T, H) x (B, H, S) -> (B, T, S)


class GeneralAttention(DotAttention):
    """Luong's ``general`` score, ``q^T W_a m``; ``W_a m`` is precomputed as the keys."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, S, M) memory -> (B, S, H) keys ``W_a · memory``."""
        return self.key_proj(memory)


class LocalAttention(GeneralAttention):
    """Luong's local-p attention: ``general`` scores in a window around a predicted position.

    Each query predicts where it is aligned, ``p_t = S_len * sigmoid(v_p^T
    tanh(W_p h_t))``, with ``S_len`` the row's real source length. Only the
    positions ``s`` with ``|s - p_t| <= D`` (``window`` = D) are attended, and
    their alignment weights are multiplied by a Gaussian ``exp(-(s - p_t)^2 /
    (2 sigma^2))`` with ``sigma = D / 2``, then renormalised. Multiplying a
    softmax by a positive factor and renormalising is the same as adding the
    factor's logarithm to the scores before the softmax, which is what
    ``score`` does: it is exact and never divides by a vanishing sum. The window
    always holds a real position (p_t lies in [0, S_len] and D >= 1); padded
    positions are still masked with -inf, so they stay exactly 0.
    """

    def __init__(self, query_size: int, memory_size: int, window: int):
        super().__init__(query_size, memory_size)
        if window < 1:
            raise ValueError(f"local_window ({window}) must be at least 1")
        self.position_proj = nn.Linear(query_size, query_size, bias=False)
        self.position_v = nn.Linear(query_size, 1, bias=False)
        self.window, self.sigma = window, window / 2.0

    def predict_position(self, query: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B,) lengths -> (B, T) aligned positions in [0, S_len]."""
        gate = torch.sigmoid(self.position_v(torch.tanh(self.position_proj(query)))).squeeze(-1)  # (B, T)
        return src_lengths.to(gate.dtype).unsqueeze(1) * gate  # (B, T)

    def score(self, query: torch.Tensor, keys: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B, S, H) keys, (B,) lengths -> (B, T, S) windowed scores."""
        scores = super().score(query, keys, src_lengths)  # (B, T, S)
        center = self.predict_position(query, src_lengths).unsqueeze(-1)  # (B, T, 1)
        positions = torch.arange(keys.size(1), device=keys.device, dtype=scores.dtype)  # (S,)
        distance = positions - center  # (B, T, S)
        scores = scores - distance**2 / (2 * self.sigma**2)
        return scores.masked_fill(distance.abs() > self.window, float("-inf"))


class LocationAttention(Attention):
    """Luong's ``location`` score, ``a_t = softmax(W_a h_t)``: the weights of the
    source positions come from the query alone, one output of a linear layer per
    position (the first S of ``max_positions``), padding masked.

    The PyTorch seq2seq tutorial computes its weights the same way from a linear
    layer over the previous token's embedding and hidden state joined; here the
    query h_t, which the decoder RNN computes from exactly those, is the layer's
    input. (A layer over each [query; key] pair would not do: the query's part
    would be the same for every position and cancel in the softmax.)
    """

    def __init__(self, query_size: int, max_positions: int):
        super().__init__()
        self.position_scores = nn.Linear(query_size, max_positions)

    def score(self, query: torch.Tensor, keys: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B, S, K) keys (only S is read) -> (B, T, S) scores."""
        S, limit = keys.size(1), self.position_scores.out_features
        if S > limit:
            raise ValueError(f"location attention covers {limit} source positions, got {S}")
        return self.position_scores(query)[..., :S]  # (B, T, S)


# ----------------------------------------------------------------- the registry

Builder = Callable[[int, int, int, int], Attention]
ATTENTIONS: dict[str, Builder] = {}


def register(*names: str):
    """Add a builder ``(query_size, memory_size, local_window, max_positions) -> Attention``
    under each of ``names``."""

    def add(builder: Builder) -> Builder:
        for name in names:
            ATTENTIONS[name] = builder
        return builder

    return add


@register("bahdanau", "concat")
def _additive(query_size, memory_size, local_window, max_positions):
    return AdditiveAttention(query_size, memory_size, attention_size=query_size)


@register("dot")
def _dot(query_size, memory_size, local_window, max_positions):
    if query_size != memory_size:
        raise ValueError(f"dot attention needs query size {query_size} == memory size {memory_size}")
    return DotAttention()


@register("general")
def _general(query_size, memory_size, local_window, max_positions):
    return GeneralAttention(query_size, memory_size)


@register("local")
def _local(query_size, memory_size, local_window, max_positions):
    return LocalAttention(query_size, memory_size, window=local_window)


@register("location")
def _location(query_size, memory_size, local_window, max_positions):
    return LocationAttention(query_size, max_positions)


def build_attention(
    kind: str, query_size: int, memory_size: int, local_window: int = 10, max_positions: int = MAX_POSITIONS
) -> Attention:
    """Make the attention module registered as ``kind``.

    Args:
        kind: a name in ``ATTENTIONS``.
        query_size: H, size of the decoder states; memory_size: M, of the encoder outputs.
        local_window: half-width D of the local-p window (``local`` only).
        max_positions: longest source (``location`` only).
    """
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTIONS)}")
    return ATTENTIONS[kind](query_size, memory_size, local_window, max_positions)
