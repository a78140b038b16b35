"""Checkpoints: the one place that knows their layout.

A checkpoint is a ``torch.save`` of a plain dict (tensors, numbers, strings), so it
loads with ``weights_only=True``:

    format      FORMAT, the layout version; older layouts are upgraded on load
    version     the seq2seq version that wrote it
    model       the model's state_dict
    config      the run's resolved config as a plain dict (``config["model"]`` rebuilds the model)
    tokenizer   {"files": {"src": path, "tgt": path}, "sha256": {...}}, paths relative to the run directory
    optimizer, scheduler, scaler   their state_dicts (training checkpoints)
    progress    the trainer's ``Progress`` as a dict
    rng         one random state per training process, in rank order: {"torch": ..., "cuda": ...}
    data        {"key": the prepared corpus it trained on (``seq2seq/data/prepare.py``), "pairs": N}
    averaged    the checkpoints whose mean it holds (``average_checkpoints``; no training state then)

``Checkpointer`` writes and reads a run directory's training checkpoints;
``load_model`` rebuilds a model from any checkpoint for evaluation and translation,
``load_models`` an ensemble of several.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from seq2seq import __version__, models
from seq2seq.ctranslate2_engine import is_export
from seq2seq.data.tokenizer import Tokenizer, file_sha256, referenced_tokenizer, tokenizer_reference
from seq2seq.errors import UserError

log = logging.getLogger(__name__)

FORMAT = 2  # bumped when the layout changes; _upgrade reads the older ones


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


def _upgrade(ckpt: dict) -> dict:
    """Bring a checkpoint of an older format to the current layout (in place)."""
    if ckpt.get("format") == 1:
        model = ckpt["config"].get("model", {})
        if "tie_output" in model:  # the Transformer's name for it before format 2
            model["tie_embeddings"] = model.pop("tie_output")
        ckpt["config"].get("trainer", {}).pop("valid_max_tokens", None)  # now decoding.max_tokens
        if "progress" in ckpt:  # format 1 validated at every stop and every eval_every step
            ckpt["progress"].setdefault("validated_step", ckpt["progress"]["step"])
        rng = ckpt.get("rng")
        if isinstance(rng, dict):  # format 1: process 0's state, the others' under "processes"
            ckpt["rng"] = rng.get("processes", [{"torch": rng["torch"], "cuda": rng.get("cuda")}])
        ckpt["format"] = 2
    return ckpt


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only,
    so a file that carries pickled code is refused and nothing is executed."""
    path = Path(path)
    if is_export(path):
        raise UserError(f"{path}: is a CTranslate2 export; it runs with engine=ctranslate2 (or engine=auto)")
    if path.is_dir():
        inside = path / "checkpoints" / "best.pt"
        hint = f"checkpoint={inside}" if inside.is_file() else "checkpoint=RUN_DIR/checkpoints/best.pt"
        raise UserError(f"{path}: is a folder, not a checkpoint; pass {hint}")
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
    if ckpt.get("format") not in (1, FORMAT):
        raise UserError(
            f"{path}: checkpoint format {ckpt.get('format')} (seq2seq {ckpt.get('version', '?')}) "
            f"cannot be read by seq2seq {__version__}, which reads format {FORMAT} (and older ones)"
        )
    return _upgrade(ckpt)


def load_tokenizer(ckpt: dict, path: Path) -> Tokenizer:
    """Find the tokenizer a checkpoint refers to (in its run directory) and check its hash."""
    return referenced_tokenizer(ckpt["tokenizer"], path.resolve().parent.parent, path)


def build_model(model_cfg, tokenizer: Tokenizer):
    """Instantiate the model of a config for the tokenizer's vocabularies."""
    return models.build_model(model_cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint)


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


def average_checkpoints(paths: list[Path]) -> dict:
    """A checkpoint whose weights are the mean of the checkpoints ``paths`` (of one model
    and tokenizer), with the first one's config and tokenizer reference: it evaluates,
    translates and exports like any other, but holds no training state to resume."""
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
    return {
        "format": FORMAT,
        "version": __version__,
        "model": weights,
        "config": first["config"],
        "tokenizer": first["tokenizer"],
        "averaged": [str(p) for p in paths],
    }


@dataclass
class Saved:
    """A training checkpoint read back: where training stood, and the rest to restore."""

    path: Path
    progress: dict
    rng: list[dict]  # one random state per process of the run that saved it
    data: dict | None  # the prepared corpus it trained on; None before format 2
    payload: dict


class Checkpointer:
    """The training checkpoints of one run directory.

    ``checkpoints/last.pt`` is written at every save; ``best.pt`` is linked to it at a
    new best validation BLEU, and ``step_<N>.pt`` when ``keep_last`` > 0 (only the
    newest ``keep_last`` are kept).
    """

    def __init__(self, run_dir: Path, config: dict, keep_last: int = 0):
        self.run_dir, self.config, self.keep_last = run_dir, config, keep_last
        self.dir = run_dir / "checkpoints"
        self.last = self.dir / "last.pt"

    def previous(self) -> Saved | None:
        """The run directory's ``last.pt``, checked to belong to the same model and data
        (other optimiser settings are allowed and logged); None in a new run directory."""
        if not self.last.exists():
            return None
        ckpt = load_checkpoint(self.last)
        if ckpt["config"]["model"] != self.config["model"]:
            raise UserError(
                f"{self.last} was trained with other model.* settings; train into a new "
                f"hydra.run.dir or use the same settings to resume"
            )
        for group in ("optim", "data"):  # allowed, but said (the training data are checked by content)
            saved, now = ckpt["config"][group], self.config[group]
            changed = sorted(k for k in now if saved.get(k) != now[k])
            if changed:
                log.warning(
                    "resuming with other %s settings than %s was trained with: %s",
                    group,
                    self.last,
                    ", ".join(changed),
                )
        return Saved(self.last, ckpt["progress"], ckpt["rng"], ckpt.get("data"), ckpt)

    def check_data(self, saved: Saved, key: str) -> None:
        """Refuse to resume ``saved`` on a training corpus other than the one it trained on
        (``key``: the prepared corpus that the current files and settings give)."""
        if saved.data is None:
            raise UserError(
                f"{saved.path} was saved before training corpora were prepared (checkpoint format 1), so "
                f"it cannot be resumed; train into a new hydra.run.dir (evaluate and translate still read it)"
            )
        if saved.data["key"] != key:
            raise UserError(
                f"{saved.path} was trained on other data (prepared corpus {saved.data['key']}, now {key}): "
                f"the training files or the data.* settings that shape them changed; train into a new "
                f"hydra.run.dir or use the same data to resume"
            )

    def save(
        self,
        *,
        data: dict,
        model,
        optimizer,
        scheduler,
        scaler,
        progress: dict,
        rng: list[dict],
        tokenizer,
        best: bool,
    ):
        """Write ``last.pt`` atomically, then link ``best.pt`` and ``step_<N>.pt``."""
        payload = {
            "format": FORMAT,
            "version": __version__,
            "model": model.state_dict(),
            "config": self.config,
            "tokenizer": tokenizer_reference(tokenizer, self.run_dir),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "progress": progress,
            "rng": rng,
            "data": data,
        }
        save_checkpoint(payload, self.last)
        if best:
            link_checkpoint(self.last, self.dir / "best.pt")
        if self.keep_last > 0:
            link_checkpoint(self.last, self.dir / f"step_{progress['step']:07d}.pt")
            for old in sorted(self.dir.glob("step_*.pt"))[: -self.keep_last]:
                old.unlink()

    @staticmethod
    def restore(saved: Saved, *, model, optimizer, scheduler, scaler) -> None:
        """Load the saved weights and optimiser, schedule and scaler states."""
        payload = saved.payload
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
