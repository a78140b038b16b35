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
positions at once, a decoding step uses T = 1.
"""

from __future__ import annotations

import torch
from torch import nn


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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend over the memory.

        Args:
            query: (B, T, H) decoder states.
            keys: (B, S, K) output of ``project_keys(memory)``.
            memory: (B, S, M) encoder outputs.
            src_mask: (B, S) True at real source tokens, False at padding.
            src_lengths: (B,) number of real source tokens.
        Returns:
            context: (B, T, M) weighted sums of the memory.
            weights: (B, T, S) attention weights; exactly 0 at padding, rows sum to 1.
        """
        scores = self.score(query, keys, src_lengths)  # (B, T, S)
        scores = scores.masked_fill(~src_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        context = torch.bmm(weights, memory)  # (B, T, M)
        return context, weights


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
    """Luong's local-p attention: ``general`` scores around a predicted position.

    Each query predicts where it is aligned, ``p_t = S_len * sigmoid(v_p^T
    tanh(W_p h_t))``, with ``S_len`` the row's real source length, and the
    alignment weights are multiplied by a Gaussian ``exp(-(s - p_t)^2 / (2
    sigma^2))`` with ``sigma = window / 2``, then renormalised. Multiplying a
    softmax by a positive factor and renormalising is the same as adding the
    factor's logarithm to the scores before the softmax, which is what
    ``score`` does: it is exact and never divides by a vanishing sum. Padded
    positions are still masked with -inf, so they stay exactly 0.
    """

    def __init__(self, query_size: int, memory_size: int, window: int):
        super().__init__(query_size, memory_size)
        self.position_proj = nn.Linear(query_size, query_size, bias=False)
        self.position_v = nn.Linear(query_size, 1, bias=False)
        self.sigma = window / 2.0

    def predict_position(self, query: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B,) lengths -> (B, T) aligned positions in [0, S_len]."""
        gate = torch.sigmoid(self.position_v(torch.tanh(self.position_proj(query)))).squeeze(-1)  # (B, T)
        return src_lengths.to(gate.dtype).unsqueeze(1) * gate  # (B, T)

    def score(self, query: torch.Tensor, keys: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) query, (B, S, H) keys, (B,) lengths -> (B, T, S) windowed scores."""
        scores = super().score(query, keys, src_lengths)  # (B, T, S)
        center = self.predict_position(query, src_lengths).unsqueeze(-1)  # (B, T, 1)
        positions = torch.arange(keys.size(1), device=keys.device, dtype=scores.dtype)  # (S,)
        log_window = -((positions - center) ** 2) / (2 * self.sigma**2)  # (B, T, S)
        return scores + log_window


ATTENTION_TYPES = ("bahdanau", "dot", "general", "concat", "local")


def build_attention(kind: str, query_size: int, memory_size: int, local_window: int = 10) -> Attention:
    """Make the attention module called ``kind``.

    Args:
        kind: one of ``ATTENTION_TYPES``.
        query_size: H, size of the decoder states; memory_size: M, of the encoder outputs.
        local_window: half-width D of the local-p window (``local`` only).
    """
    if kind in ("bahdanau", "concat"):
        return AdditiveAttention(query_size, memory_size, attention_size=query_size)
    if kind == "dot":
        if query_size != memory_size:
            raise ValueError(f"dot attention needs query size {query_size} == memory size {memory_size}")
        return DotAttention()
    if kind == "general":
        return GeneralAttention(query_size, memory_size)
    if kind == "local":
        return LocalAttention(query_size, memory_size, window=local_window)
    raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTION_TYPES)}")
