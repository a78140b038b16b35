"""Decoding strategies, all written against ``EncoderDecoder``'s step interface."""

from __future__ import annotations

from seq2seq.decoding.common import Hypothesis
from seq2seq.decoding.greedy import greedy_search


def search(model, src, src_lengths, cfg, generator=None) -> list[list[Hypothesis]]:
    """Decode a batch with the strategy ``cfg`` (a ``decoding`` config) names.

    Args:
        src: (B, S) source ids; src_lengths: (B,).
    Returns:
        for each sentence, its hypotheses, best first.
    """
    lengths = {"max_len_a": cfg.max_len_a, "max_len_b": cfg.max_len_b}
    if cfg.sampling:
        from seq2seq.decoding.sampling import sample

        return sample(
            model, src, src_lengths, cfg.temperature, cfg.top_k, cfg.top_p, generator=generator, **lengths
        )
    if cfg.beam_size <= 1:
        return greedy_search(model, src, src_lengths, **lengths)
    from seq2seq.decoding.beam import beam_search

    return beam_search(
        model,
        src,
        src_lengths,
        cfg.beam_size,
        cfg.nbest,
        cfg.alpha,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
        **lengths,
    )


__all__ = ["Hypothesis", "greedy_search", "search"]
