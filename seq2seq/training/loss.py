"""Label-smoothed cross-entropy (Szegedy et al., 2016), without a (N, V) log-probability tensor.

The loss of a row needs only three numbers from its V logits: their log-sum-exp,
the reference token's logit and their mean. ``TokenLosses`` computes those in fp32
over chunks of rows, and its backward writes the gradient, softmax minus the
smoothed target, straight into one tensor of the logits' dtype. Autograd's version
of the same formula keeps the fp32 log-probabilities, a one-hot scatter and the
mean's broadcast; this one measured faster on the CPU (``docs/BENCHMARKS.md``).
"""

from __future__ import annotations

import torch

from seq2seq.special import PAD_ID

CHUNK = 1024  # rows whose fp32 copy exists at once


class TokenLosses(torch.autograd.Function):
    """logits (N, V), target (N,) -> (nll, uniform), each (N,) in fp32 (fp64 for fp64 logits):
    nll = -log p(target), uniform = mean over v of -log p(v). With ``overwrite`` the backward
    writes the gradient into the logits' own memory instead of a fresh (N, V) tensor."""

    @staticmethod
    def forward(ctx, logits, target, overwrite=False):
        acc = torch.promote_types(logits.dtype, torch.float32)  # fp32, or fp64 for fp64 logits
        lse = torch.cat([torch.logsumexp(c.to(acc), dim=-1) for c in logits.split(CHUNK)])  # (N,)
        nll = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1).to(acc)
        uniform = lse - logits.mean(dim=-1, dtype=acc)
        ctx.save_for_backward(logits, target, lse)
        ctx.overwrite = overwrite
        return nll, uniform

    @staticmethod
    def backward(ctx, grad_nll, grad_uniform):
        logits, target, lse = ctx.saved_tensors
        V = logits.size(1)
        grad = logits if ctx.overwrite else torch.empty_like(logits)  # (N, V)
        for start in range(0, logits.size(0), CHUNK):
            rows = slice(start, start + CHUNK)
            g_n, g_u = grad_nll[rows, None], grad_uniform[rows, None]  # (n, 1)
            out = grad[rows]  # (n, V), a view: fp32 chunks are computed in place
            shifted = logits[rows].to(lse.dtype)  # read before out may overwrite it
            chunk = torch.sub(shifted, lse[rows, None], out=out if out.dtype == lse.dtype else None)
            chunk.exp_().mul_(g_n + g_u).sub_(g_u / V)  # d/dlogits of g_n * nll + g_u * uniform ...
            chunk.scatter_add_(1, target[rows, None], -g_n)  # ... minus g_n at the reference token
            if chunk is not out:
                out.copy_(chunk)  # bf16 logits: the fp32 chunk cast once
        return grad, None, None


def label_smoothed_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    epsilon: float,
    ignore_index: int = PAD_ID,
    overwrite_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss against the target smoothed towards the uniform distribution.

    The smoothed target puts ``1 - epsilon`` on the reference token and spreads
    ``epsilon`` evenly over all V tokens, so per token

        loss = (1 - epsilon) * -log p(y) + epsilon * mean_v(-log p(v)).

    Args:
        logits: (N, V) scores (any float dtype; the loss is computed in fp32);
            target: (N,) ids; positions equal to ``ignore_index`` (padding)
            contribute nothing.
        overwrite_logits: the backward pass writes the logits' gradient over the logits
            (for a caller that has no further use for them: training skips allocating
            and first touching a fresh (N, V) tensor each step).
    Returns:
        (loss, nll): fp32 sums over the kept positions of the smoothed loss and of
        the plain negative log-likelihood (for perplexity).
    """
    nll, uniform = TokenLosses.apply(logits, target, overwrite_logits)  # (N,), (N,)
    keep = target != ignore_index  # (N,)
    loss = (1.0 - epsilon) * nll + epsilon * uniform
    return loss[keep].sum(), nll[keep].sum()
