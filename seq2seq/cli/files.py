"""The files a command is given on its command line: checkpoints to read, outputs to write."""

from __future__ import annotations

from pathlib import Path

from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import is_export
from seq2seq.inference.transformers.format import is_export as is_transformers_export


def check_output_file(path: str | None, key: str, taken: dict[str, str | None] | None = None) -> None:
    """Refuse an output file that cannot be created, or that ``taken`` (other keys'
    files, such as the input) already names, before any work starts."""
    if path is None:
        return
    target = Path(path)
    for other, used in (taken or {}).items():
        if used is not None and Path(used).resolve() == target.resolve():
            raise UserError(f"{key}={path}: is also {other}=; give another file")
    if target.is_dir():
        raise UserError(f"{key}={path}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise UserError(f"{key}={path}: the folder {target.parent} does not exist; create it first")


def open_output(path: str, key: str):
    """Open an output file for writing, or fail with one line naming ``key``."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise UserError(f"{key}={path}: cannot be written ({e.strerror})") from None


def checkpoint_paths(value: str, key: str = "checkpoint") -> list[str]:
    """The checkpoints of ``checkpoint=a.pt,b.pt`` (one, or the members of an ensemble)."""
    paths = [p.strip() for p in str(value).split(",")]
    if not all(paths):
        raise UserError(f"{key}={value}: an empty name in the list; give PATH or PATH,PATH,...")
    return paths


def refuse_transformers_exports(paths: list[str]) -> None:
    """Refuse a transformers export (``export format=transformers``), which seq2seq does not
    decode, in one line that says what runs it."""
    for path in paths:
        if is_transformers_export(path):
            raise UserError(
                f"{path}: is a transformers export; load it with transformers "
                "(AutoModelForSeq2SeqLM.from_pretrained), or pass the checkpoint it was exported from"
            )


def refuse_exports(paths: list[str]) -> None:
    """Refuse an export where a ``.pt`` checkpoint is needed (engine=torch, an ensemble,
    averaging, exporting), in one line that says where it does run."""
    refuse_transformers_exports(paths)
    for path in paths:
        if is_export(path):
            raise UserError(
                f"{path}: is a CTranslate2 export; it runs with engine=ctranslate2 (or engine=auto)"
            )
