"""Composing a command's config from ``configs/`` and the command line, and its ``--help``."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seq2seq.config.checks import _value, check, composition_error, schema_fields
from seq2seq.config.model_arguments import register_model_arguments, with_constructor_defaults
from seq2seq.config.schema import SCHEMAS
from seq2seq.errors import UserError

PACKAGE = Path(__file__).resolve().parent.parent  # the seq2seq package


def _find(installed: str, checkout: str) -> Path:
    """A folder the wheel carries inside the package (``installed``) and a source
    checkout keeps at the top of the repository (``checkout``)."""
    inside = PACKAGE / installed
    return inside if inside.is_dir() else PACKAGE.parent / checkout


CONFIG_DIR = _find("configs", "configs")


DATA_DIR = _find("corpora", "data")

if not OmegaConf.has_resolver("data_root"):
    OmegaConf.register_new_resolver("data_root", lambda: str(DATA_DIR))


def model_choices() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def model_preset(name: str) -> DictConfig:
    """The constructor arguments of ``configs/model/NAME.yaml``, read without Hydra (its
    ``defaults`` list, which picks other groups, left out), each one the preset leaves out
    at the constructor's default."""
    cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    cfg.pop("defaults", None)
    return with_constructor_defaults(cfg)


def register_presets() -> None:
    """Store the nodes the model presets' defaults lists name (``model_arguments.py``);
    needed before Hydra composes a train config with ``+model=NAME``."""
    register_model_arguments(CONFIG_DIR)


def require_model(cfg: DictConfig) -> None:
    """Exit with one line listing the models when none was chosen."""
    if cfg.get("model") is None:
        print(
            f"error: choose a model with +model=NAME, one of: {', '.join(model_choices())}", file=sys.stderr
        )
        sys.exit(2)


def compose(command: str, overrides: list[str], checked: bool = True) -> DictConfig:
    """Compose ``configs/<command>.yaml`` with command-line overrides and (unless
    ``checked`` is false) check it, with no Hydra run directory or log files
    (evaluate and translate run on this; train uses it to check its overrides
    before Hydra starts)."""
    overrides = [quote_list(o) for o in overrides]
    if command == "train" and any(o.startswith("+model=") for o in overrides):
        register_presets()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=command, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(composition_error(e, command)) from None
    return check(cfg, command) if checked else cfg


LIST_KEYS = ("checkpoint", "inputs")  # comma-separated file names, not Hydra sweeps


def quote_list(override: str) -> str:
    """``checkpoint=a.pt,b.pt`` as the string Hydra would otherwise read as a sweep."""
    key, sep, value = override.partition("=")
    if sep and key in LIST_KEYS and "," in value and value[:1] not in "'\"[" and "'" not in value:
        return f"{key}='{value}'"
    return override


def help_text(command: str, cfg: DictConfig | None = None) -> str:
    """Every key of ``command`` with its value in ``cfg`` (the composed defaults), its
    allowed values and its meaning; the model's keys when one was chosen."""
    usage = {
        "train": "python -m seq2seq.train +model=NAME [key=value ...]",
        "evaluate": "python -m seq2seq.evaluate checkpoint=PATH [key=value ...]",
        "translate": "python -m seq2seq.translate checkpoint=PATH [key=value ...]",
        "average": "python -m seq2seq.average checkpoints=RUN/checkpoints last=N | inputs=a,b [output=PATH]",
        "export": "python -m seq2seq.export checkpoint=PATH output=DIR [quantization=TYPE]",
        "serve": "python -m seq2seq.serve checkpoint=PATH [host=127.0.0.1] [port=8000] [key=value ...]",
    }[command]
    lines = [usage, ""]
    if command == "train":
        lines += [f"models (+model=NAME, configs/model/): {', '.join(model_choices())}", ""]
    rows = []
    for key, f in schema_fields(SCHEMAS[command]):
        parent, _, name = key.rpartition(".")
        node = (OmegaConf.select(cfg, parent) if parent else cfg) if cfg is not None else None
        required = f.default == "???" if node is None else OmegaConf.is_missing(node, name)
        value = "??? (required)" if required else _value(cfg, key) if cfg is not None else f.default
        corpora = _value(cfg, "data.corpora") if cfg is not None and command == "train" else None
        if corpora and key.startswith(("data.train.", "data.valid.", "data.test.")):
            value = "??? (unused: data.corpora)"
        elif corpora and key == "data.corpora":
            value = ", ".join(
                f"{n} ({e.src_lang}-{e.tgt_lang}, weight {e.weight})" for n, e in corpora.items()
            )
        allowed = f.metadata["allowed"]
        rule = f" [{allowed.describe()}]" if allowed is not None else ""
        rows.append((f"{key}={'null' if value is None else value}", f"{f.metadata['help']}{rule}"))
    if cfg is not None and command == "train" and cfg.get("model") is not None:
        rows += [(f"model.{k}={v}", "model constructor argument") for k, v in cfg.model.items()]
    width = max(len(left) for left, _ in rows)
    lines += [f"  {left:<{width}}  {right}" for left, right in rows]
    return "\n".join(lines)
