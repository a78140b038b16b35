"""Label-smoothed cross-entropy (Szegedy et al., 2016)."""

from __future__ import annotations

import torch

from seq2seq.special import PAD_ID


def label_smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, epsilon: float, ignore_index: int = PAD_ID
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss against the target smoothed towards the uniform distribution.

    The smoothed target puts ``1 - epsilon`` on the reference token and spreads
    ``epsilon`` evenly over all V tokens, so per token

        loss = (1 - epsilon) * -log p(y) + epsilon * mean_v(-log p(v)).

    Args:
        logits: (N, V) scores; target: (N,) ids; positions equal to
            ``ignore_index`` (padding) contribute nothing.
    Returns:
        (loss, nll): sums over the kept positions of the smoothed loss and of
        the plain negative log-likelihood (for perplexity).
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    keep = target != ignore_index  # (N,)
    nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
    uniform = -log_probs.mean(dim=-1)  # (N,)
    loss = (1.0 - epsilon) * nll + epsilon * uniform
    return loss[keep].sum(), nll[keep].sum()
