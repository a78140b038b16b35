"""Greedy decoding: take the most likely token at every step."""

from __future__ import annotations

import torch

from seq2seq.decoding.common import DEFAULTS, Hypothesis, max_output_lengths
from seq2seq.models.base import EncoderDecoder
from seq2seq.special import BOS_ID, EOS_ID


@torch.inference_mode()
def greedy_search(
    model: EncoderDecoder,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len_a: float = DEFAULTS.max_len_a,
    max_len_b: int = DEFAULTS.max_len_b,
) -> list[list[Hypothesis]]:
    """Decode a batch greedily.

    Finished sentences leave the batch (``reorder_state`` shrinks the state),
    so the cost of a step follows the number of sentences still running.

    Args:
        model: any ``EncoderDecoder``.
        src: (B, S) source ids; src_lengths: (B,).
        max_len_a, max_len_b: a sentence stops after ``ceil(a * src_len + b)``
            tokens (EOS counted) if it has not produced EOS by then.
    Returns:
        for each sentence, a list holding its one ``Hypothesis``.
    """
    batch_size, device = src.size(0), src.device
    limits = max_output_lengths(src_lengths, max_len_a, max_len_b, model.max_positions).to(device)
    state = model.init_state(model.encode(src, src_lengths))
    alive = torch.arange(batch_size, device=device)  # (b,) original row of each live row
    prev = torch.full((batch_size,), BOS_ID, dtype=torch.long, device=device)  # (b,)
    tokens = torch.empty(batch_size, 0, dtype=torch.long, device=device)  # (b, t) tokens so far
    totals = torch.zeros(batch_size, dtype=torch.float64, device=device)  # (b,) summed log-probs
    hyps: list[list[Hypothesis]] = [[] for _ in range(batch_size)]

    for t in range(int(limits.max())):
        logits, state = model.step(prev, state)  # (b, V)
        step_lp = torch.log_softmax(logits.float(), dim=-1)  # (b, V)
        best_lp, best = step_lp.max(dim=-1)  # (b,), (b,)
        last = (t + 1) >= limits.index_select(0, alive)  # (b,) at the length limit: EOS
        best = torch.where(last, torch.full_like(best, EOS_ID), best)
        best_lp = torch.where(last, step_lp[:, EOS_ID], best_lp)
        totals = totals + best_lp.double()
        ended = best == EOS_ID  # (b,)
        if bool(ended.any()):
            for i in ended.nonzero().squeeze(1).tolist():
                total = float(totals[i])
                hyps[int(alive[i])] = [Hypothesis(tokens[i].tolist(), total, total)]
            keep = (~ended).nonzero().squeeze(1)  # (b',)
            if keep.numel() == 0:
                break
            state = model.reorder_state(state, keep)
            alive, best, tokens, totals = alive[keep], best[keep], tokens[keep], totals[keep]
        tokens = torch.cat([tokens, best[:, None]], dim=1)  # (b, t + 1)
        prev = best
    return hyps
