"""The torch engine: a ``Translator`` whose batches a seq2seq model decodes with the
searches of ``seq2seq/decoding`` (one model, or an ensemble)."""

from __future__ import annotations

import torch

from seq2seq.data.collate import collate
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis, search
from seq2seq.device import autocast
from seq2seq.inference.translator import Translator


class TorchTranslator(Translator):
    """A ``Translator`` that decodes with ``model`` on ``device``.

    Args:
        model: an ``EncoderDecoder`` (or an ``Ensemble``) in eval mode.
        tokenizer, decoding: as for ``Translator``.
        device: where the model is; precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).

    Sampling draws from a generator seeded with ``decoding.seed`` (a fresh random
    seed when it is null).
    """

    def __init__(self, model, tokenizer: Tokenizer, decoding, device, precision: str = "fp32"):
        super().__init__(tokenizer, decoding, model.max_positions)
        self.model = model
        self.device, self.precision = torch.device(device), precision
        self.generator = torch.Generator(self.device)
        seed = decoding.get("seed")
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    @torch.no_grad()
    def decode(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Hypotheses of one batch of source ids (each ending in EOS), best first."""
        batch = collate(ids).to(self.device)
        with autocast(self.device, self.precision):
            return search(self.model, batch.src, batch.src_lengths, self.cfg, self.generator)
