"""Validation during training: loss and perplexity under teacher forcing, and the
BLEU of the configured search (``decoding.*``, greedy by default) on the validation split."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import sacrebleu
import torch

from seq2seq.data.batching import token_batches
from seq2seq.data.collate import collate
from seq2seq.decoding import Hypothesis
from seq2seq.device import autocast
from seq2seq.special import EOS_ID
from seq2seq.training.loss import label_smoothed_cross_entropy

log = logging.getLogger("seq2seq.train")


@dataclass
class ValidSet:
    """The validation split as text and as ids (sources end in EOS, targets have neither BOS nor
    EOS; a multilingual model's sources start with the tag of ``tgt_lang``); ``direction``
    (``de-en``) names one of several, None the only one of a bilingual run."""

    src_lines: list[str]
    tgt_lines: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    direction: str | None = None
    tgt_lang: str | None = None

    @classmethod
    def encode(
        cls,
        tokenizer,
        src_lines: list[str],
        tgt_lines: list[str],
        limit: int | None,
        direction: str | None = None,
        tgt_lang: str | None = None,
    ) -> ValidSet:
        """Encode the split; with a ``limit`` (the model's longest sequence), longer pairs are
        cut to it for the loss, as the translator cuts the sources (a warning says how many)."""
        src, tgt = tokenizer.encode_src(src_lines), tokenizer.encode_tgt(tgt_lines)
        prefix = tokenizer.source_prefix(tgt_lang) if tgt_lang is not None else []
        if prefix:
            src = [prefix + s for s in src]
        if limit is not None:
            cut = sum(len(s) > limit or len(t) + 1 > limit for s, t in zip(src, tgt, strict=True))
            if cut:
                log.warning(
                    "validation: %d pairs longer than the model's limit of %d pieces are cut", cut, limit
                )
            src = [s if len(s) <= limit else s[: limit - 1] + [EOS_ID] for s in src]
            tgt = [t[: limit - 1] for t in tgt]
        return cls(src_lines, tgt_lines, src, tgt, direction, tgt_lang)


@dataclass
class Validation:
    """What one validation measured."""

    loss: float  # mean negative log-likelihood per target token
    ppl: float
    bleu: float  # sacreBLEU of ``texts`` against the references
    hypotheses: list[Hypothesis]  # the best hypothesis of each sentence
    texts: list[str]  # their detokenised text
    directions: dict[str, dict[str, float]] | None = None  # several: per direction, its loss, ppl, bleu


@torch.no_grad()
def validate(model, translator, valid: ValidSet, max_tokens: int, device, precision: str) -> Validation:
    """Score ``model`` on ``valid``: the loss over batches of ``max_tokens``, then BLEU of
    ``translator``'s output. The model is left in training mode."""
    model.eval()
    try:
        nll_sum, tokens = 0.0, 0
        lengths = [len(s) for s in valid.src_ids]
        for rows in token_batches(lengths, [len(t) for t in valid.tgt_ids], max_tokens):
            batch = collate([valid.src_ids[i] for i in rows], [valid.tgt_ids[i] for i in rows]).to(device)
            with autocast(device, precision):
                logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
            _, nll = label_smoothed_cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), 0.0)
            nll_sum, tokens = nll_sum + float(nll), tokens + batch.num_tgt_tokens
        best = [hyps[0] for hyps in translator.hypotheses(valid.src_lines)]
    finally:
        model.train()
    texts = [translator.tokenizer.decode_tgt(h.tokens) for h in best]
    loss = nll_sum / max(tokens, 1)
    bleu = sacrebleu.corpus_bleu(texts, [valid.tgt_lines]).score
    return Validation(loss, math.exp(min(loss, 50)), bleu, best, texts)


def validate_all(
    model, translator, valid: list[ValidSet], max_tokens: int, device, precision: str
) -> Validation:
    """``validate`` on the only validation set, or on each direction's: then ``bleu`` and
    ``loss`` are the means over the directions (what early stopping compares), ``ppl`` the
    exponential of that loss, ``directions`` each one's scores, and the hypotheses those of
    the first direction (for the samples)."""
    if len(valid) == 1 and valid[0].direction is None:
        return validate(model, translator, valid[0], max_tokens, device, precision)
    results = {}
    for one in valid:
        targeted = translator.with_target(one.tgt_lang) if one.tgt_lang is not None else translator
        results[one.direction] = validate(model, targeted, one, max_tokens, device, precision)
    first = results[valid[0].direction]
    loss = sum(r.loss for r in results.values()) / len(results)
    bleu = sum(r.bleu for r in results.values()) / len(results)
    directions = {d: {"loss": r.loss, "ppl": r.ppl, "bleu": r.bleu} for d, r in results.items()}
    return Validation(loss, math.exp(min(loss, 50)), bleu, first.hypotheses, first.texts, directions)
