"""Ancestral sampling: draw every token from the model's (reshaped) distribution.

The distribution is reshaped in the usual order: divide the logits by the
temperature, keep the ``top_k`` most likely tokens, then keep the smallest set
of most likely tokens whose probability reaches ``top_p`` (nucleus sampling).

A hypothesis' ``log_prob`` (and ``score``) is the log-probability under the
model itself, i.e. of the plain log-softmax of the logits, not of the reshaped
distribution it was drawn from; that is the number comparable with greedy and
beam search. EOS and length limits work as in greedy search.
"""

from __future__ import annotations

import math

import torch

from seq2seq.decoding.common import DEFAULTS, Hypothesis, max_output_lengths
from seq2seq.models.base import EncoderDecoder
from seq2seq.special import BOS_ID, EOS_ID


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row (ties with the k-th kept too).

    Args:
        logits: (R, V). top_k: 0 turns the filter off.
    Returns:
        (R, V) logits, -inf outside the top k.
    """
    if top_k <= 0 or top_k >= logits.size(-1):
        return logits
    kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (R, 1)
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their mass reaches ``top_p``.

    The most likely token is always kept, so a tiny ``top_p`` means greedy.

    Args:
        logits: (R, V). top_p: 1.0 turns the filter off.
    Returns:
        (R, V) logits, -inf outside the nucleus.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (R, V), (R, V)
    probs = torch.softmax(sorted_logits, dim=-1)  # (R, V)
    mass_before = probs.cumsum(dim=-1) - probs  # (R, V) mass of the more likely tokens
    drop_sorted = mass_before >= top_p  # (R, V)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)  # (R, V) back to vocab order
    return logits.masked_fill(drop, -math.inf)


def sampling_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The distribution to draw the next token from.

    Args:
        logits: (R, V) float32 logits.
    Returns:
        (R, V) probabilities.
    """
    logits = logits / temperature
    logits = top_p_filter(top_k_filter(logits, top_k), top_p)
    return torch.softmax(logits, dim=-1)


@torch.inference_mode()
def sample(
    model: EncoderDecoder,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    temperature: float = DEFAULTS.temperature,
    top_k: int = DEFAULTS.top_k,
    top_p: float = DEFAULTS.top_p,
    max_len_a: float = DEFAULTS.max_len_a,
    max_len_b: int = DEFAULTS.max_len_b,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """Draw one translation per sentence.

    Finished sentences leave the batch (``reorder_state`` shrinks the state).
    The draws depend on the batch composition, so a sentence sampled alone and
    in a batch differ even with the same seed; the same batch and seed always
    give the same samples.

    Args:
        model: any ``EncoderDecoder``.
        src: (B, S) source ids; src_lengths: (B,).
        temperature: > 0; below 1 sharpens, above 1 flattens the distribution.
        top_k: sample among the k most likely tokens (0 = all).
        top_p: sample within the nucleus of mass top_p (1.0 = all).
        max_len_a, max_len_b: at most ``ceil(a * src_len + b)`` tokens, EOS counted.
        generator: a ``torch.Generator`` on the model's device, for reproducibility.
    Returns:
        for each sentence, a list holding its one ``Hypothesis``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device, batch_size = src.device, src.size(0)
    limits = max_output_lengths(src_lengths, max_len_a, max_len_b, model.max_positions).cpu()  # (B,)
    state = model.init_state(model.encode(src, src_lengths))
    alive = torch.arange(batch_size)  # (b,) original row of each live row (CPU)
    prev = torch.full((batch_size,), BOS_ID, dtype=torch.long, device=device)  # (b,)
    tokens = torch.empty(batch_size, 0, dtype=torch.long, device=device)  # (b, t)
    log_probs = torch.zeros(batch_size, dtype=torch.float64, device=device)  # (b,)
    results: list[list[Hypothesis]] = [[] for _ in range(batch_size)]

    for t in range(int(limits.max())):
        logits, state = model.step(prev, state)  # (b, V)
        logits = logits.float()
        probs = sampling_probs(logits, temperature, top_k, top_p)  # (b, V)
        next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (b,)
        at_limit = ((t + 1) >= limits[alive]).to(device)  # (b,) this token must be EOS
        next_tokens = next_tokens.masked_fill(at_limit, EOS_ID)
        step_lp = torch.log_softmax(logits, dim=-1)  # (b, V) the model's own log-probs
        log_probs = log_probs + step_lp.gather(1, next_tokens[:, None]).squeeze(1).double()

        done = next_tokens == EOS_ID  # (b,)
        done_cpu = done.cpu()
        for i, seq, lp in zip(
            alive[done_cpu].tolist(), tokens[done].tolist(), log_probs[done].tolist(), strict=True
        ):
            results[i].append(Hypothesis(seq, lp, lp))
        keep = (~done_cpu).nonzero().squeeze(1)  # (b',)
        if keep.numel() == 0:
            break
        if keep.numel() < alive.numel():
            keep_dev = keep.to(device)
            state = model.reorder_state(state, keep_dev)
            next_tokens, tokens, log_probs = next_tokens[keep_dev], tokens[keep_dev], log_probs[keep_dev]
            alive = alive[keep]
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)  # (b', t + 1)
        prev = next_tokens
    return results
