"""What the evaluate and translate command lines share: config, errors, logging, model."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from seq2seq.config import compose, help_text
from seq2seq.errors import UserError


def run(command: str, body) -> None:
    """Compose ``configs/<command>.yaml`` with ``sys.argv`` overrides, check it and call
    ``body(cfg)``; user mistakes end in one ``error:`` line and exit status 2."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(name)s] %(message)s")
    args = sys.argv[1:]
    try:
        if any(a in ("-h", "--help") for a in args):
            print(help_text(command, compose(command, [a for a in args if a not in ("-h", "--help")], False)))
            return
        body(compose(command, args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


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


def make_translator(cfg):
    """Load ``cfg.checkpoint`` (one checkpoint, several as an ensemble, or a CTranslate2
    export) and wrap it in a translator for ``cfg.decoding`` on ``cfg.engine``.
    Returns (translator, the training config)."""
    from seq2seq.ctranslate2_engine import is_export

    paths = checkpoint_paths(cfg.checkpoint)
    engine = cfg.engine
    if engine == "auto":
        engine = "ctranslate2" if len(paths) == 1 and is_export(paths[0]) else "torch"
    if engine == "ctranslate2":
        if len(paths) > 1:
            raise UserError(
                f"checkpoint={cfg.checkpoint}: CTranslate2 runs one model; an ensemble runs on engine=torch"
            )
        from seq2seq.ctranslate2_engine import make_engine

        return make_engine(paths[0], cfg.decoding, cfg.device, cfg.precision, cfg.num_threads)

    from seq2seq.checkpoint import load_models
    from seq2seq.device import pick_device, pick_precision, set_threads
    from seq2seq.torch_engine import TorchTranslator

    set_threads(cfg.num_threads)
    device = pick_device(cfg.device, "device")
    precision = pick_precision(cfg.precision, device, "precision", train=False)
    model, tokenizer, train_cfg = load_models(paths, device)
    return TorchTranslator(model, tokenizer, cfg.decoding, device, precision), train_cfg
