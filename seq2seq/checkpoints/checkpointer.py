"""The training checkpoints of one run directory: written at every save, read back to resume."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from seq2seq import __version__
from seq2seq.checkpoints.format import (
    BEST,
    CHECKPOINTS,
    FORMAT,
    LAST,
    carry_tokenizer,
    link_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_checkpoints,
    step_name,
)
from seq2seq.data.tokenizer import tokenizer_reference
from seq2seq.errors import UserError

log = logging.getLogger(__name__)


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
        self.dir = run_dir / CHECKPOINTS
        self.last = self.dir / LAST
        self.parent: dict | None = None  # the record of the checkpoint the run started from (lineage.py)

    def previous(self) -> Saved | None:
        """The run directory's ``last.pt``, checked to belong to the same model and data
        (other optimiser settings are allowed and logged) and, with ``trainer.init_from``, to
        be a fine-tune; None in a new run directory."""
        if not self.last.exists():
            return None
        ckpt = load_checkpoint(self.last)
        if ckpt["config"]["model"] != self.config["model"]:
            raise UserError(
                f"{self.last} was trained with other model.* settings; train into a new "
                f"hydra.run.dir or use the same settings to resume"
            )
        init_from = self.config.get("trainer", {}).get("init_from")
        if init_from and not ckpt.get("parent"):
            raise UserError(
                f"{self.last}: this run directory holds a run that did not start from a checkpoint, so "
                f"trainer.init_from={init_from} cannot apply; fine-tune into a new hydra.run.dir, or drop "
                "trainer.init_from to resume the run"
            )
        if ckpt.get("parent") and init_from and str(Path(init_from).resolve()) != ckpt["parent"]["path"]:
            log.warning(
                "trainer.init_from=%s is read only when a run starts; %s resumes from its own last.pt "
                "(it started from %s)",
                init_from,
                self.run_dir,
                ckpt["parent"]["path"],
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
            "tokenizer": carry_tokenizer(tokenizer_reference(tokenizer, self.run_dir), tokenizer),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "progress": progress,
            "rng": rng,
            "data": data,
            "parent": self.parent,
        }
        save_checkpoint(payload, self.last)
        if best:
            link_checkpoint(self.last, self.dir / BEST)
        if self.keep_last > 0:
            link_checkpoint(self.last, self.dir / step_name(progress["step"]))
            for old in step_checkpoints(self.dir)[: -self.keep_last]:
                old.unlink()

    @staticmethod
    def restore(saved: Saved, *, model, optimizer, scheduler, scaler) -> None:
        """Load the saved weights and optimiser, schedule and scaler states."""
        payload = saved.payload
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
