"""The transformers export folder: what it holds, what marks it, and reading its metadata.

An export written with ``format=transformers`` is a folder that transformers loads as it is:

    config.json, model.safetensors      the model: a stock class (``architecture.py``), float32
    generation_config.json              the checkpoint's decoding defaults, where transformers
                                        has them (``convert.generation_settings``)
    source.spm, target.spm, vocab.json  the tokenizer: our SentencePiece model(s) as a
    (target_vocab.json), tokenizer_config.json   ``MarianTokenizer`` (``tokenizer.py``)
    seq2seq_transformers.json           META: export format, architecture, source checkpoint,
                                        tokenizer hashes and the training config

No torch and no transformers import here: the commands ask ``is_export`` before they load anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.errors import UserError

EXPORT_FORMAT = 1
META = "seq2seq_transformers.json"  # what marks a folder as a transformers export
MIN_VERSION = "5.25"  # the oldest transformers the export was verified with (pyproject.toml's extra)


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a transformers export (``export format=transformers``)."""
    return (Path(path) / META).is_file()


def require_transformers():
    """The ``transformers`` module, or one line saying how to install it."""
    try:
        import transformers  # optional (pip install 'seq2seq[hf]'), and slow to import
    except ImportError:
        raise UserError(
            f"transformers is not installed: pip install 'seq2seq[hf]' (transformers>={MIN_VERSION})"
        ) from None
    return transformers


def read_export(folder: Path) -> dict:
    """The metadata (``META``) of a transformers export, checked."""
    try:
        meta = json.loads((Path(folder) / META).read_text())
    except (OSError, ValueError):
        raise UserError(f"{Path(folder) / META}: unreadable; export the checkpoint again") from None
    if meta.get("format") != EXPORT_FORMAT:
        raise UserError(
            f"{folder}: transformers export format {meta.get('format')}, this seq2seq reads format "
            f"{EXPORT_FORMAT}; export the checkpoint again"
        )
    return meta
