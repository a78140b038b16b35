"""What every decoding strategy shares: hypotheses and output-length limits.

No torch import: the CTranslate2 engine uses these rules too, and the tensor
functions work through the tensors' own methods."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seq2seq.decoding.options import DecodingConfig

if TYPE_CHECKING:
    import torch

DEFAULTS = DecodingConfig()  # the searches' keyword defaults are the config's (one place)


@dataclass
class Hypothesis:
    """One output sentence.

    ``tokens`` holds target ids without BOS and EOS; ``score`` is the value the
    search ranked by (for beam search the length-normalised log-probability),
    and ``log_prob`` is the plain sum of token log-probabilities.
    """

    tokens: list[int]
    score: float
    log_prob: float


def max_output_length(src_length: int, a: float, b: int, cap: int | None) -> int:
    """``max_output_lengths`` for one sentence, in plain Python (no torch threads woken)."""
    limit = math.ceil(src_length * a + b)
    return max(min(limit, cap) if cap is not None else limit, 1)


def max_output_lengths(src_lengths: torch.Tensor, a: float, b: int, cap: int | None) -> torch.Tensor:
    """Largest number of target tokens (EOS included) allowed for each sentence.

    Args:
        src_lengths: (B,) source lengths.
        a, b: the limit is ``ceil(a * src_len + b)`` ...
        cap: ... and never more than ``cap`` (the model's longest sequence).
    Returns:
        (B,) long tensor, at least 1.
    """
    limits = (src_lengths.double() * a + b).ceil().long()
    if cap is not None:
        limits = limits.clamp(max=cap)
    return limits.clamp(min=1)


def length_penalty(tokens: torch.Tensor | int, alpha: float, kind: str = DEFAULTS.length_penalty):
    """What beam search divides a hypothesis's log-probability by.

    Args:
        tokens: the hypothesis's length in tokens, EOS not counted (int or tensor).
        alpha: the exponent; 0 gives 1 (rank by plain log-probability).
        kind: with the EOS counted, L = tokens + 1: ``gnmt``: ((5 + L) / 6) ** alpha
            (Wu et al., 2016); ``power``: L ** alpha, as CTranslate2 and OpenNMT rank.
    Returns:
        a float, or a float64 tensor of ``tokens``' shape.
    """
    length = (float(tokens) if isinstance(tokens, int | float) else tokens.double()) + 1.0
    if kind == "power":
        return length**alpha
    return ((5.0 + length) / 6.0) ** alpha


__all__ = ["DEFAULTS", "Hypothesis", "length_penalty", "max_output_length", "max_output_lengths"]
