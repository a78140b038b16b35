"""Averaging checkpoints: the mean of the weights of several checkpoints of one model."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq import __version__
from seq2seq.checkpoints.format import FORMAT, carried_models, carry_tokenizer, load_checkpoint
from seq2seq.checkpoints.loading import load_tokenizer
from seq2seq.errors import UserError


def average_checkpoints(paths: list[Path]) -> dict:
    """A checkpoint whose weights are the mean of the checkpoints ``paths`` (of one model
    and tokenizer), with the first one's config, tokenizer and parent: it evaluates,
    translates, exports and fine-tunes like any other, but holds no training state to
    resume. It carries its tokenizer (read from the run directory for format-2 inputs), so
    it may be written anywhere."""
    first = load_checkpoint(paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["model"].items()}
    for path in paths[1:]:
        ckpt = load_checkpoint(path)
        if ckpt["config"]["model"] != first["config"]["model"] or ckpt["model"].keys() != total.keys():
            raise UserError(f"{path} and {paths[0]} are different models (model.* settings differ)")
        if ckpt["tokenizer"]["sha256"] != first["tokenizer"]["sha256"]:
            raise UserError(f"{path} and {paths[0]} were trained with different tokenizers")
        for k, v in ckpt["model"].items():
            if v.is_floating_point():
                total[k] += v.double()
            elif not torch.equal(v, total[k]):
                raise UserError(f"{path} and {paths[0]}: {k} differs and cannot be averaged")
    weights = {
        k: (v / len(paths)).to(first["model"][k].dtype) if v.is_floating_point() else v
        for k, v in total.items()
    }
    tokenizer = first["tokenizer"]
    if carried_models(tokenizer) is None:  # format 2: its run directory's files, hash-checked
        tokenizer = carry_tokenizer(tokenizer, load_tokenizer(first, paths[0]))
    return {
        "format": FORMAT,
        "version": __version__,
        "model": weights,
        "config": first["config"],
        "tokenizer": tokenizer,
        "averaged": [str(p) for p in paths],
        "parent": first.get("parent"),
    }
