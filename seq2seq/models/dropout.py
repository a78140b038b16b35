"""Dropout with a cheaper random mask on the CPU.

``torch.nn.Dropout`` draws one Bernoulli sample per element; on the CPU that draw,
not the multiplication, is the cost (about an eighth of a Transformer training
step on 2 cores, ``docs/BENCHMARKS.md``). Here one 32-bit random integer gives the
masks of two elements: its two 16-bit halves, each cut to 15 uniform bits, are
compared with ``p * 2**15``. The drop probability is thus rounded to a multiple of
1/32768 (0.1 becomes 0.100006). On other devices this is ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 2**15  # a mask element is 15 random bits


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``shape``, each element False with probability round(p * 2**15) / 2**15."""
    n = shape.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_()  # 31 random bits each
    halves = words.view(torch.int16)[:n] & (LEVELS - 1)  # (n,) 15 uniform bits each
    return (halves >= round(p * LEVELS)).view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each element of x with probability p and scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    kept = round(p * LEVELS)
    scale = LEVELS / (LEVELS - kept)
    return x * (keep_mask(x.shape, p, x.device).to(x.dtype) * scale)


class Dropout(nn.Module):
    """``nn.Dropout`` with the mask above on the CPU."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
