"""Saving and loading checkpoints: atomic writes, safe loads, a model back from a file."""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seq2seq import __version__
from seq2seq.data.tokenizer import Tokenizer, file_sha256
from seq2seq.errors import UserError

FORMAT = 1  # bumped when the checkpoint layout changes


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write ``payload`` to a temporary file, flush it to disk, then rename it
    over ``path``: a crash at any moment leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"{path}: could not save the checkpoint ({e.strerror}); the previous one is kept"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def link_checkpoint(src: Path, dst: Path) -> None:
    """Make ``dst`` name the same file as ``src`` (a hard link, or a copy where links
    are not supported), replacing ``dst`` atomically."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_training_checkpoint(payload: dict, ckpt_dir: Path, best: bool, keep_last: int) -> None:
    """Write ``last.pt``; link it as ``best.pt`` on a new best and as
    ``step_<N>.pt`` when ``keep_last`` > 0, keeping only the newest ``keep_last``."""
    last = ckpt_dir / "last.pt"
    save_checkpoint(payload, last)
    if best:
        link_checkpoint(last, ckpt_dir / "best.pt")
    if keep_last > 0:
        link_checkpoint(last, ckpt_dir / f"step_{payload['progress']['step']:07d}.pt")
        for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep_last]:
            old.unlink()


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only,
    so a file that carries pickled code is refused and nothing is executed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; pass checkpoint=RUN_DIR/checkpoints/best.pt")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a seq2seq checkpoint, or a truncated one")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused, it holds Python objects that are not plain data") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError):
        raise UserError(f"{path}: not a seq2seq checkpoint, or a truncated one") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path}: not a seq2seq checkpoint (no model or config inside)")
    if ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path}: checkpoint format {ckpt.get('format')} (seq2seq {ckpt.get('version', '?')}) "
            f"cannot be read by seq2seq {__version__}, which reads format {FORMAT}"
        )
    return ckpt


def tokenizer_reference(tokenizer: Tokenizer, run_dir: Path) -> dict:
    """What a checkpoint stores about its tokenizer: files relative to the run directory and hashes."""
    files = {
        role: str(p.relative_to(run_dir))
        for role, p in (("src", tokenizer.src_path), ("tgt", tokenizer.tgt_path))
    }
    return {"files": files, "sha256": {role: file_sha256(run_dir / f) for role, f in files.items()}}


def load_tokenizer(ckpt: dict, path: Path) -> Tokenizer:
    """Find the tokenizer a checkpoint refers to (in its run directory) and check its hash."""
    ref = ckpt["tokenizer"]
    run_dir = path.resolve().parent.parent
    files = {role: run_dir / f for role, f in ref["files"].items()}
    for role, f in files.items():
        if not f.is_file():
            raise UserError(
                f"{f}: tokenizer of checkpoint {path} is missing; restore the run directory's tokenizer/"
            )
        if file_sha256(f) != ref["sha256"][role]:
            raise UserError(
                f"{f}: this is not the tokenizer checkpoint {path} was trained with (hash differs)"
            )
    return Tokenizer(files["src"], files["tgt"])


def build_model(model_cfg, tokenizer: Tokenizer):
    """Instantiate the model of a config for the tokenizer's vocabularies."""
    cfg = OmegaConf.create(model_cfg) if isinstance(model_cfg, dict) else model_cfg
    try:
        return instantiate(
            cfg,
            src_vocab_size=tokenizer.src_vocab_size,
            tgt_vocab_size=tokenizer.tgt_vocab_size,
            shared_vocab=tokenizer.joint,
        )
    except InstantiationException as e:
        cause = e.__cause__ or e
        message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise UserError(f"model: {message}; check the model.* keys against configs/model/") from None


def load_model(path: str | Path, device="cpu"):
    """Rebuild the model of a checkpoint. Returns (model in eval mode, tokenizer, config dict)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    tokenizer = load_tokenizer(ckpt, path)
    model = build_model(ckpt["config"]["model"], tokenizer)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(
            f"{path}: weights do not fit the model in its config ({str(e).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), tokenizer, ckpt["config"]
