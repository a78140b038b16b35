"""A model rebuilt from a checkpoint, with its tokenizer: for evaluation, translation and export."""

from __future__ import annotations

from pathlib import Path

from seq2seq import models
from seq2seq.checkpoints.format import carried_models, load_checkpoint, run_dir_of
from seq2seq.data.tokenizer import Tokenizer, referenced_tokenizer
from seq2seq.errors import UserError


def load_tokenizer(ckpt: dict, path: Path) -> Tokenizer:
    """The tokenizer of a checkpoint: the models it carries (format 3), or else the files it
    refers to in its run directory (format 2); checked against its hashes either way."""
    entry = ckpt["tokenizer"]
    carried = carried_models(entry)
    if carried is not None:
        names = {role: Path(f).name for role, f in entry["files"].items()}
        return Tokenizer.from_bytes(carried, names, entry["sha256"], path)
    return referenced_tokenizer(entry, run_dir_of(Path(path).resolve()), path)


def model_for_tokenizer(model_cfg, tokenizer: Tokenizer):
    """Instantiate the model of a config for the tokenizer's vocabularies."""
    return models.build_model(model_cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint)


def load_weights(model, weights: dict, path) -> None:
    """Load a checkpoint's state_dict into ``model``, or one line naming ``path`` when they do not fit."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise UserError(
            f"{path}: weights do not fit the model in its config ({str(e).splitlines()[0]})"
        ) from None


def load_model(path: str | Path, device="cpu"):
    """Rebuild the model of a checkpoint. Returns (model in eval mode, tokenizer, config dict)."""
    model, tokenizer, ckpt = load_model_and_checkpoint(path, device)
    return model, tokenizer, ckpt["config"]


def load_model_and_checkpoint(path: str | Path, device="cpu"):
    """As ``load_model``, but returns the whole checkpoint dict in place of its config."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    tokenizer = load_tokenizer(ckpt, path)
    model = model_for_tokenizer(ckpt["config"]["model"], tokenizer)
    load_weights(model, ckpt["model"], path)
    return model.to(device).eval(), tokenizer, ckpt


def load_models(paths: list[str | Path], device="cpu"):
    """Rebuild one checkpoint's model, or an ``Ensemble`` of several that share a tokenizer.
    Returns (model in eval mode, tokenizer, config dict of the first checkpoint)."""
    loaded = [load_model(path, device) for path in paths]
    model, tokenizer, config = loaded[0]
    if len(loaded) == 1:
        return model, tokenizer, config
    for path, (_, other, _) in zip(paths[1:], loaded[1:], strict=True):
        if other.sha256 != tokenizer.sha256:
            raise UserError(
                f"{path} and {paths[0]} were trained with different tokenizers; "
                "an ensemble needs models of one tokenizer"
            )
    return models.Ensemble([m for m, _, _ in loaded]).eval(), tokenizer, config
