"""Writing an export: a Transformer converted to a CTranslate2 model, with its tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.checkpoints.format import TOKENIZER
from seq2seq.data.tokenizer import Tokenizer, tokenizer_reference
from seq2seq.inference.ctranslate2.format import EXPORT_FORMAT, EXPORT_META, require_ctranslate2
from seq2seq.inference.ctranslate2.spec import transformer_spec


def write_export(
    model, tokenizer: Tokenizer, config: dict, folder: Path, quantization: str, source, parent=None
) -> None:
    """Write a Transformer and its tokenizer as an export into ``folder`` (which must not exist);
    ``parent``: the checkpoint's parent record (``checkpoints/lineage.py``), kept in ``seq2seq.json``."""

    spec = transformer_spec(
        model,
        tokenizer.src_pieces(range(tokenizer.src_vocab_size)),
        tokenizer.tgt_pieces(range(tokenizer.tgt_vocab_size)),
    )
    save_spec(spec, folder, quantization)
    copied = tokenizer.copy_to(folder / TOKENIZER)
    meta = {
        "format": EXPORT_FORMAT,
        "engine": "ctranslate2",
        "quantization": quantization,
        "source": str(source),
        "max_positions": model.max_positions,
        "parameters": sum(p.numel() for p in model.parameters()),  # a tied matrix counts once
        "tokenizer": tokenizer_reference(copied, folder),
        "config": config,
        "parent": parent,
    }
    (folder / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n")


def save_spec(spec, folder: Path, quantization: str) -> None:
    """Validate, quantize and write a CTranslate2 model spec into ``folder`` (created; it must not exist)."""
    require_ctranslate2()
    from ctranslate2.converters.converter import Converter  # CTranslate2 is optional

    class SpecConverter(Converter):
        def _load(self):
            return spec

    SpecConverter().convert(str(folder), quantization=quantization)
