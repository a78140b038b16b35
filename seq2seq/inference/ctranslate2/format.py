"""The export folder: what marks it, what it holds, and reading its ``seq2seq.json``.

An export (``python -m seq2seq.export``) is a folder that CTranslate2 loads as it
is, plus what seq2seq needs beside it:

    model.bin, config.json, shared_vocabulary.json   CTranslate2's model (or
                                                     source_/target_vocabulary.json)
    tokenizer/spm.model                              the SentencePiece model(s) (or src.model, tgt.model)
    seq2seq.json                                     format, quantization, the tokenizer's
                                                     reference and hashes, the training config,
                                                     the checkpoint's parent (its lineage)
    vmap.txt                                         with export vmap=true: the vocabulary map
                                                     (``vocab_map.py``), used when present

No torch and no CTranslate2 import here: commands ask ``is_export`` before they
choose an engine.
"""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.errors import UserError

EXPORT_FORMAT = 1


EXPORT_META = "seq2seq.json"  # what marks a folder as an export


VMAP_FILE = "vmap.txt"  # the name CTranslate2 gives a vocabulary map in a model folder


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a CTranslate2 export (``python -m seq2seq.export``), not a checkpoint."""
    return (Path(path) / EXPORT_META).is_file()


def require_ctranslate2():
    """The ``ctranslate2`` module, or one line saying how to install it."""
    try:
        import ctranslate2  # CTranslate2 is optional (pip install 'seq2seq[serve]')
    except ImportError:
        raise UserError(
            "CTranslate2 is not installed: pip install 'seq2seq[serve]' (make install does it)"
        ) from None
    return ctranslate2


def read_export(folder: Path) -> dict:
    """The ``seq2seq.json`` of an export, checked."""
    try:
        meta = json.loads((folder / EXPORT_META).read_text())
    except (OSError, ValueError):
        raise UserError(f"{folder / EXPORT_META}: unreadable; export the checkpoint again") from None
    if meta.get("format") != EXPORT_FORMAT:
        raise UserError(
            f"{folder}: export format {meta.get('format')}, this seq2seq reads format {EXPORT_FORMAT}; "
            "export the checkpoint again"
        )
    return meta


def has_vmap(folder: Path) -> bool:
    """Whether an export folder holds a vocabulary map (``export vmap=true``), which decoding uses."""
    return (Path(folder) / VMAP_FILE).is_file()
