"""``python -m seq2seq.export checkpoint=PATH output=DIR``: a Transformer for CTranslate2.

Writes a folder that CTranslate2 loads as it is (``ctranslate2.Translator(DIR)``),
with the tokenizer and what seq2seq needs beside it (``seq2seq/inference/ctranslate2/engine.py``
lists the files); ``translate`` and ``evaluate`` run it with ``checkpoint=DIR``.
``quantization=int8`` stores int8 weights, the fastest on CPU. The folder is written
under a temporary name and renamed when complete; an earlier export at ``output=``
is replaced, any other file or folder there is left alone and refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from seq2seq.cli.files import checkpoint_paths, refuse_exports
from seq2seq.cli.runner import run
from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import VMAP_FILE, is_export, require_ctranslate2
from seq2seq.inference.ctranslate2.vocab_map import training_pairs, write_vmap


def check_target(output: Path) -> None:
    """Refuse an output that is not a new folder or an earlier export."""
    if output.exists() and not is_export(output):
        kind = "folder" if output.is_dir() else "file"
        raise UserError(f"output={output}: a {kind} that is not an export is there; give a new folder")
    if not output.parent.is_dir():
        raise UserError(f"output={output}: the folder {output.parent} does not exist; create it first")


def export(cfg) -> Path:
    """Write the checkpoint ``cfg`` names as a CTranslate2 export; returns its folder."""
    # torch loads here, once the config is checked: --help and a mistake answer at once.
    from seq2seq.checkpoints.loading import load_model_and_checkpoint
    from seq2seq.inference.ctranslate2.convert import write_export

    paths = checkpoint_paths(cfg.checkpoint)
    refuse_exports(paths)
    if len(paths) > 1:
        raise UserError(
            f"checkpoint={cfg.checkpoint}: export takes one checkpoint; average them first "
            "(python -m seq2seq.average inputs=...)"
        )
    output = Path(cfg.output)
    check_target(output)
    require_ctranslate2()
    model, tokenizer, ckpt = load_model_and_checkpoint(paths[0])
    config = ckpt["config"]
    pairs = training_pairs(config, cfg.vmap_lines) if cfg.vmap else None  # before the conversion
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        source = Path(paths[0]).resolve()
        write_export(model, tokenizer, config, partial, cfg.quantization, source, ckpt.get("parent"))
        if pairs is not None:
            write_vmap(tokenizer, pairs, partial, cfg.vmap_per_piece, cfg.vmap_common)
            print(f"vocabulary map: learnt from {len(pairs[0])} training pairs ({VMAP_FILE})")
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
            partial.rename(output)
            shutil.rmtree(old)
        else:
            partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    size = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    print(f"{output}: {paths[0]} as a CTranslate2 model ({cfg.quantization}, {size / 2**20:.1f} MiB)")
    return output


def main() -> None:
    """``python -m seq2seq.export``: see the module's docstring."""
    run("export", export)


if __name__ == "__main__":
    main()
