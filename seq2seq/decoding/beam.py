"""Beam search: keep the ``K`` most likely partial translations of every sentence.

All sentences of a batch are searched at once: the decoder runs on ``B * K``
rows (row ``j * K + k`` is beam ``k`` of sentence ``j``), and each step picks the
best continuations of a sentence among its ``K * V`` candidates (a top-k per
beam, then one over the sentence's ``K * 2K`` survivors).
The first step runs one row per sentence, since all its beams would start from
the same BOS; its K best continuations become the K beams.

Scoring
    The log-probability of a hypothesis is the sum of its token log-probabilities
    (log-softmax computed in float32), the final EOS included. Finished
    hypotheses are ranked by

        score = log_prob / length_penalty(len(tokens), alpha, kind)

    where, with L = len(tokens) + 1 (the EOS counted), ``kind`` is ``gnmt``,
    ((5 + L) / 6) ** alpha, or ``power``, L ** alpha (CTranslate2's); ``alpha = 0``
    ranks by raw log-prob.

Finishing
    Each step takes the ``2K`` best candidates of a sentence. EOS candidates among
    the first ``K`` become finished hypotheses; the first ``K`` candidates that
    are not EOS are the live beams of the next step (so the beam never shrinks).
    At a sentence's length limit only EOS is allowed, so every beam finishes.

Stopping
    A sentence is done when it reaches its length limit, when ``patience > 0``
    and round(K * patience) of its hypotheses have finished (the rule of
    fairseq and CTranslate2 at patience 1: fast, but a longer hypothesis that
    would have won under the length penalty may never be reached), or when it
    holds ``nbest`` finished hypotheses and no live beam can beat the worst of them:
    a live beam's log-prob ``lp <= 0`` can only fall, so the best score it can
    still reach is ``lp / max(penalty)`` over the lengths it can still end at
    (one more token than it has, up to the limit; for ``alpha >= 0`` the
    largest penalty is the one at the limit). Ties count as "cannot beat".
    Done sentences leave the batch through ``reorder_state``.
"""

from __future__ import annotations

import math

import torch

from seq2seq.decoding.common import DEFAULTS, Hypothesis, length_penalty, max_output_lengths
from seq2seq.decoding.options import patience_limit
from seq2seq.models.base import EncoderDecoder
from seq2seq.special import BOS_ID, EOS_ID


def block_repeated_ngrams(scores: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid tokens that would complete an n-gram already present in a row.

    Args:
        scores: (R, V) next-token scores (beam search passes the logits, so the
            allowed tokens' probabilities are renormalised, as in CTranslate2).
        tokens: (R, t) tokens generated so far (without BOS).
        n: n-gram size (> 0).
    Returns:
        (R, V) scores with the forbidden entries set to -inf.
    """
    num_rows, t = tokens.shape
    if t < n:  # no complete n-gram yet, nothing can repeat
        return scores
    windows = tokens.unfold(1, n, 1)  # (R, t - n + 1, n) every n-gram so far
    last = tokens[:, t - n + 1 :]  # (R, n - 1) the prefix the next token extends
    match = (windows[:, :, :-1] == last[:, None, :]).all(dim=-1)  # (R, t - n + 1)
    vocab_size = scores.size(-1)
    # Non-matching n-grams point at a spare column so every write is True.
    banned_ids = torch.where(match, windows[:, :, -1], vocab_size)  # (R, t - n + 1)
    banned = torch.zeros(num_rows, vocab_size + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, banned_ids, True)  # (R, V + 1)
    return scores.masked_fill(banned[:, :vocab_size], -math.inf)


def force_eos(log_probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Leave only EOS possible in the selected rows.

    Args:
        log_probs: (R, V); rows: (R,) bool, the rows that must end now.
    Returns:
        (R, V) log-probabilities, -inf everywhere but EOS in the selected rows.
    """
    eos_only = torch.full_like(log_probs, -math.inf)
    eos_only[:, EOS_ID] = log_probs[:, EOS_ID]
    return torch.where(rows[:, None], eos_only, log_probs)


def topk_rows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(k, dim=-1)`` for a wide ``x``, looking only inside the best blocks.

    Each row is cut into blocks of equal width. The k largest values of a row
    all lie in the k blocks with the largest maxima (any other block has k
    blocks at least as large in front of it), so one cheap max per block, a
    top-k over the block maxima and a top-k over k blocks replace a top-k over
    the whole row. The values equal ``x.topk``'s; among tied values the indices
    may differ. Widths with no divisor between 16 and 64, or fewer than 4k
    blocks, use ``x.topk``.

    Args:
        x: (R, V) contiguous scores; k: how many to keep (k <= V).
    Returns:
        values, indices: (R, k) each, largest first.
    """
    rows, width = x.shape
    block = next((d for d in range(64, 15, -1) if width % d == 0), None)
    if block is None or width // block < 4 * k:  # no even split, or too few blocks to save anything
        return x.topk(k, dim=-1)
    blocks = x.view(rows, width // block, block)  # (R, nb, block)
    best = blocks.amax(dim=-1).topk(k, dim=-1).indices  # (R, k) the blocks holding the k largest
    cand = blocks.gather(1, best[:, :, None].expand(rows, k, block))  # (R, k, block)
    values, pos = cand.view(rows, k * block).topk(k, dim=-1)  # (R, k)
    ids = best.gather(1, pos // block) * block + pos % block  # (R, k) columns of x
    return values, ids


def top_candidates(scores: torch.Tensor, log_probs: torch.Tensor, num: int):
    """The ``num`` best one-token extensions of every sentence's beams.

    Args:
        scores: (b, W) log-probs of each sentence's W live beams (-inf for dead beams).
        log_probs: (b * W, V) next-token log-probabilities of each beam.
        num: how many candidates to keep per sentence.
    Returns:
        cand_scores, cand_beams, cand_tokens: (b, num) each, best first; the
        total log-prob, the beam (0..W-1) extended and the token appended.
    """
    b, w = scores.shape
    n = min(num, log_probs.size(-1))
    # A sentence's best candidates are among each beam's own n best tokens, and a
    # beam's order of tokens does not depend on its score: two small top-k's.
    row_lp, row_tokens = topk_rows(log_probs, n)  # (b * W, n)
    total = (scores.reshape(b * w, 1) + row_lp).view(b, w * n)  # (b, W * n)
    cand_scores, flat = total.topk(min(num, w * n), dim=-1)  # (b, num)
    return cand_scores, flat // n, row_tokens.view(b, w * n).gather(1, flat)


def first_non_eos(cand_scores, cand_beams, cand_tokens, k: int):
    """The ``k`` best candidates that do not end in EOS: the next live beams.

    Args:
        cand_*: (b, 2K) candidates, best first.
    Returns:
        scores, beams, tokens: (b, K) each.
    """
    is_eos = (cand_tokens == EOS_ID).to(torch.uint8)  # (b, 2K)
    order = is_eos.sort(dim=-1, stable=True).indices[:, :k]  # (b, K) non-EOS first, rank kept
    scores = cand_scores.gather(1, order)
    tokens = cand_tokens.gather(1, order)
    scores = scores.masked_fill(tokens == EOS_ID, -math.inf)  # only if fewer than K were non-EOS
    return scores, cand_beams.gather(1, order), tokens


def collect_finished(cands, tokens, alive, k: int, nbest: int, penalty, finished) -> set[int]:
    """Move the EOS candidates among each sentence's top ``K`` into ``finished``.

    Args:
        cands: (cand_scores, cand_beams, cand_tokens), each (b, 2K), best first.
        tokens: (b * W, t) tokens of the W beams of each sentence before this step.
        alive: (b,) original sentence index of each row of ``cands``.
        finished: per original sentence, hypotheses best first; at most
            ``nbest`` are kept.
    Returns:
        the original index of the sentence of every new hypothesis (repeated when
        a sentence received several).
    """
    cand_scores, cand_beams, cand_tokens = (c[:, :k] for c in cands)  # (b, K) each
    is_final = (cand_tokens == EOS_ID) & torch.isfinite(cand_scores)  # (b, K)
    if not bool(is_final.any()):
        return []
    sent_idx, cand_idx = is_final.nonzero(as_tuple=True)  # (E,), (E,)
    width = tokens.size(0) // cand_scores.size(0)  # W beams per sentence
    rows = sent_idx * width + cand_beams[sent_idx, cand_idx]  # (E,)
    sentences = alive[sent_idx.cpu()].tolist()
    seqs = tokens[rows].tolist()
    log_probs = cand_scores[sent_idx, cand_idx].tolist()
    for sent, seq, lp in zip(sentences, seqs, log_probs, strict=True):
        hyps = finished[sent]
        hyps.append(Hypothesis(seq, lp / penalty(len(seq)), lp))
        hyps.sort(key=lambda h: -h.score)  # stable: on a tie the earlier one stays first
        del hyps[nbest:]
    return sentences


@torch.inference_mode()
def beam_search(
    model: EncoderDecoder,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    beam_size: int,
    nbest: int = DEFAULTS.nbest,
    alpha: float = DEFAULTS.alpha,
    kind: str = DEFAULTS.length_penalty,
    patience: float = DEFAULTS.patience,
    max_len_a: float = DEFAULTS.max_len_a,
    max_len_b: int = DEFAULTS.max_len_b,
    no_repeat_ngram_size: int = DEFAULTS.no_repeat_ngram_size,
) -> list[list[Hypothesis]]:
    """Decode a batch with beam search (scoring and stopping rules: module docstring).

    Args:
        model: any ``EncoderDecoder``.
        src: (B, S) source ids; src_lengths: (B,).
        beam_size: K, live hypotheses per sentence.
        nbest: hypotheses returned per sentence (1 <= nbest <= K).
        alpha: length-penalty exponent; 0 ranks by plain log-prob.
        kind: the length penalty, ``gnmt`` or ``power`` (``common.length_penalty``).
        patience: 0, or stop a sentence once round(K * patience) hypotheses finished.
        max_len_a, max_len_b: at most ``ceil(a * src_len + b)`` tokens, EOS counted.
        no_repeat_ngram_size: if n > 0, no hypothesis repeats an n-gram.
    Returns:
        for each sentence, up to ``nbest`` hypotheses, best score first (fewer
        only when fewer distinct finite-probability hypotheses exist).
    """
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"need 1 <= nbest <= beam_size, got nbest={nbest}, beam_size={beam_size}")
    enough = patience_limit(beam_size, patience)
    if nbest > enough:
        raise ValueError(f"need nbest <= round(beam_size * patience) = {enough}, got nbest={nbest}")
    device, batch_size, k = src.device, src.size(0), beam_size
    limits = max_output_lengths(src_lengths, max_len_a, max_len_b, model.max_positions).cpu()  # (B,)

    def penalty(n):
        return length_penalty(n, alpha, kind)

    max_penalty = penalty(limits - 1)  # (B,) float64, penalty at the length limit (EOS last)

    # The first step runs one row per sentence (all its beams would start alike);
    # its best K continuations become the K beams. W below is the beams per sentence.
    state = model.init_state(model.encode(src, src_lengths))
    alive = torch.arange(batch_size)  # (b,) original sentence of each live sentence (CPU)
    scores = torch.zeros(batch_size, 1, device=device)  # (b, W) log-probs of the live beams
    tokens = torch.empty(batch_size, 0, dtype=torch.long, device=device)  # (b * W, t)
    prev = torch.full((batch_size,), BOS_ID, dtype=torch.long, device=device)  # (b * W,)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    threshold = torch.full((batch_size,), -math.inf, dtype=torch.float64)  # (B,) nbest-th score
    count = torch.zeros(batch_size, dtype=torch.long)  # (B,) hypotheses finished so far

    for t in range(int(limits.max())):
        width = scores.size(1)  # W
        logits, state = model.step(prev, state)  # (b * W, V)
        logits = logits.float()
        if no_repeat_ngram_size > 0:  # banned before the softmax: the rest share the mass
            logits = block_repeated_ngrams(logits, tokens, no_repeat_ngram_size)
        log_probs = torch.log_softmax(logits, dim=-1)  # (b * W, V)
        at_limit = (t + 1) >= limits[alive]  # (b,) this token must be EOS
        if at_limit.any():
            log_probs = force_eos(log_probs, at_limit.to(device).repeat_interleave(width))

        cands = top_candidates(scores, log_probs, 2 * k)  # 3 x (b, 2K)
        new_events = collect_finished(cands, tokens, alive, k, nbest, penalty, finished)
        if new_events:
            count += torch.bincount(torch.tensor(new_events, dtype=torch.long), minlength=batch_size)
        for sent in set(new_events):
            if len(finished[sent]) == nbest:
                threshold[sent] = finished[sent][-1].score
        scores, beams, next_tokens = first_non_eos(*cands, k)  # (b, K) each

        # Best score any live beam can still reach (see the module docstring).
        reachable = max_penalty[alive].clamp(min=penalty(t + 1))  # (b,) largest reachable
        bound = scores.max(dim=-1).values.cpu().double() / reachable  # (b,)
        done = at_limit | (bound <= threshold[alive]) | (count[alive] >= enough)  # (b,)
        keep = (~done).nonzero().squeeze(1)  # (b',) CPU
        if keep.numel() == 0:
            break
        keep_dev = keep.to(device)
        rows = (keep_dev[:, None] * width + beams[keep_dev]).view(-1)  # (b' * K,) rows to extend
        state = model.reorder_state(state, rows)
        prev = next_tokens[keep_dev].view(-1)  # (b' * K,)
        tokens = torch.cat([tokens[rows], prev[:, None]], dim=1)  # (b' * K, t + 1)
        scores, alive = scores[keep_dev], alive[keep]
    return finished
