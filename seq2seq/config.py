"""Config schemas, the ``${data_root:}`` resolver and command-line composition.

Every group except ``model`` is checked against a dataclass below, so a
misspelt key is an error instead of a silently ignored setting. Model keys are
checked by the model's constructor (they are its arguments).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from seq2seq.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"

if not OmegaConf.has_resolver("data_root"):
    OmegaConf.register_new_resolver("data_root", lambda: str(ROOT / "data"))


@dataclass
class SplitConfig:
    src: str = "???"
    tgt: str = "???"


@dataclass
class TokenizerConfig:
    vocab_size: int = 8000
    joint: bool = True
    model_type: str = "unigram"
    character_coverage: float = 1.0
    cache_dir: str = "~/.cache/seq2seq/tokenizers"


@dataclass
class DataConfig:
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    train: SplitConfig = field(default_factory=SplitConfig)
    valid: SplitConfig = field(default_factory=SplitConfig)
    test: SplitConfig = field(default_factory=SplitConfig)
    max_len: int = 128
    train_lines: int = 0
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    weight_decay: float = 0.0
    warmup_steps: int = 400
    label_smoothing: float = 0.1
    clip_norm: float = 1.0


@dataclass
class TrainerConfig:
    max_steps: int = 0
    max_epochs: int = 12
    max_time: float = 0
    max_tokens: int = 4096
    eval_every: int = 200
    save_every: int = 100
    keep_last: int = 0
    max_bad_steps: int = 10
    patience: int = 6
    valid_max_tokens: int = 8000
    log_every: int = 50
    samples: int = 3
    precision: str = "auto"
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True


@dataclass
class DecodingConfig:
    beam_size: int = 1
    nbest: int = 1
    alpha: float = 1.0
    max_len_a: float = 1.5
    max_len_b: int = 10
    no_repeat_ngram_size: int = 0
    sampling: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens: int = 8000
    batch_size: int = 0


SCHEMAS = {"data": DataConfig, "optim": OptimConfig, "trainer": TrainerConfig, "decoding": DecodingConfig}


def model_choices() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def model_preset(name: str) -> DictConfig:
    """The constructor arguments of ``configs/model/NAME.yaml``, read without Hydra
    (its ``defaults`` list, which picks other groups, left out)."""
    cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    cfg.pop("defaults", None)
    return cfg


def check(cfg: DictConfig, groups=("data", "optim", "trainer", "decoding")) -> DictConfig:
    """Validate the named groups against their schemas; resolve interpolations.

    Raises ``UserError`` naming the offending key.
    """
    for group in groups:
        if group not in cfg:
            continue
        try:
            typed = OmegaConf.merge(OmegaConf.structured(SCHEMAS[group]), cfg[group])
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            raise UserError(f"{group}.{key}: {e.msg if hasattr(e, 'msg') else e}".split("\n")[0]) from None
        with open_dict(cfg):
            cfg[group] = typed
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise UserError(f"config: {str(e).splitlines()[0]}") from None
    return cfg


def require_model(cfg: DictConfig) -> None:
    """Exit with one line listing the models when none was chosen."""
    if "model" not in cfg:
        print(
            f"error: choose a model with +model=NAME, one of: {', '.join(model_choices())}", file=sys.stderr
        )
        sys.exit(2)


def compose(config_name: str, overrides: list[str], groups=("decoding",)) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with command-line overrides and check
    ``groups``, with no Hydra run directory or log files (evaluate and translate
    run on this; train uses it to check its overrides before Hydra starts)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(" ".join(str(e).split())) from None
    return check(cfg, groups=groups)
