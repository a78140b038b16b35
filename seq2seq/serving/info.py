"""What ``GET /v1/model`` says of the model being served."""

from __future__ import annotations

from pathlib import Path

import seq2seq
from seq2seq.cli.files import checkpoint_paths
from seq2seq.data.tokenizer import file_sha256
from seq2seq.inference.ctranslate2.format import is_export
from seq2seq.inference.translator import Translator
from seq2seq.serving.api import REQUEST_OPTIONS


def checkpoint_hash(path: str) -> str:
    """The sha256 of a checkpoint file, or of an export's ``model.bin``."""
    return file_sha256(Path(path) / "model.bin" if is_export(path) else path)


def languages(data: dict, translator: Translator) -> dict:
    """The model's languages: ``data.src_lang`` and ``tgt_lang``, or with ``data.corpora`` the
    lists of them, and ``tags`` (a multilingual model's target languages, one of which
    ``options.tgt_lang`` names; the server's ``tgt_lang`` is the default)."""
    corpora = data.get("corpora") or {}
    if not corpora:
        return {"source": data.get("src_lang"), "target": data.get("tgt_lang")}
    return {
        "source": sorted({e["src_lang"] for e in corpora.values()}),
        "target": sorted({e["tgt_lang"] for e in corpora.values()}),
        "tags": sorted(translator.tokenizer.target_tags),
        "default_target": translator.tgt_lang,
    }


def describe_model(translator: Translator, train_config: dict, cfg) -> dict:
    """Architecture, parameters, languages, engine, checkpoints and tokenizer with their
    sha256, the attention maps it can show, the decoding defaults and the request limits."""
    model = dict(train_config.get("model") or {})
    data = dict(train_config.get("data") or {})
    engine = translator.describe()
    members = engine.pop("members", None)
    architecture = str(model.get("_target_", "unknown")).rsplit(".", 1)[-1]
    grid = translator.attention_grid
    tok = translator.tokenizer
    return {
        "architecture": "Ensemble" if members else architecture,
        "members": members,
        "parameters": engine.pop("parameters", None),
        "languages": languages(data, translator),
        **engine,
        "checkpoints": [
            {"path": str(Path(p).resolve()), "sha256": checkpoint_hash(p)}
            for p in checkpoint_paths(cfg.checkpoint)
        ],
        "tokenizer": {
            "joint": tok.joint,
            **{
                role: {"file": tok.names[role], "sha256": tok.sha256[role], "pieces": pieces}
                for role, pieces in (("src", tok.src_vocab_size), ("tgt", tok.tgt_vocab_size))
            },
        },
        "max_positions": translator.max_positions,
        "attention": None if grid is None else {"layers": grid[0], "heads": grid[1]},
        "decoding": {k: v for k, v in dict(cfg.decoding).items()},
        "options": [*REQUEST_OPTIONS, "tgt_lang"],
        "limits": {
            "max_sentences": cfg.max_sentences,
            "max_chars": cfg.max_chars,
            "queue_size": cfg.queue_size,
            "max_wait_ms": cfg.max_wait_ms,
            "max_tokens": cfg.decoding.max_tokens,
        },
        "version": seq2seq.__version__,
    }
