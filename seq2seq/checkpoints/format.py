"""Checkpoint files and the run directory that holds them: the one place that knows their layout.

A run directory (``hydra.run.dir``) holds, besides Hydra's files:

    tokenizer/     TOKENIZER: the SentencePiece model(s) its checkpoints refer to (and,
                   since format 3, carry: a checkpoint then loads without it)
    checkpoints/   CHECKPOINTS: last.pt, best.pt, and step_<N>.pt (``step_name``,
                   listed in step order by ``step_checkpoints``) when trainer.keep_last > 0

so a checkpoint's run directory is the folder above its own (``run_dir_of``).

A checkpoint is a ``torch.save`` of a plain dict (tensors, numbers, strings), so it
loads with ``weights_only=True``:

    format      FORMAT, the layout version; older layouts are upgraded on load
    version     the seq2seq version that wrote it
    model       the model's state_dict
    config      the run's resolved config as a plain dict (``config["model"]`` rebuilds the model)
    tokenizer   {"files": {"src": path, "tgt": path}, "sha256": {...}, "models": {"src": ..., "tgt": ...}}:
                the files relative to the run directory, their hashes, and (format 3) the
                SentencePiece models themselves as uint8 tensors (one tensor when joint), so that
                a checkpoint needs nothing beside it (``carry_tokenizer``); a format-2
                checkpoint has no "models" and reads its run directory's files
    optimizer, scheduler, scaler   their state_dicts (training checkpoints)
    progress    the trainer's ``Progress`` as a dict
    rng         one random state per training process, in rank order: {"torch": ..., "cuda": ...}
    data        {"key": the prepared corpus it trained on (``seq2seq/data/preparation.py``), "pairs": N}
    averaged    the checkpoints whose mean it holds (``averaging.py``; no training state then)
    parent      (format 3) the checkpoint its run started from (``trainer.init_from``) as
                {"path", "sha256", "step", "parent": the parent's own parent}, or None
                (``lineage.py``)

Writes are atomic (a temporary file renamed over the old one).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

from seq2seq import __version__
from seq2seq.errors import UserError

FORMAT = 3  # bumped when the layout changes; _upgrade reads the older ones (1 and 2)

CHECKPOINTS = "checkpoints"  # a run directory's folder of checkpoints
TOKENIZER = "tokenizer"  # a run directory's (and an export's) folder of SentencePiece models
LAST = "last.pt"  # in CHECKPOINTS: written at every save; training resumes from it
BEST = "best.pt"  # in CHECKPOINTS: the checkpoint of the best validation BLEU so far

_STEP = re.compile(r"step_(\d+)\.pt")


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run directory of a checkpoint in its ``checkpoints/`` folder."""
    return Path(checkpoint).parent.parent


def step_name(step: int) -> str:
    """The file name of the step checkpoint of ``step``: ``step_0001200.pt``."""
    return f"step_{step:07d}.pt"


def step_checkpoints(folder: Path) -> list[Path]:
    """The step checkpoints of a ``checkpoints/`` folder, oldest step first (compared as
    numbers, so a step past 9,999,999 still sorts last)."""
    steps = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := _STEP.fullmatch(p.name))]
    return [p for _, p in sorted(steps)]


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write ``payload`` to a temporary file, flush it to disk, then rename it
    over ``path``: a crash at any moment leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch  # here, so that the layout above is read without torch

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
    if ckpt.get("format") == 2:  # format 3 added the tokenizer's models and the parent, both optional on load
        ckpt.setdefault("parent", None)
        ckpt["format"] = 3
    return ckpt


def carry_tokenizer(reference: dict, tokenizer) -> dict:
    """A checkpoint's ``tokenizer`` entry: ``reference`` (files and hashes, as
    ``tokenizer_reference`` makes it) with the models' bytes added as uint8 tensors (one
    shared tensor when joint, saved once), which ``weights_only`` loading accepts."""
    import torch  # only where a checkpoint is written: the names above serve start-ups without it

    tensors: dict[str, torch.Tensor] = {}
    for role in ("src", "tgt"):
        name = tokenizer.names[role]
        if name not in tensors:
            tensors[name] = torch.frombuffer(bytearray(tokenizer.models[role]), dtype=torch.uint8)
    return {**reference, "models": {role: tensors[tokenizer.names[role]] for role in ("src", "tgt")}}


def carried_models(entry: dict) -> dict[str, bytes] | None:
    """The models' bytes a checkpoint's ``tokenizer`` entry carries (format 3), or None."""
    models = entry.get("models")
    if models is None:
        return None
    return {role: bytes(t.numpy().tobytes()) for role, t in models.items()}


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only,
    so a file that carries pickled code is refused and nothing is executed."""
    import torch  # only where a file is read or written: the names above serve start-ups without it

    path = Path(path)
    if path.is_dir():
        inside = path / CHECKPOINTS / BEST
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
    if ckpt.get("format") not in (1, 2, FORMAT):
        raise UserError(
            f"{path}: checkpoint format {ckpt.get('format')} (seq2seq {ckpt.get('version', '?')}) "
            f"cannot be read by seq2seq {__version__}, which reads format {FORMAT} (and older ones)"
        )
    return _upgrade(ckpt)
