"""Writing a transformers export: the stock model, its generation defaults, the tokenizer and
our metadata (``format.py`` lists the files)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

from seq2seq.data.tokenizer import file_sha256
from seq2seq.decoding.options import DecodingConfig, search_name
from seq2seq.inference.transformers.architecture import (
    PRE_NORM,
    hf_config,
    hf_state_dict,
    needs_transformers_5,
)
from seq2seq.inference.transformers.format import EXPORT_FORMAT, META, require_transformers
from seq2seq.inference.transformers.tokenizer import SOURCE_SPM, TARGET_SPM, write_tokenizer
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID


def generation_settings(decoding: dict, max_positions: int | None) -> tuple[dict, list[str]]:
    """The ``GenerationConfig`` of a checkpoint's ``decoding`` settings, and the settings that
    transformers has no field for (``key=value``).

    Greedy and beam search map one to one: ``beam_size`` -> ``num_beams``, ``alpha`` ->
    ``length_penalty`` (both divide the log-probability by length ** alpha, EOS counted),
    ``no_repeat_ngram_size``; sampling -> ``do_sample`` with ``temperature``, ``top_k``, ``top_p``.
    ``patience`` 1 stops a sentence once ``beam_size`` hypotheses finished, transformers'
    ``early_stopping=True``; 0 stops when no live beam can still win, ``early_stopping="never"``
    (whose bound uses ``max_length``, so it searches longer); transformers has no other patience,
    and keeps its own rule for them (``early_stopping=False``: stop when the best live beam, scored
    at its current length, cannot beat the worst finished one).
    Lengths: transformers has one ``max_length`` for every input, where seq2seq allows
    ``ceil(max_len_a * source length + max_len_b)`` tokens: the export allows what the model
    allows (``max_positions`` tokens after the decoder start) and lists max_len_a and max_len_b
    as not carried.
    """
    defaults = DecodingConfig()
    cfg = {**{k: getattr(defaults, k) for k in defaults.__dataclass_fields__}, **decoding}
    search = search_name(SimpleNamespace(**cfg))
    settings = {
        "decoder_start_token_id": BOS_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "forced_eos_token_id": EOS_ID,  # at the length limit the last token is EOS, as in seq2seq
        "max_length": (max_positions or 1024) + 1,
        "num_beams": 1,
        "do_sample": False,
    }
    dropped = [f"max_len_a={cfg['max_len_a']}", f"max_len_b={cfg['max_len_b']}"]
    if search == "beam":
        settings.update(num_beams=cfg["beam_size"], length_penalty=float(cfg["alpha"]))
        patience = cfg["patience"]
        settings["early_stopping"] = {0: "never", 1: True}.get(patience, False)
        if patience not in (0, 1):
            dropped.append(f"patience={patience}")
        if cfg["length_penalty"] != "power" and cfg["alpha"] > 0:
            dropped.append(f"length_penalty={cfg['length_penalty']}")
        if cfg["no_repeat_ngram_size"]:
            settings["no_repeat_ngram_size"] = cfg["no_repeat_ngram_size"]
        if cfg["nbest"] > 1:
            dropped.append(f"nbest={cfg['nbest']}")
    elif search == "sampling":
        settings.update(
            do_sample=True, temperature=cfg["temperature"], top_k=cfg["top_k"], top_p=cfg["top_p"]
        )
        if cfg.get("seed") is not None:
            dropped.append(f"seed={cfg['seed']}")
    return settings, dropped


def write_export(model, tokenizer, config: dict, folder: Path, source, decoding=None) -> dict:
    """Write a Transformer and its tokenizer into ``folder`` (created; it must not exist) as a
    folder transformers loads, with ``decoding`` (a ``decoding`` config or dict; default: the
    checkpoint's own) as its generation defaults. Returns the metadata written (``META``)."""
    transformers = require_transformers()
    name, kwargs = hf_config(model)  # refuses what has no stock equivalent
    config_class = transformers.PegasusConfig if name == PRE_NORM else transformers.MarianConfig
    logging.getLogger("transformers").setLevel(logging.ERROR)  # no notes on weights it initialises
    transformers.utils.logging.disable_progress_bar()
    hf = getattr(transformers, name)(config_class(**kwargs))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    if missing or unexpected:  # a transformers version whose names moved
        raise RuntimeError(
            f"{name} of transformers {transformers.__version__}: missing {missing}, unexpected {unexpected}"
        )
    decoding = config.get("decoding", {}) if decoding is None else decoding
    settings, dropped = generation_settings(dict(decoding), model.max_positions)
    hf.generation_config = transformers.GenerationConfig(**settings)
    folder.mkdir()
    hf.eval().save_pretrained(str(folder))
    for written in folder.iterdir():  # safetensors writes 0600; the others follow the umask
        written.chmod((folder / "config.json").stat().st_mode & 0o777)
    write_tokenizer(tokenizer, folder, model.max_positions)
    meta = {
        "format": EXPORT_FORMAT,
        "engine": "transformers",
        "architecture": name,
        "transformers_version": transformers.__version__,
        "needs_transformers_5": needs_transformers_5(model),
        "source": str(source),
        "max_positions": model.max_positions,
        "decoding_not_carried": dropped,
        "tokenizer": {
            "joint": tokenizer.joint,
            "sha256": {"src": file_sha256(folder / SOURCE_SPM), "tgt": file_sha256(folder / TARGET_SPM)},
        },
        "config": config,
    }
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta
