"""A model rebuilt from a checkpoint, with its tokenizer: for evaluation, translation and export."""

from __future__ import annotations

from pathlib import Path

from seq2seq import models
from seq2seq.checkpoints.format import load_checkpoint, run_dir_of
from seq2seq.data.tokenizer import Tokenizer, file_sha256, referenced_tokenizer
from seq2seq.errors import UserError


def load_tokenizer(ckpt: dict, path: Path) -> Tokenizer:
    """Find the tokenizer a checkpoint refers to (in its run directory) and check its hash."""
    return referenced_tokenizer(ckpt["tokenizer"], run_dir_of(path.resolve()), path)


def model_for_tokenizer(model_cfg, tokenizer: Tokenizer):
    """Instantiate the model of a config for the tokenizer's vocabularies."""
    return models.build_model(model_cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint)


def load_model(path: str | Path, device="cpu"):
    """Rebuild the model of a checkpoint. Returns (model in eval mode, tokenizer, config dict)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    tokenizer = load_tokenizer(ckpt, path)
    model = model_for_tokenizer(ckpt["config"]["model"], tokenizer)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(
            f"{path}: weights do not fit the model in its config ({str(e).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), tokenizer, ckpt["config"]


def load_models(paths: list[str | Path], device="cpu"):
    """Rebuild one checkpoint's model, or an ``Ensemble`` of several that share a tokenizer.
    Returns (model in eval mode, tokenizer, config dict of the first checkpoint)."""
    loaded = [load_model(path, device) for path in paths]
    model, tokenizer, config = loaded[0]
    if len(loaded) == 1:
        return model, tokenizer, config
    first = [file_sha256(tokenizer.src_path), file_sha256(tokenizer.tgt_path)]
    for path, (_, other, _) in zip(paths[1:], loaded[1:], strict=True):
        if [file_sha256(other.src_path), file_sha256(other.tgt_path)] != first:
            raise UserError(
                f"{path} and {paths[0]} were trained with different tokenizers; "
                "an ensemble needs models of one tokenizer"
            )
    return models.Ensemble([m for m, _, _ in loaded]).eval(), tokenizer, config
