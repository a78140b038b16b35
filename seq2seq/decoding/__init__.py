"""Decoding: the searches (``greedy.py``, ``beam.py``, ``sampling.py``), all written against
``EncoderDecoder``'s step interface, what they share (``common.py``: hypotheses, length
limits, the length penalty) and the ``decoding.*`` options with their rules (``options.py``).

May import ``models`` and the leaf modules (``special``, ``errors``, ``settings``). Importing
the package does not import torch (``Hypothesis``, the length rules and the options serve the
CTranslate2 engine too); ``search`` loads the search it runs."""

from __future__ import annotations

from seq2seq.decoding.common import Hypothesis
from seq2seq.decoding.options import search_name


def search(model, src, src_lengths, cfg, generator=None) -> list[list[Hypothesis]]:
    """Decode a batch with the search ``cfg`` (a ``decoding`` config) selects
    (``seq2seq.decoding.options.search_name``).

    Args:
        src: (B, S) source ids; src_lengths: (B,).
        generator: the random draws of sampling.
    Returns:
        for each sentence, its hypotheses, best first.
    """
    lengths = {"max_len_a": cfg.max_len_a, "max_len_b": cfg.max_len_b}
    name = search_name(cfg)
    # Each search imports torch; importing this package must not (the CTranslate2 engine
    # uses ``Hypothesis``), so the search loads here, when it runs.
    if name == "sampling":
        from seq2seq.decoding.sampling import sample

        return sample(
            model, src, src_lengths, cfg.temperature, cfg.top_k, cfg.top_p, generator=generator, **lengths
        )
    if name == "greedy":
        from seq2seq.decoding.greedy import greedy_search

        return greedy_search(model, src, src_lengths, **lengths)
    from seq2seq.decoding.beam import beam_search

    return beam_search(
        model,
        src,
        src_lengths,
        cfg.beam_size,
        cfg.nbest,
        cfg.alpha,
        cfg.length_penalty,
        cfg.patience,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
        **lengths,
    )


__all__ = ["Hypothesis", "search"]
