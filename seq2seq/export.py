"""``python -m seq2seq.export checkpoint=PATH output=DIR``: a Transformer for CTranslate2 or
Hugging Face transformers.

``format=ctranslate2`` (the default) writes a folder that CTranslate2 loads as it is
(``ctranslate2.Translator(DIR)``), with the tokenizer and what seq2seq needs beside it
(``seq2seq/inference/ctranslate2/engine.py`` lists the files); ``translate`` and ``evaluate``
run it with ``checkpoint=DIR``. ``quantization=int8`` stores int8 weights, the fastest on CPU.

``format=transformers`` writes a folder that ``AutoModelForSeq2SeqLM.from_pretrained(DIR)``,
``AutoTokenizer.from_pretrained(DIR)`` and ``pipeline("translation", model=DIR)`` load offline:
a stock architecture with the same function, its generation defaults and the tokenizer
(``seq2seq/inference/transformers/format.py`` lists the files).

The folder is written under a temporary name and renamed when complete; an earlier export
(of either format) at ``output=`` is replaced, any other file or folder there is left alone and
refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from seq2seq.cli.files import checkpoint_paths, refuse_exports
from seq2seq.cli.runner import run
from seq2seq.config import CONFIG_DIR
from seq2seq.config.schema import ExportConfig
from seq2seq.decoding.options import DecodingConfig
from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import VMAP_FILE, is_export, require_ctranslate2
from seq2seq.inference.ctranslate2.vocab_map import training_pairs, write_vmap
from seq2seq.inference.transformers.format import is_export as is_transformers_export
from seq2seq.inference.transformers.format import require_transformers

CTRANSLATE2_KEYS = ("quantization", "vmap", "vmap_per_piece", "vmap_common", "vmap_lines")


def check_target(output: Path) -> None:
    """Refuse an output that is not a new folder or an earlier export."""
    if output.exists() and not (is_export(output) or is_transformers_export(output)):
        kind = "folder" if output.is_dir() else "file"
        raise UserError(f"output={output}: a {kind} that is not an export is there; give a new folder")
    if not output.parent.is_dir():
        raise UserError(f"output={output}: the folder {output.parent} does not exist; create it first")


def default_decoding():
    """The ``decoding`` export starts from (``configs/export.yaml``): the beam preset, the search
    that translate and evaluate run by default."""
    preset = OmegaConf.load(CONFIG_DIR / "decoding" / "beam.yaml")
    return OmegaConf.merge(OmegaConf.structured(DecodingConfig), preset)


def check_format_keys(cfg) -> None:
    """Refuse the keys of the other format set away from their defaults: CTranslate2's with
    ``format=transformers``, ``decoding.*`` with ``format=ctranslate2``."""
    if cfg.format == "ctranslate2":
        preset = default_decoding()
        for key in DecodingConfig.__dataclass_fields__:
            if cfg.decoding[key] != preset[key]:
                raise UserError(
                    f"decoding.{key}={cfg.decoding[key]}: applies to format=transformers only (its "
                    "generation_config.json); a CTranslate2 export takes decoding.* when translate runs it"
                )
        return
    for key in CTRANSLATE2_KEYS:
        if cfg[key] != getattr(ExportConfig, key):
            raise UserError(
                f"{key}={cfg[key]}: applies to format=ctranslate2 only; a transformers export is float32 "
                f"(quantize it with transformers' own tools), drop {key}"
            )


def write_atomically(output: Path, write: Callable[[Path], None]) -> None:
    """``write(partial)`` into a temporary folder beside ``output``, then rename it to ``output``
    (replacing an earlier export there); nothing is left behind if ``write`` fails."""
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        write(partial)
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
            partial.rename(output)
            shutil.rmtree(old)
        else:
            partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def export(cfg) -> Path:
    """Write the checkpoint ``cfg`` names as an export in ``cfg.format``; returns its folder."""
    paths = checkpoint_paths(cfg.checkpoint)
    refuse_exports(paths)
    if len(paths) > 1:
        raise UserError(
            f"checkpoint={cfg.checkpoint}: export takes one checkpoint; average them first "
            "(python -m seq2seq.average inputs=...)"
        )
    check_format_keys(cfg)
    output = Path(cfg.output)
    check_target(output)
    if cfg.format == "transformers":
        return export_transformers(paths[0], output, cfg.decoding)
    # torch loads here, once the config is checked: --help and a mistake answer at once.
    from seq2seq.checkpoints.loading import load_model_and_checkpoint
    from seq2seq.inference.ctranslate2.convert import write_export

    require_ctranslate2()
    model, tokenizer, ckpt = load_model_and_checkpoint(paths[0])
    config = ckpt["config"]
    pairs = training_pairs(config, cfg.vmap_lines) if cfg.vmap else None  # before the conversion

    def write(partial: Path) -> None:
        source = Path(paths[0]).resolve()
        write_export(model, tokenizer, config, partial, cfg.quantization, source, ckpt.get("parent"))
        if pairs is not None:
            write_vmap(tokenizer, pairs, partial, cfg.vmap_per_piece, cfg.vmap_common)
            print(f"vocabulary map: learnt from {len(pairs[0])} training pairs ({VMAP_FILE})")

    write_atomically(output, write)
    print(f"{output}: {paths[0]} as a CTranslate2 model ({cfg.quantization}, {folder_mib(output):.1f} MiB)")
    return output


def export_transformers(checkpoint: str, output: Path, decoding) -> Path:
    """Write ``checkpoint`` as a transformers folder at ``output`` (checked), with ``decoding``
    as its generation defaults."""
    require_transformers()
    # torch and transformers load here, once the config is checked.
    from seq2seq.checkpoints.loading import load_model
    from seq2seq.inference.transformers.architecture import check_convertible
    from seq2seq.inference.transformers.convert import write_export

    model, tokenizer, config = load_model(checkpoint)
    check_convertible(model)  # before anything is written
    meta = {}

    def write(partial: Path) -> None:
        meta.update(write_export(model, tokenizer, config, partial, Path(checkpoint).resolve(), decoding))

    write_atomically(output, write)
    print(
        f"{output}: {checkpoint} as a transformers {meta['architecture']} (float32, "
        f"{folder_mib(output):.1f} MiB); load it with AutoModelForSeq2SeqLM.from_pretrained and "
        "AutoTokenizer.from_pretrained"
    )
    if meta["needs_transformers_5"]:
        print(
            "note: load it with transformers 5 or newer; 4.x ties Pegasus's encoder and decoder "
            "embeddings, which this model (pre-norm, two vocabularies) keeps apart"
        )
    if meta["decoding_not_carried"]:
        print("decoding settings transformers has no field for: " + ", ".join(meta["decoding_not_carried"]))
    return output


def folder_mib(folder: Path) -> float:
    """The size of the files under ``folder``, in MiB."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    """``python -m seq2seq.export``: see the module's docstring."""
    run("export", export)


if __name__ == "__main__":
    main()
