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
        self.generator = self.new_generator(decoding)

    def new_generator(self, decoding) -> torch.Generator:
        """A generator seeded with ``decoding.seed``, or with a fresh random seed when it is null."""
        generator = torch.Generator(self.device)
        seed = decoding.get("seed")
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def with_decoding(self, decoding) -> TorchTranslator:
        """This translator with other decoding settings, sharing the model; the draws of
        sampling start from ``decoding.seed`` (a fresh seed when null)."""
        other = super().with_decoding(decoding)
        other.generator = self.new_generator(decoding)
        return other

    @property
    def attention_grid(self) -> tuple[int, int] | None:
        return self.model.attention_grid

    @torch.no_grad()
    def attention(self, src_ids, out_ids, layer=None, head=None):
        """The model's teacher-forced cross-attention over its own output (``Translator.attention``)."""
        if not src_ids or self.attention_grid is None:
            return None if self.attention_grid is None else []
        batch = collate(src_ids, out_ids).to(self.device)
        weights = self.model.attention(batch.src, batch.src_lengths, batch.tgt_in, layer, head)  # (B, T, S)
        if weights is None:
            return None
        return [
            weights[i, : len(out) + 1, : len(src)].float().cpu().tolist()
            for i, (src, out) in enumerate(zip(src_ids, out_ids, strict=True))
        ]

    def describe(self) -> dict:
        """``engine``: torch, ``parameters``: the model's weights (shared ones once), ``device``,
        and for an ensemble its ``members``' classes."""
        parameters = sum(p.numel() for p in self.model.parameters())  # a tied matrix counts once
        info = {"engine": "torch", "parameters": parameters, "device": str(self.device)}
        members = getattr(self.model, "members", None)  # an ensemble's models
        if members is not None:
            info["members"] = [type(m).__name__ for m in members]
        return info

    @torch.no_grad()
    def decode(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Hypotheses of one batch of source ids (each ending in EOS), best first."""
        batch = collate(ids).to(self.device)
        with autocast(self.device, self.precision):
            return search(self.model, batch.src, batch.src_lengths, self.cfg, self.generator)
