"""The checkpoint a fine-tune starts from (``trainer.init_from``), and what it fixes.

A fine-tune is a new run whose model starts from a parent checkpoint's weights (a
``best.pt``, a ``last.pt`` or an average), with a fresh optimiser, schedule, progress, best
score and batch order. The parent fixes two things, checked before any work
(``check_parent``):

- the architecture: every ``model.*`` key is a constructor argument of the parent's model
  class, read from its signature; each must equal the parent's, but for the regularization
  rates (arguments named ``*dropout``), which a fine-tune may change, as it may
  ``optim.label_smoothing`` and every other ``optim.*`` and ``trainer.*`` key;
- the tokenizer: the run's data are encoded with the parent's, never a new one, so each
  ``data.tokenizer.*`` key must equal the parent's setting and agree with its models (but
  ``sampling``, ``alpha`` and ``nbest_size``, which change how training segments, not the tokenizer).

Once the run has saved, it resumes from its own ``last.pt``, whose carried tokenizer
(``kept_tokenizer``) is the one its corpus was prepared with; the parent file is then
no longer read.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import get_class
from omegaconf import OmegaConf

from seq2seq.checkpoints.checkpointer import Saved
from seq2seq.checkpoints.format import load_checkpoint
from seq2seq.checkpoints.lineage import parent_record
from seq2seq.checkpoints.loading import load_tokenizer
from seq2seq.data.sampling import TRAINING_ONLY
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import is_export
from seq2seq.models import DATA_ARGUMENTS

log = logging.getLogger("seq2seq.train")

KEY = "trainer.init_from"

REGULARIZATION_SUFFIX = "dropout"  # constructor arguments named so may differ from the parent's


@dataclass
class Parent:
    """The checkpoint a fine-tune starts from."""

    path: Path
    weights: dict  # its model's state_dict
    config: dict  # the config it was trained with
    tokenizer: Tokenizer  # the run's tokenizer: the parent's, carried or from its run directory
    record: dict  # what the run's checkpoints store as their ``parent`` (checkpoints/lineage.py)


def load_parent(value: str) -> Parent:
    """Read the checkpoint ``trainer.init_from`` names, with its tokenizer."""
    path = Path(value)
    if is_export(path):
        raise UserError(
            f"{KEY}={value}: a CTranslate2 export; fine-tune from the .pt checkpoint it was made of"
        )
    if path.is_dir():
        raise UserError(f"{KEY}={value}: is a folder; give a checkpoint, such as RUN_DIR/checkpoints/best.pt")
    if not path.is_file():
        raise UserError(f"{KEY}={value}: no such checkpoint")
    ckpt = load_checkpoint(path)
    return Parent(path, ckpt["model"], ckpt["config"], load_tokenizer(ckpt, path), parent_record(path, ckpt))


def kept_tokenizer(saved: Saved | None) -> Tokenizer | None:
    """The tokenizer a resumed run must keep: the one its ``last.pt`` carries when the run is a
    fine-tune (its corpus was prepared with it); None for a run that trained its own."""
    if saved is None or not saved.payload.get("parent"):
        return None
    return load_tokenizer(saved.payload, saved.path)


def architecture_keys(target: str) -> dict:
    """The constructor arguments of the model class ``target`` (a dotted path) that fix its
    architecture, with their defaults: every argument but those set from the tokenizer
    (``DATA_ARGUMENTS``) and the regularization rates (named ``*dropout``)."""
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - not a class: nothing to compare but _target_
        return {}
    return {
        name: None if p.default is inspect.Parameter.empty else p.default
        for name, p in inspect.signature(cls).parameters.items()
        if name not in DATA_ARGUMENTS and not name.endswith(REGULARIZATION_SUFFIX)
    }


def check_parent(cfg, parent: Parent) -> None:
    """Refuse, in one line naming the key and both values, a fine-tune whose ``model.*``
    architecture or ``data.tokenizer.*`` settings differ from its parent's."""
    where = f"{KEY}={parent.path}"
    if cfg.get("model") is not None:  # prepare needs no model
        now = OmegaConf.to_container(cfg.model, resolve=True)
        before = parent.config.get("model", {})
        if now.get("_target_") != before.get("_target_"):
            raise UserError(
                f"model._target_={now.get('_target_')}: {where} is a {before.get('_target_')}; "
                "fine-tune with the +model= preset it was trained with"
            )
        for key, default in architecture_keys(now["_target_"]).items():
            mine, theirs = now.get(key, default), before.get(key, default)
            if mine != theirs:
                raise UserError(
                    f"model.{key}={mine}: {where} has model.{key}={theirs}; a fine-tune keeps its "
                    f"parent's architecture (set model.{key}={theirs}; only dropout rates may change)"
                )
    before = parent.config.get("data", {}).get("tokenizer", {})
    for key, mine in OmegaConf.to_container(cfg.data.tokenizer, resolve=True).items():
        if key in before and before[key] != mine and key not in TRAINING_ONLY:  # not sampling
            raise UserError(
                f"data.tokenizer.{key}={mine}: {where} was made with data.tokenizer.{key}={before[key]}; "
                f"a fine-tune keeps its parent's tokenizer (set data.tokenizer.{key}={before[key]})"
            )
    if cfg.data.tokenizer.joint != parent.tokenizer.joint:
        theirs = "one joint model" if parent.tokenizer.joint else "a model per side"
        raise UserError(
            f"data.tokenizer.joint={cfg.data.tokenizer.joint}: the tokenizer of {where} has {theirs}; "
            f"set data.tokenizer.joint={parent.tokenizer.joint}"
        )


def describe_start(parent: Parent) -> str:
    """The log line of a fine-tune's start."""
    step = parent.record["step"]
    return (
        f"fine-tuning from {parent.record['path']} (sha256 {parent.record['sha256'][:12]}"
        f"{f', step {step}' if step is not None else ''}): its weights and tokenizer, a fresh optimiser, "
        "schedule, progress and best score"
    )
