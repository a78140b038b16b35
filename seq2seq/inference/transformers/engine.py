"""Decoding a transformers export with ``generate()`` behind ``Translator``'s interface, so that
``scripts/bench_decode.py`` times it on the same sentences and batches as our engines.

The ``decoding.*`` keys map to ``generate()``'s options as the export's
``generation_config.json`` maps them (``convert.generation_settings``); the length limit of a
batch is the largest of its sentences' ``ceil(max_len_a * source length + max_len_b)``, since
``generate()`` takes one for the batch. Hypotheses carry the tokens only (score and
log-probability are NaN): their text is what the benchmark compares.
"""

from __future__ import annotations

import math
from pathlib import Path

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis
from seq2seq.decoding.common import max_output_length
from seq2seq.inference.transformers.format import read_export, require_transformers
from seq2seq.inference.transformers.tokenizer import SOURCE_SPM, TARGET_SPM
from seq2seq.inference.translator import Translator
from seq2seq.special import EOS_ID, PAD_ID


class TransformersTranslator(Translator):
    """A ``Translator`` that decodes with ``AutoModelForSeq2SeqLM.from_pretrained(folder)``.

    Args:
        folder: a transformers export (``export format=transformers``).
        decoding: a ``decoding`` config; device: where the model runs (``cpu``, ``cuda``).
    """

    def __init__(self, folder: str | Path, decoding, device: str = "cpu"):

        folder = Path(folder)
        self.meta = read_export(folder)
        transformers = require_transformers()
        super().__init__(
            Tokenizer(folder / SOURCE_SPM, folder / TARGET_SPM), decoding, self.meta["max_positions"]
        )
        self.model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(folder)).to(device).eval()
        self.device = device

    def generate_options(self, limit: int) -> dict:
        """``generate()``'s keyword arguments for a batch whose longest output may have ``limit``
        tokens (EOS included)."""
        # convert.py maps weights with torch; the generation settings come from it when asked.
        from seq2seq.inference.transformers.convert import generation_settings

        settings, _ = generation_settings(dict(self.cfg), self.max_positions)
        return {**settings, "max_length": limit + 1}  # the decoder start, then at most ``limit``

    def decode(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Hypotheses of one batch of source ids (each ending in EOS), one per sentence."""
        import torch

        cfg = self.cfg
        limit = max(max_output_length(len(r), cfg.max_len_a, cfg.max_len_b, self.max_positions) for r in ids)
        width = max(len(r) for r in ids)
        src = torch.tensor([r + [PAD_ID] * (width - len(r)) for r in ids], device=self.device)  # (B, S)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=src, attention_mask=(src != PAD_ID).long(), **self.generate_options(limit)
            )  # (B, 1 + T): the decoder start, then the output
        hyps = []
        for row in out[:, 1:].tolist():
            tokens = row[: row.index(EOS_ID)] if EOS_ID in row else row
            hyps.append([Hypothesis(tokens, math.nan, math.nan)])
        return hyps
