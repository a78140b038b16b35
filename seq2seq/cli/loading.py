"""The translator that evaluate and translate ask for: a checkpoint, an ensemble or an export,
on the engine that ``engine=`` names (``auto``: CTranslate2 for an export, else torch)."""

from __future__ import annotations

from pathlib import Path

from seq2seq.checkpoints.lineage import ancestors
from seq2seq.cli.files import checkpoint_paths, refuse_exports, refuse_transformers_exports
from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import is_export, read_export


def make_translator(cfg, target_required: bool = True):
    """Load ``cfg.checkpoint`` (one checkpoint, several as an ensemble, or a CTranslate2
    export) and wrap it in a translator for ``cfg.decoding`` on ``cfg.engine``, into
    ``cfg.tgt_lang`` (required by a multilingual model unless not ``target_required``, a
    server's, whose requests may name theirs; refused by a bilingual one).
    Returns (translator, the training config)."""
    paths = checkpoint_paths(cfg.checkpoint)
    refuse_transformers_exports(paths)
    engine = cfg.engine
    if engine == "auto":
        engine = "ctranslate2" if len(paths) == 1 and is_export(paths[0]) else "torch"
    if engine == "ctranslate2":
        if len(paths) > 1:
            raise UserError(
                f"checkpoint={cfg.checkpoint}: CTranslate2 runs one model; an ensemble runs on engine=torch"
            )
        # CTranslate2 is an optional dependency, imported only when it runs.
        from seq2seq.inference.ctranslate2.engine import ctranslate2_translator

        translator, train_cfg = ctranslate2_translator(
            paths[0], cfg.decoding, cfg.device, cfg.precision, cfg.num_threads
        )
        return _targeted(translator, cfg.tgt_lang, target_required), train_cfg

    refuse_exports(paths)
    # torch loads only here: translating an export never starts it (about 2 s).
    from seq2seq.checkpoints.loading import load_models
    from seq2seq.device import pick_device, pick_precision, set_threads
    from seq2seq.inference.torch_engine import TorchTranslator

    set_threads(cfg.num_threads)
    device = pick_device(cfg.device, "device")
    precision = pick_precision(cfg.precision, device, "precision", train=False)
    model, tokenizer, train_cfg = load_models(paths, device)
    translator = TorchTranslator(model, tokenizer, cfg.decoding, device, precision)
    return _targeted(translator, cfg.tgt_lang, target_required), train_cfg


def _targeted(translator, tgt_lang: str | None, required: bool):
    """``translator`` into ``tgt_lang``; left as it is when none is given and none is required."""
    return translator if tgt_lang is None and not required else translator.with_target(tgt_lang)


def lineages(value: str) -> dict[str, list[dict]]:
    """For each checkpoint (or export) of ``checkpoint=``, the chain of parents its weights
    were fine-tuned from, nearest first (``checkpoints/lineage.py``); [] for a model trained
    from random weights. An export's is its checkpoint's, read without torch."""
    found = {}
    for path in checkpoint_paths(value):
        if is_export(path):
            parent = read_export(Path(path)).get("parent")
        else:
            from seq2seq.checkpoints.format import load_checkpoint  # torch: checkpoints only

            parent = load_checkpoint(path).get("parent")
        found[path] = ancestors(parent)
    return found
